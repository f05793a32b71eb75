"""Accepting a message durably, delivering it locally, and relaying it to other operators.

``accept`` runs before the SMTP server answers 250: local recipients get the message in their
mailbox (sealed blob fsync'd, row committed), remote ones a queue row each next to one sealed
copy. Only then is 250 sent; a crash after that point loses nothing (issue #6 §4).

``RelayWorker`` leases due rows, connects to the recipient domain's operator with STARTTLS and
our certificate (mutual TLS), checks that the certificate it is shown belongs to that domain in
the liste blanche (OUT-3), and sends. Temporary failures back off (30 s doubling, capped at an
hour); a permanent failure, or the queue lifetime running out, sends a DSN (RFC 3464) to the
sender's mailbox — who is ours, since he submitted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes, policy

import aiosmtplib
from cryptography import x509
from sqlalchemy import or_, select, update

from parcours.audit.service import AuditEntry, append, chain_of
from parcours.messagerie import service
from parcours.messagerie.context import OperatorContext
from parcours.messagerie.mailstore import MailFolder, MailMessage
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.pki import liste_blanche_dn
from parcours.storage.blobs import BlobNotFound
from parcours.storage.models import utcnow

log = logging.getLogger("parcours.messagerie.queue")

DSN_MAIL_KEYS = ("RET", "ENVID")
DSN_RCPT_KEYS = ("NOTIFY", "ORCPT")


class AcceptError(Exception):
    """The message could not be made durable: answer 451, the client will retry."""


def message_id_of(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = message_from_bytes(head + b"\r\n\r\n", policy=policy.compat32)
    value = parsed.get("Message-ID")
    return str(value).strip() if value else None


def dsn_options(options: Iterable[str], keys: tuple[str, ...]) -> dict[str, str]:
    """RFC 3461 parameters out of aiosmtpd's raw MAIL/RCPT option list."""
    found: dict[str, str] = {}
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() in keys:
            found[name.upper()] = value
    return found


# --- local delivery -----------------------------------------------------------------------


def already_delivered(ctx: OperatorContext, address: str, message_id: str | None) -> bool:
    """A relayed message re-sent after a crash of the sender (it had our 250, not its own
    commit) carries the same Message-ID: deliver it once (issue #6, kill -9 test)."""
    if not message_id:
        return False
    with ctx.db.session() as session:
        found = session.execute(
            select(MailMessage.id)
            .join(MailFolder, MailFolder.id == MailMessage.folder_id)
            .where(MailFolder.mailbox == address, MailMessage.message_id == message_id)
            .limit(1)
        ).first()
    return found is not None


def deliver_local(ctx: OperatorContext, address: str, raw: bytes) -> bool:
    """Into the mailbox's INBOX; False when it was already there (duplicate suppressed)."""
    message_id = message_id_of(raw)
    if already_delivered(ctx, address, message_id):
        return False
    ctx.mailstore.ensure_mailbox(address)
    ctx.mailstore.deliver(address, raw)
    return True


# --- durable acceptance -------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    address: str
    dsn: dict[str, str]


def accept(
    ctx: OperatorContext,
    mail_from: str,
    recipients: list[Recipient],
    raw: bytes,
    *,
    mail_dsn: dict[str, str] | None = None,
) -> None:
    """Make the message durable for every recipient, or raise AcceptError (nothing kept for
    the remote ones; local copies already made are suppressed on the client's retry by their
    Message-ID)."""
    remote = [r for r in recipients if not ctx.hosts(r.address.rpartition("@")[2])]
    local = [r for r in recipients if ctx.hosts(r.address.rpartition("@")[2])]
    # --- DMP filing hook (filing.py): a filing address (dmp@<domain>) is filed into the DMP,
    # not delivered; filing answers the sender itself and raises AcceptError only when the
    # message could be neither filed nor kept. Late import: filing imports this module.
    from parcours.messagerie import filing

    filed = [r for r in local if filing.handles(ctx, r.address)]
    local = [r for r in local if r not in filed]
    # --- end of DMP filing hook (continued below)
    if remote:
        enqueue(ctx, mail_from, remote, raw, mail_dsn or {})
    for recipient in local:
        try:
            deliver_local(ctx, recipient.address, raw)
        except Exception as exc:
            log.exception("local delivery failed")
            raise AcceptError(str(exc)) from exc
    for recipient in filed:  # DMP filing hook: last, once the other copies are durable
        filing.file_accepted(ctx, recipient.address, mail_from, raw)


