"""Where a notification goes: channels behind one small interface.

A channel says whether it can reach a recipient (``address``) and delivers (``send``). The
worker records each channel's delivery in ``notification_delivery``; a channel whose side
effect lives in the same database (the portal inbox) writes it in that same transaction and is
therefore exactly-once. A channel that leaves the database (SMTP) cannot be: if the worker dies
after the server accepted the message and before the delivery row commits, the message is sent
again after the lease expires, with the same ``Message-ID`` (RFC 5322 §3.6.4) so that the
receiving side can drop the duplicate. The MSSanté mailbox channel (issue #6) will be the
second kind, behind the same interface.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from parcours.config import Settings
from parcours.notify.models import InboxMessage, Notification
from parcours.notify.render import Rendered
from parcours.storage.models import utcnow

PATIENT_RECIPIENTS = frozenset({"holder", "representatives"})
PS_RECIPIENTS = frozenset({"mt", "previous_mt", "target"})


class ChannelError(Exception):
    """A delivery failed in a way worth retrying; the message must not contain secrets."""


class Channel(Protocol):
    name: str

    def address(self, session: Session, notification: Notification) -> str | None:
        """Where this channel reaches the recipient, or None when it cannot."""

    def send(
        self, session: Session, notification: Notification, message: Rendered, address: str
    ) -> str:
        """Deliver; return a reference (message id). Raise ChannelError to retry later."""


def inbox_kind(recipient_kind: str) -> str:
    """Whose inbox: a patient's (INS), a professional's (IDNPS), or another person's (heir)."""
    if recipient_kind in PATIENT_RECIPIENTS:
        return "patient"
    if recipient_kind in PS_RECIPIENTS:
        return "ps"
    return "person"


def message_id(notification: Notification, channel: str) -> str:
    """Stable per notification and channel: a resend carries the same id."""
    return f"<{notification.id}.{channel}@parcours>"


class InboxChannel:
    """The portal inbox of the patient (by INS) or of the professional (by IDNPS)."""

    name = "inbox"

    def address(self, session: Session, notification: Notification) -> str | None:
        return notification.recipient_id or None

    def send(
        self, session: Session, notification: Notification, message: Rendered, address: str
    ) -> str:
        existing = session.execute(
            select(InboxMessage.id).where(InboxMessage.notification_id == notification.id)
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        item = InboxMessage(
            id=str(uuid.uuid4()),
            notification_id=notification.id,
            recipient_kind=inbox_kind(notification.recipient_kind),
            recipient_id=address,
            patient_id=notification.patient_id,
            event=notification.event,
            subject=message.subject,
            body=message.body,
            created_at=utcnow(),
        )
        session.add(item)
        session.flush()
        return item.id


@dataclass(frozen=True)
class SmtpSettings:
    url: str
    sender: str
    user: str = ""
    password: str = ""
    ca_file: str = ""
    timeout: float = 30.0


class EmailChannel:
    """E-mail through an SMTP relay (TLS: implicit with smtps://, STARTTLS when offered).

    Professionals are reached at their MSSanté address from the Annuaire santé (type PER),
    patients at the contact address they gave in their rights settings. The message says only
    that something happened; the details are in the DMP.
    """

    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        parts = urlsplit(settings.url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"PARCOURS_SMTP_URL invalide : {parts.scheme}://{parts.hostname}")
        self.settings = settings
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 25)

    def address(self, session: Session, notification: Notification) -> str | None:
        if notification.recipient_kind in PS_RECIPIENTS:
            from parcours.annuaire.models import Mailbox

            return session.execute(
                select(Mailbox.address)
                .where(Mailbox.practitioner_id == notification.recipient_id, Mailbox.type == "PER")
                .order_by(Mailbox.address)
                .limit(1)
            ).scalar_one_or_none()
        if notification.recipient_kind == "holder" and notification.patient_id:
            from parcours.dossier.models import Record

            record = session.get(Record, notification.patient_id)
            contact = (record.access or {}).get("contact", {}) if record else {}
            return contact.get("email") or None
        return None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file or None)
        return context

    def send(
        self, session: Session, notification: Notification, message: Rendered, address: str
    ) -> str:
        mail = EmailMessage()
        mail["From"] = self.settings.sender
        mail["To"] = address
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(utcnow())
        reference = message_id(notification, self.name)
        mail["Message-ID"] = reference
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        mail.set_content(message.body)
        try:
            if self.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.settings.timeout, context=self._context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.settings.timeout)
            with client:
                if not self.implicit_tls:
                    client.ehlo()
                    if client.has_extn("starttls"):
                        client.starttls(context=self._context())
                        client.ehlo()
                if self.settings.user:
                    client.login(self.settings.user, self.settings.password)
                client.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            # The exception text may quote the server, never our credentials.
            raise ChannelError(f"SMTP {self.host}:{self.port} : {type(exc).__name__}") from exc
        return reference


def configured_channels(settings: Settings) -> list[Channel]:
    """The inbox always; e-mail when an SMTP relay is configured."""
    channels: list[Channel] = [InboxChannel()]
    if settings.smtp_url:
        channels.append(
            EmailChannel(
                SmtpSettings(
                    url=settings.smtp_url,
                    sender=settings.notify_sender,
                    user=settings.smtp_user,
                    password=settings.smtp_password,
                    ca_file=settings.smtp_ca_file,
                )
            )
        )
    return channels
