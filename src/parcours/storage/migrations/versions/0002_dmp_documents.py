"""dmp documents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:56:17.108262
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmp_patient",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("ins_system", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=200), nullable=False),
        sa.Column("given", sa.String(length=200), nullable=False),
        sa.Column("family_folded", sa.String(length=200), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("gender", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_patient")),
        sa.UniqueConstraint("ins", name=op.f("uq_dmp_patient_ins")),
    )
    with op.batch_alter_table("dmp_patient", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dmp_patient_family_folded"), ["family_folded"], unique=False
        )

    op.create_table(
        "dmp_consent",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dmp_patient.id"], name=op.f("fk_dmp_consent_patient_id_dmp_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_consent")),
    )
    with op.batch_alter_table("dmp_consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dmp_consent_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "dmp_record",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("retention_until", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dmp_patient.id"], name=op.f("fk_dmp_record_patient_id_dmp_patient")
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_dmp_record")),
    )
    op.create_table(
        "dmp_submission",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("unique_id", sa.String(length=255), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("designation", sa.String(length=255), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_family", sa.String(length=200), nullable=True),
        sa.Column("source_given", sa.String(length=200), nullable=True),
        sa.Column("submitted_by", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["dmp_patient.id"],
            name=op.f("fk_dmp_submission_patient_id_dmp_patient"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_submission")),
        sa.UniqueConstraint("unique_id", name=op.f("uq_dmp_submission_unique_id")),
    )
    with op.batch_alter_table("dmp_submission", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dmp_submission_patient_date", ["patient_id", "date"], unique=False
        )

    op.create_table(
        "dmp_document",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("submission_id", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by", sa.String(length=64), nullable=True),
        sa.Column("master_identifier", sa.String(length=255), nullable=False),
        sa.Column("class_code", sa.String(length=16), nullable=False),
        sa.Column("type_code", sa.String(length=64), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("creation", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confidentiality", sa.String(length=1), nullable=False),
        sa.Column("masque_ps", sa.Boolean(), nullable=False),
        sa.Column("invisible_patient", sa.Boolean(), nullable=False),
        sa.Column("invisible_representants", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("author_idnps", sa.String(length=16), nullable=True),
        sa.Column("authored_by_patient", sa.Boolean(), nullable=False),
        sa.Column("published_by", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha1", sa.String(length=28), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("binary_id", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.String(length=128), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dmp_patient.id"], name=op.f("fk_dmp_document_patient_id_dmp_patient")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["dmp_submission.id"],
            name=op.f("fk_dmp_document_submission_id_dmp_submission"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_document")),
        sa.UniqueConstraint("binary_id", name=op.f("uq_dmp_document_binary_id")),
        sa.UniqueConstraint("master_identifier", name=op.f("uq_dmp_document_master_identifier")),
    )
    with op.batch_alter_table("dmp_document", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dmp_document_patient_status_date", ["patient_id", "status", "date"], unique=False
        )

    op.create_table(
        "dmp_document_term",
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("term", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["dmp_document.id"],
            name=op.f("fk_dmp_document_term_document_id_dmp_document"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "term", name=op.f("pk_dmp_document_term")),
    )
    with op.batch_alter_table("dmp_document_term", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dmp_document_term_patient_term", ["patient_id", "term"], unique=False
        )

    op.create_table(
        "dmp_document_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["dmp_document.id"],
            name=op.f("fk_dmp_document_token_document_id_dmp_document"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_document_token")),
    )
    with op.batch_alter_table("dmp_document_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dmp_document_token_doc_param", ["document_id", "param", "code"], unique=False
        )
        batch_op.create_index("ix_dmp_document_token_param_code", ["param", "code"], unique=False)

    op.create_table(
        "dmp_document_version",
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["dmp_document.id"],
            name=op.f("fk_dmp_document_version_document_id_dmp_document"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "version", name=op.f("pk_dmp_document_version")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rule", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_event_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_patient_id"))
        batch_op.drop_column("rule")
        batch_op.drop_column("patient_id")

    op.drop_table("dmp_document_version")
    with op.batch_alter_table("dmp_document_token", schema=None) as batch_op:
        batch_op.drop_index("ix_dmp_document_token_param_code")
        batch_op.drop_index("ix_dmp_document_token_doc_param")

    op.drop_table("dmp_document_token")
    with op.batch_alter_table("dmp_document_term", schema=None) as batch_op:
        batch_op.drop_index("ix_dmp_document_term_patient_term")

    op.drop_table("dmp_document_term")
    with op.batch_alter_table("dmp_document", schema=None) as batch_op:
        batch_op.drop_index("ix_dmp_document_patient_status_date")

    op.drop_table("dmp_document")
    with op.batch_alter_table("dmp_submission", schema=None) as batch_op:
        batch_op.drop_index("ix_dmp_submission_patient_date")

    op.drop_table("dmp_submission")
    op.drop_table("dmp_record")
    with op.batch_alter_table("dmp_consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dmp_consent_patient_id"))

    op.drop_table("dmp_consent")
    with op.batch_alter_table("dmp_patient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dmp_patient_family_folded"))

    op.drop_table("dmp_patient")
