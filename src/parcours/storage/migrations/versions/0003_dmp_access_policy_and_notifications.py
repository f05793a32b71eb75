"""dmp access policy and notifications: the holder's choices on the record, first readers,
notification outbox, emergency context and policy version in traces

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:19:50.364137
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("recipient_kind", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notification_outbox_idempotency_key")),
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_outbox_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            "ix_notification_outbox_pending", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "dmp_reader",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dmp_patient.id"], name=op.f("fk_dmp_reader_patient_id_dmp_patient")
        ),
        sa.PrimaryKeyConstraint("patient_id", "actor_id", name=op.f("pk_dmp_reader")),
    )
    op.create_table(
        "notification_delivery",
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification_outbox.id"],
            name=op.f("fk_notification_delivery_notification_id_notification_outbox"),
        ),
        sa.PrimaryKeyConstraint(
            "notification_id", "channel", name=op.f("pk_notification_delivery")
        ),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("justification", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("call_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("on_behalf_of", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("policy_version", sa.String(length=16), nullable=True))

    with op.batch_alter_table("dmp_document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("secret_session", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("dmp_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closure_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("mt", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column(
                "oppose_bris_de_glace", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(
            sa.Column("oppose_centre_15", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("mask_all", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("access", sa.Text(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("settings_version", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("dmp_record", schema=None) as batch_op:
        batch_op.drop_column("settings_version")
        batch_op.drop_column("access")
        batch_op.drop_column("mask_all")
        batch_op.drop_column("oppose_centre_15")
        batch_op.drop_column("oppose_bris_de_glace")
        batch_op.drop_column("mt")
        batch_op.drop_column("closure_kind")

    with op.batch_alter_table("dmp_document", schema=None) as batch_op:
        batch_op.drop_column("secret_session")
        batch_op.drop_column("announced_at")
        batch_op.drop_column("published_at")

    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("policy_version")
        batch_op.drop_column("on_behalf_of")
        batch_op.drop_column("call_id")
        batch_op.drop_column("justification")

    op.drop_table("notification_delivery")
    op.drop_table("dmp_reader")
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_outbox_pending")
        batch_op.drop_index(batch_op.f("ix_notification_outbox_patient_id"))

    op.drop_table("notification_outbox")