def enqueue(
    ctx: OperatorContext,
    mail_from: str,
    recipients: list[Recipient],
    raw: bytes,
    mail_dsn: dict[str, str],
) -> str:
    key = uuid.uuid4().hex
    blob_key = f"mss/queue/{key}"
    sealed = ctx.keys.seal(raw, f"mss-queue:{key}")
    ctx.blobs.put(blob_key, sealed.ciphertext)  # fsync'd by the blob store
    now = utcnow()
    message_id = message_id_of(raw)
    try:
        with ctx.db.session() as session:
            for recipient in recipients:
                session.add(
                    QueuedMessage(
                        message_key=key,
                        mail_from=mail_from,
                        recipient=recipient.address,
                        domain=recipient.address.rpartition("@")[2].lower(),
                        message_id=message_id,
                        size=len(raw),
                        key_id=sealed.key_id,
                        wrapped_key=sealed.wrapped_key,
                        dsn={**mail_dsn, **recipient.dsn},
                        status="queued",
                        attempts=0,
                        next_attempt_at=now,
                        expires_at=now + ctx.queue_lifetime,
                        created_at=now,
                    )
                )
    except Exception as exc:
        with contextlib.suppress(Exception):
            ctx.blobs.delete(blob_key)
        raise AcceptError(str(exc)) from exc
    return key


def queued_bytes(ctx: OperatorContext, row: QueuedMessage) -> bytes:
    data = ctx.blobs.get(f"mss/queue/{row.message_key}")
    return ctx.keys.open(data, row.key_id, row.wrapped_key, f"mss-queue:{row.message_key}")


# --- relay --------------------------------------------------------------------------------


class PeerRefused(Exception):
    """The peer is not who the liste blanche says serves that domain (never send to it)."""


def client_context(ctx: OperatorContext) -> ssl.SSLContext:
    """Trust only the IGC-Santé chain (not the system store), present our certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ctx.ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(ctx.cert), str(ctx.key))
    return context


@dataclass
class Attempt:
    code: int  # 250 delivered, 4xx temporary, 5xx permanent
    reply: str


async def relay_one(
    ctx: OperatorContext, tls: ssl.SSLContext, domain: str, rows: list[QueuedMessage]
) -> dict[int, Attempt]:
    """One connection to the domain's operator for all due rows of that domain."""
    host, port = ctx.route(domain)
    results: dict[int, Attempt] = {}
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        start_tls=True,  # refuses a peer without STARTTLS: nothing ever goes in clear (OUT-2)
        tls_context=tls,
        local_hostname=ctx.hostname,
        timeout=30,
    )
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return {r.id: Attempt(451, f"connexion à {host}:{port} impossible : {exc}") for r in rows}
    try:
        ssl_object = client.get_transport_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if der is None:
            raise PeerRefused("pas de TLS")
        dn = liste_blanche_dn(x509.load_der_x509_certificate(der).subject)
        if not ctx.liste.current.allows(domain, dn):
            raise PeerRefused(f"certificat « {dn} » non inscrit pour {domain}")
        for row in rows:
            try:
                raw = queued_bytes(ctx, row)
            except BlobNotFound:
                results[row.id] = Attempt(554, "message introuvable dans la file")
                continue
            mail_options, rcpt_options = [], []
            if "DSN" in (client.esmtp_extensions or {}):
                mail_options = [f"{k}={row.dsn[k]}" for k in DSN_MAIL_KEYS if k in row.dsn]
                rcpt_options = [f"{k}={row.dsn[k]}" for k in DSN_RCPT_KEYS if k in row.dsn]
            try:
                errors, reply = await client.sendmail(
                    row.mail_from,
                    [row.recipient],
                    raw,
                    mail_options=mail_options,
                    rcpt_options=rcpt_options,
                )
                if errors:
                    code, text = errors[row.recipient]
                    results[row.id] = Attempt(code, text)
                else:
                    results[row.id] = Attempt(250, reply)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refusal = exc.recipients[0]
                results[row.id] = Attempt(refusal.code, refusal.message)
                with contextlib.suppress(Exception):
                    await client.rset()
            except aiosmtplib.SMTPResponseException as exc:
                results[row.id] = Attempt(exc.code, exc.message)
                with contextlib.suppress(Exception):
                    await client.rset()
            except (aiosmtplib.SMTPException, OSError) as exc:
                results[row.id] = Attempt(451, f"connexion interrompue : {exc}")
                break
    except PeerRefused as exc:
        log.warning("relais vers %s refusé : %s", domain, exc)
        for row in rows:
            results[row.id] = Attempt(454, f"pair refusé : {exc}")
    finally:
        with contextlib.suppress(Exception):
            await client.quit()
    for row in rows:
        results.setdefault(row.id, Attempt(451, "non tenté (connexion interrompue)"))
    return results


