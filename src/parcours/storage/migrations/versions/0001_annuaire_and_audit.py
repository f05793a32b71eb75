"""annuaire and audit

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:36:42.376736
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annuaire_extract",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stats", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annuaire_extract")),
    )
    op.create_table(
        "annuaire_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=320), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extract_id", sa.Integer(), nullable=True),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annuaire_history")),
    )
    with op.batch_alter_table("annuaire_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_annuaire_history_resource", ["resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "annuaire_mailbox",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("type", sa.String(length=3), nullable=False),
        sa.Column("carrier_type", sa.String(length=32), nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=True),
        sa.Column("organization_id", sa.String(length=64), nullable=True),
        sa.Column("liste_rouge", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("extract_id", sa.Integer(), nullable=True),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_annuaire_mailbox")),
    )
    with op.batch_alter_table("annuaire_mailbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_annuaire_mailbox_carrier", ["carrier_type", "carrier_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_mailbox_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_mailbox_practitioner_id"), ["practitioner_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_annuaire_mailbox_type"), ["type"], unique=False)

    op.create_table(
        "annuaire_organization",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("structure_key", sa.String(length=64), nullable=False),
        sa.Column("finess", sa.String(length=9), nullable=True),
        sa.Column("finess_ej", sa.String(length=9), nullable=True),
        sa.Column("siret", sa.String(length=14), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_folded", sa.String(length=300), nullable=False),
        sa.Column("city_folded", sa.String(length=200), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        sa.Column("sector_code", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("extract_id", sa.Integer(), nullable=True),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annuaire_organization")),
        sa.UniqueConstraint("structure_key", name=op.f("uq_annuaire_organization_structure_key")),
    )
    with op.batch_alter_table("annuaire_organization", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_city_folded"), ["city_folded"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_finess"), ["finess"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_finess_ej"), ["finess_ej"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_name_folded"), ["name_folded"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_postal_code"), ["postal_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_organization_sector_code"), ["sector_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_annuaire_organization_siret"), ["siret"], unique=False)

    op.create_table(
        "annuaire_practitioner",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=200), nullable=False),
        sa.Column("given", sa.String(length=200), nullable=False),
        sa.Column("family_folded", sa.String(length=200), nullable=False),
        sa.Column("given_folded", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("extract_id", sa.Integer(), nullable=True),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annuaire_practitioner")),
    )
    with op.batch_alter_table("annuaire_practitioner", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_family_folded"), ["family_folded"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_given_folded"), ["given_folded"], unique=False
        )

    op.create_table(
        "audit_event",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("actor_structure", sa.String(length=64), nullable=True),
        sa.Column("access_mode", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("resource_id", sa.String(length=128), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_event_hash")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_event_recorded_at"), ["recorded_at"], unique=False
        )

    op.create_table(
        "annuaire_practitioner_role",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=True),
        sa.Column("profession_code", sa.String(length=8), nullable=False),
        sa.Column("specialty_code", sa.String(length=16), nullable=True),
        sa.Column("mode_code", sa.String(length=4), nullable=True),
        sa.Column("role_code", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("extract_id", sa.Integer(), nullable=True),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["annuaire_organization.id"],
            name=op.f("fk_annuaire_practitioner_role_organization_id_annuaire_organization"),
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["annuaire_practitioner.id"],
            name=op.f("fk_annuaire_practitioner_role_practitioner_id_annuaire_practitioner"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annuaire_practitioner_role")),
    )
    with op.batch_alter_table("annuaire_practitioner_role", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_role_organization_id"),
            ["organization_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_role_practitioner_id"),
            ["practitioner_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_role_profession_code"),
            ["profession_code"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_annuaire_practitioner_role_specialty_code"),
            ["specialty_code"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("annuaire_practitioner_role", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_role_specialty_code"))
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_role_profession_code"))
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_role_practitioner_id"))
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_role_organization_id"))

    op.drop_table("annuaire_practitioner_role")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_recorded_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_actor_id"))

    op.drop_table("audit_event")
    with op.batch_alter_table("annuaire_practitioner", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_given_folded"))
        batch_op.drop_index(batch_op.f("ix_annuaire_practitioner_family_folded"))

    op.drop_table("annuaire_practitioner")
    with op.batch_alter_table("annuaire_organization", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_siret"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_sector_code"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_postal_code"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_name_folded"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_finess_ej"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_finess"))
        batch_op.drop_index(batch_op.f("ix_annuaire_organization_city_folded"))

    op.drop_table("annuaire_organization")
    with op.batch_alter_table("annuaire_mailbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annuaire_mailbox_type"))
        batch_op.drop_index(batch_op.f("ix_annuaire_mailbox_practitioner_id"))
        batch_op.drop_index(batch_op.f("ix_annuaire_mailbox_organization_id"))
        batch_op.drop_index("ix_annuaire_mailbox_carrier")

    op.drop_table("annuaire_mailbox")
    with op.batch_alter_table("annuaire_history", schema=None) as batch_op:
        batch_op.drop_index("ix_annuaire_history_resource")

    op.drop_table("annuaire_history")
    op.drop_table("annuaire_extract")
