"""The notification outbox.

A row is inserted in the same transaction as the trace of the action that caused it, so a
notification is never lost and never sent for an action that was rolled back. The idempotency
key (record | event | object | recipient, reference dmp-access.md §3.2) is unique: a repeated
event queues nothing new, and the worker marks each channel delivery so a restart delivers
each notification to each channel exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parcours.storage.models import Base, JSONText, UTCDateTime


class Notification(Base):
    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    recipient_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    recipient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    # No medical content: who acted, when, in which mode, the document id at most.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A worker's lease: another worker (or the same one restarted) takes the row over only
    # once the lease has expired, so a live worker is never raced on the same notification.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """One channel's delivery of one notification: the worker's exactly-once marker."""

    __tablename__ = "notification_delivery"

    notification_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("notification_outbox.id"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    reference: Mapped[str | None] = mapped_column(String(255))  # e.g. the Message-ID sent


class InboxMessage(Base):
    """A message in a user's portal inbox (patient or professional).

    Written in the same transaction as the channel's ``Delivery`` row, so the inbox channel is
    exactly-once even when the worker dies between two statements.
    """

    __tablename__ = "inbox_message"
    __table_args__ = (Index("ix_inbox_message_recipient", "recipient_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notification_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("notification_outbox.id"), unique=True
    )
    recipient_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    recipient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