def lease(ctx: OperatorContext, worker: str, limit: int, lease_seconds: float) -> list[int]:
    now = utcnow()
    with ctx.db.session() as session:
        ids = list(
            session.execute(
                select(QueuedMessage.id)
                .where(
                    QueuedMessage.status == "queued",
                    QueuedMessage.next_attempt_at <= now,
                    or_(
                        QueuedMessage.claimed_until.is_(None),
                        QueuedMessage.claimed_until < now,
                    ),
                )
                .order_by(QueuedMessage.next_attempt_at, QueuedMessage.id)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return []
        # One compare-and-set for the batch (another worker may have taken some meanwhile),
        # then read back which rows carry this lease: one short write, not one per row.
        until = now + timedelta(seconds=lease_seconds)
        session.execute(
            update(QueuedMessage)
            .where(
                QueuedMessage.id.in_(ids),
                QueuedMessage.status == "queued",
                or_(
                    QueuedMessage.claimed_until.is_(None),
                    QueuedMessage.claimed_until < now,
                ),
            )
            .values(claimed_by=worker, claimed_until=until)
        )
        claimed = list(
            session.execute(
                select(QueuedMessage.id).where(
                    QueuedMessage.id.in_(ids),
                    QueuedMessage.claimed_by == worker,
                    QueuedMessage.claimed_until == until,
                )
            ).scalars()
        )
    return sorted(claimed)


def _backoff(ctx: OperatorContext, attempts: int) -> timedelta:
    return timedelta(
        seconds=min(ctx.first_retry_seconds * (2 ** max(attempts - 1, 0)), ctx.max_retry_seconds)
    )


def settle(ctx: OperatorContext, worker: str, row_id: int, attempt: Attempt) -> None:
    settle_many(ctx, worker, {row_id: attempt})


def settle_many(ctx: OperatorContext, worker: str, outcomes: dict[int, Attempt]) -> None:
    """Record a round's outcomes in one transaction, with their traces: one per message that
    reached its end (relayed, refused, expired), and for messages that will be retried one per
    sender and reply (a peer down for an hour must not cost a durable commit per message per
    round). Then send the DSNs the senders asked for (or the default ones)."""
    now = utcnow()
    reports: list[int] = []
    finished: set[str] = set()  # message keys with a recipient that reached its end
    retried: dict[tuple[str, str], int] = {}
    entries: list[AuditEntry] = []
    with ctx.db.session() as session:
        rows = session.execute(
            select(QueuedMessage).where(QueuedMessage.id.in_(list(outcomes)))
        ).scalars()
        for row in rows:
            attempt = outcomes[row.id]
            if row.claimed_by != worker or row.status != "queued":
                continue
            row.attempts += 1
            row.last_reply = f"{attempt.code} {attempt.reply}"[:2000]
            row.claimed_by = row.claimed_until = None
            notify = {n.strip().upper() for n in row.dsn.get("NOTIFY", "FAILURE,DELAY").split(",")}
            if attempt.code < 300:
                row.status, row.done_at = "sent", now
                if "SUCCESS" in notify:
                    reports.append(_pending(row, "relayed", "2.0.0", attempt))
            elif attempt.code >= 500 or now >= row.expires_at:
                row.status, row.done_at = ("failed" if attempt.code >= 500 else "expired"), now
                if "NEVER" not in notify:
                    # RFC 3464 §2.3.4: "failed" goes with a 5.x.x status; giving up at the
                    # end of the queue lifetime is 5.4.7 (RFC 3463, delivery time expired).
                    status = _enhanced(attempt) if attempt.code >= 500 else "5.4.7"
                    reports.append(_pending(row, "failed", status, attempt))
            else:
                row.next_attempt_at = now + _backoff(ctx, row.attempts)
                if (
                    not row.delay_reported
                    and now - row.created_at >= ctx.delay_warning
                    and "DELAY" in notify
                ):
                    row.delay_reported = True
                    reports.append(_pending(row, "delayed", "4.4.1", attempt))
                key = (row.mail_from, f"{attempt.code} {attempt.reply[:160]}")
                retried[key] = retried.get(key, 0) + 1
                continue
            finished.add(row.message_key)
            entries.append(
                service.trace_entry(
                    "mss-relais-sortant",
                    row.mail_from or None,
                    outcome=attempt.code if row.status != "expired" else 554,
                    message_id=row.message_id,
                    detail=(
                        f"destinataire={row.recipient}; taille={row.size}; "
                        f"réponse={attempt.reply[:200]}"
                    ),
                ),
            )
        for (mail_from, reply), count in retried.items():
            entries.append(
                service.trace_entry(
                    "mss-relais-report",
                    mail_from or None,
                    outcome=int(reply[:3]),
                    detail=f"messages={count}; réponse={reply[4:]}",
                )
            )
        # The queue updates first: on SQLite they take the write lock, so the chain heads read
        # next cannot move before this commits. Chains in one order for every writer: two
        # workers settling overlapping senders take the chains' locks (PostgreSQL) in the same
        # order and cannot deadlock.
        session.flush()
        for entry in sorted(entries, key=chain_of):
            append(session, entry)
    for row_id in reports:
        send_pending_report(ctx, row_id)
    release_copies(ctx, finished)


def release_copies(ctx: OperatorContext, message_keys: set[str]) -> int:
    """Delete the sealed copy of a message once no recipient still needs it: none queued,
    none with a report to send (a DSN quotes the original). The row stays, without content,
    as the record of what happened; a health message is not kept longer than its relay."""
    if not message_keys:
        return 0
    with ctx.db.session() as session:
        busy = set(
            session.execute(
                select(QueuedMessage.message_key).where(
                    QueuedMessage.message_key.in_(sorted(message_keys)),
                    or_(
                        QueuedMessage.status == "queued",
                        QueuedMessage.report_pending.is_not(None),
                    ),
                )
            ).scalars()
        )
    removed = 0
    for key in sorted(message_keys - busy):
        ctx.blobs.delete(f"mss/queue/{key}")  # a missing key is not an error (BlobStore)
        removed += 1
    return removed


def _pending(row: QueuedMessage, action: str, status: str, attempt: Attempt) -> int:
    """Decide a report in the outcome's transaction; it is sent once that commits."""
    row.report_pending = {
        "action": action,
        "status": status,
        "code": attempt.code,
        "reply": attempt.reply,
    }
    return row.id


def send_pending_report(ctx: OperatorContext, row_id: int) -> None:
    """Send the report decided for ``row_id``, then clear it. Its Message-ID is derived from
    the row and the action, so a report sent again after a crash (sent, not yet cleared) is
    stored once: local delivery keeps one copy per Message-ID."""
    with ctx.db.session() as session:
        row = session.get(QueuedMessage, row_id)
        pending = row.report_pending if row is not None else None
    if not pending:
        return
    attempt = Attempt(int(pending["code"]), str(pending["reply"]))
    send_dsn(ctx, row_id, str(pending["action"]), str(pending["status"]), attempt)
    with ctx.db.session() as session:
        session.execute(
            update(QueuedMessage).where(QueuedMessage.id == row_id).values(report_pending=None)
        )


def send_all_pending_reports(ctx: OperatorContext) -> int:
    """At start: the reports a killed instance decided but did not send."""
    with ctx.db.session() as session:
        ids = list(
            session.execute(
                select(QueuedMessage.id).where(QueuedMessage.report_pending.is_not(None))
            ).scalars()
        )
    for row_id in ids:
        send_pending_report(ctx, row_id)
    return len(ids)


def _enhanced(attempt: Attempt) -> str:
    text = attempt.reply.strip()
    head = text.split(" ", 1)[0]
    if head.count(".") == 2 and head[0] in "245":
        return head
    return f"{str(attempt.code)[0]}.0.0"


def send_dsn(ctx: OperatorContext, row_id: int, action: str, status: str, attempt: Attempt) -> None:
    """Deliver a delivery status notification into the sender's own mailbox (RFC 3464)."""
    from parcours.messagerie import reports

    with ctx.db.session() as session:
        row = session.get(QueuedMessage, row_id)
        assert row is not None
        try:
            original = queued_bytes(ctx, row)
        except BlobNotFound:
            return
        mail_from, recipient, created, dsn = row.mail_from, row.recipient, row.created_at, row.dsn
        expires = row.expires_at
    sender_domain = mail_from.rpartition("@")[2].lower()
    if not ctx.hosts(sender_domain):
        return
    host, _ = ctx.route(recipient.rpartition("@")[2])
    report = reports.build_dsn(
        original,
        reporting_mta=ctx.hostname,
        recipients=[
            reports.RecipientStatus(
                recipient=recipient,
                original_recipient=dsn.get("ORCPT"),
                action=action,
                status=status,
                diagnostic=f"{attempt.code} {attempt.reply}",
                remote_mta=host,
                last_attempt=utcnow(),
                will_retry_until=expires if action == "delayed" else None,
            )
        ],
        envid=dsn.get("ENVID"),
        ret="FULL" if dsn.get("RET", "").upper() == "FULL" else "HDRS",
        arrival_date=created,
        message_id=f"<dsn-{row_id}-{action}@{ctx.hostname}>",
        from_address=f"MAILER-DAEMON@{sender_domain}",
        to_address=mail_from,
    )
    deliver_local(ctx, mail_from, report)
    service.trace(
        ctx.db,
        "mss-dsn",
        mail_from,
        outcome=250,
        message_id=message_id_of(report),
        detail=f"action={action}; statut={status}; destinataire={recipient}",
    )


async def run_once(ctx: OperatorContext, worker: str, *, limit: int = 200) -> int:
    ids = await asyncio.to_thread(lease, ctx, worker, limit, 300.0)
    if not ids:
        return 0
    rows = await asyncio.to_thread(_load, ctx, ids)
    by_domain: dict[str, list[QueuedMessage]] = {}
    for row in rows:
        by_domain.setdefault(row.domain, []).append(row)
    tls = client_context(ctx)
    outcomes = await asyncio.gather(
        *(relay_one(ctx, tls, domain, batch) for domain, batch in by_domain.items())
    )
    for result in outcomes:
        await asyncio.to_thread(settle_many, ctx, worker, result)
    return len(ids)


def _load(ctx: OperatorContext, ids: list[int]) -> list[QueuedMessage]:
    with ctx.db.session() as session:
        rows = list(
            session.execute(select(QueuedMessage).where(QueuedMessage.id.in_(ids))).scalars()
        )
        session.expunge_all()
    return rows


class RelayWorker:
    """The outbound relay of one operator, in its own thread and event loop; ``kick`` wakes it
    as soon as something is queued instead of waiting for the next poll."""

    def __init__(self, ctx: OperatorContext, poll_seconds: float = 2.0) -> None:
        self.ctx = ctx
        self.poll = poll_seconds
        self.name = f"{ctx.name}-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def release_previous_claims(self) -> int:
        """Rows leased by an earlier incarnation of this operator on this host (killed before
        it could settle them) are due again now rather than when their lease runs out. Were
        one still being sent by a live process, the receiving operator would keep a single
        copy: it refuses nothing but stores a Message-ID once per mailbox."""
        prefix = f"{self.ctx.name}-{socket.gethostname()}-"
        with self.ctx.db.session() as session:
            done = session.execute(
                update(QueuedMessage)
                .where(
                    QueuedMessage.status == "queued",
                    QueuedMessage.claimed_by.like(prefix + "%"),
                    QueuedMessage.claimed_by != self.name,
                )
                .values(claimed_by=None, claimed_until=None)
            )
            return int(done.rowcount or 0)

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        released = self.release_previous_claims()
        if released:
            log.warning("%d envois repris après l'arrêt brutal d'une instance précédente", released)
        reported = send_all_pending_reports(self.ctx)
        if reported:
            log.warning("%d avis de remise envoyés après l'arrêt d'une instance", reported)
        self._thread = threading.Thread(
            target=self._run, name=f"relay-{self.ctx.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.is_set():
                try:
                    count = loop.run_until_complete(run_once(self.ctx, self.name))
                except Exception:
                    log.exception("relay round failed")
                    count = 0
                if count == 0:
                    self._wake.wait(self.poll)
                    self._wake.clear()
        finally:
            loop.close()
