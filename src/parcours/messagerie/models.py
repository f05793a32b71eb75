"""The operator's tables: hosted mailboxes, the outbound queue, and the patient threads.

Message bytes never sit in these tables: they are sealed (AES-GCM, the instance's key ring) in
the blob store, the row keeping the wrapped key, like DMP documents. Folders and stored
messages of the IMAP side live in ``mailstore.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parcours.storage.models import Base, JSONText, UTCDateTime

# TRE_R257-TypeBAL, plus PAT for the patient mailboxes an operator of a patient domain hosts.
MAILBOX_KINDS = ("PER", "ORG", "APP", "CAB", "PAT")


class HostedMailbox(Base):
    """A mailbox this operator hosts (its address is the key and never changes, reference
    §2.1); published to the Annuaire unless on liste rouge, except patient mailboxes."""

    __tablename__ = "mss_mailbox"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(3), nullable=False)
    # PER/CAB: the holder's IDNPS; ORG/APP: the structure's idNat_Struct; PAT: the INS.
    owner: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    structure: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(String(300))
    # ORG: the IDNPS of the people the structure lets read it (it must know who accesses).
    members: Mapped[list[str]] = mapped_column(JSONText, nullable=False, default=list)
    # APP: SHA-256 of the DER of the organisation certificate the software authenticates with.
    cert_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    liste_rouge: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class QueuedMessage(Base):
    """One recipient of one accepted message waiting for relay to another operator.

    The row and the sealed bytes are durable (blob fsync'd, row committed) before the SMTP
    server answers 250; a worker leases rows (``claimed_by``/``claimed_until``) so a crash
    mid-delivery hands them to the next worker, and the receiving side's Message-ID check
    (same bytes, same Message-ID) keeps a redelivery from doubling in the mailbox.
    """

    __tablename__ = "mss_queue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    mail_from: Mapped[str] = mapped_column(String(320), nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    domain: Mapped[str] = mapped_column(String(255), nullable=False)
    message_id: Mapped[str | None] = mapped_column(String(998))
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    wrapped_key: Mapped[str] = mapped_column(String(256), nullable=False)
    # DSN parameters of the submission (RFC 3461): NOTIFY, RET, ENVID, ORCPT.
    dsn: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    delay_reported: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # A report (DSN) decided in the same transaction as the outcome, sent after the commit and
    # then cleared: an operator killed in between sends it when it starts again.
    report_pending: Mapped[dict[str, Any] | None] = mapped_column(JSONText)
    last_reply: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_mss_queue_due", "status", "next_attempt_at"),)


class PatientThread(Base):
    """A professional opened an exchange with a patient mailbox; the patient may answer until
    the professional ends it (subject ``[FIN]`` or ``X-MSS-MES: FIN``; reference §2.4)."""

    __tablename__ = "mss_patient_thread"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient: Mapped[str] = mapped_column(String(320), nullable=False)
    professional: Mapped[str] = mapped_column(String(320), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("patient", "professional"),)
