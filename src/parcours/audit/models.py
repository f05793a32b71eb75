"""The trace table. Rows are only ever inserted; each carries the hash of its predecessor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parcours.storage.models import Base, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    actor_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor_structure: Mapped[str | None] = mapped_column(String(64))
    access_mode: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    query: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[int] = mapped_column(Integer, nullable=False)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    # The DMP concerned (patient id) and the policy rule that decided: what a patient's
    # "who saw my record" page and an auditor replaying a decision need.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    rule: Mapped[str | None] = mapped_column(String(64))
    # Emergency access context and the policy data version that decided (replayable).
    justification: Mapped[str | None] = mapped_column(Text)
    call_id: Mapped[str | None] = mapped_column(String(64))
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))  # structure asserting the PS
    policy_version: Mapped[str | None] = mapped_column(String(16))
    # MSSanté message events: the mailbox concerned (chain "mss:<digest>", one per mailbox).
    mailbox: Mapped[str | None] = mapped_column(String(320), index=True)
    # The chain this row belongs to: one per DMP (the patient id), "-" for accesses that
    # concern no record (reference dmp-access.md §3.1, "hash-chained per record"). Rows written
    # before chains were split have NULL and form the original single chain.
    chain: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Set when the record's retention ended and the row's identifying fields were erased: the
    # row keeps its place and hash in the chain (a tombstone), see audit.service.verify.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Two writers that read the same predecessor cannot both commit: no fork, ever.
        UniqueConstraint("chain", "prev_hash", name="uq_audit_event_chain_prev"),
        Index("ix_audit_event_chain_seq", "chain", "seq"),
    )


class AuditCheckpoint(Base):
    """A signed statement of the whole log up to ``upto_seq``.

    ``accumulator`` folds every row's hash in sequence order, so deleting the last rows of a
    chain, which a per-chain walk alone cannot see, changes it; the signature (the instance's
    checkpoint key, kept outside the database) stops someone with write access to the tables
    from rebuilding the chains and the checkpoints together.
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    upto_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    accumulator: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_checkpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[str] = mapped_column(Text, nullable=False)
