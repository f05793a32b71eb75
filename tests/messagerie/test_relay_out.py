"""The outbound relay (reference mssante.md §7.2): never in clear (OUT-2), only to the server the
liste blanche names for the domain (OUT-3), with our certificate (OUT-4), retried then reported
(OUT-5), permanent failures reported (OUT-6), success reported when asked (OUT-7). Reports are
RFC 3464 DSNs delivered into the sender's own mailbox."""

from __future__ import annotations

import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from sqlalchemy import select, update

from parcours.messagerie import queue, reports
from parcours.messagerie.mailstore import MailFolder, MailMessage
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.pki import liste_blanche_dn
from parcours.messagerie.smtp import free_port
from tests.messagerie.conftest import DOMAIN_B, DUPONT_A, MARTIN_B, Pair
from tests.messagerie.test_exchange import letter, wait_for
from tests.scenario import DUPONT


@dataclass
class Trap:
    """A server in the way of the relay: records who connected and what it was given."""

    peers: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_STARTTLS(self, server, session, envelope) -> bool:  # type: ignore[no-untyped-def]
        der = session.ssl["ssl_object"].getpeercert(binary_form=True) if session.ssl else None
        if der:
            with self.lock:
                self.peers.append(liste_blanche_dn(x509.load_der_x509_certificate(der).subject))
        return True

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append(envelope.content)
        return "250 OK"


def _trap(pair: Pair, *, tls: bool) -> tuple[Controller, Trap, int]:
    trap = Trap()
    port = free_port()
    kwargs: dict[str, object] = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pair.pki.bundle))
        rogue = pair.certs["rogue"]
        context.load_cert_chain(str(rogue.cert), str(rogue.key))
        context.verify_mode = ssl.CERT_OPTIONAL
        kwargs["tls_context"] = context
    controller = Controller(trap, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, trap, port


def _send(pair: Pair, to: str, **options: list[str]) -> str:
    msg = letter(DUPONT_A, to)
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        client.send_message(msg, **options)
    return str(msg["Message-ID"])


def _queue(pair: Pair) -> list[QueuedMessage]:
    with pair.a.db.session() as session:
        rows = list(session.execute(select(QueuedMessage)).scalars())
        session.expunge_all()
    return rows


def _reports_to_dupont(pair: Pair) -> list[reports.Dsn]:
    found = []
    with pair.a.db.session() as session:
        uids = list(
            session.execute(
                select(MailMessage.uid)
                .join(MailFolder, MailFolder.id == MailMessage.folder_id)
                .where(MailFolder.mailbox == DUPONT_A, MailFolder.name == "INBOX")
            ).scalars()
        )
    for uid in uids:
        raw = pair.a.ctx.mailstore.fetch_raw(DUPONT_A, "INBOX", uid)
        msg = message_from_bytes(raw, policy=policy.default)
        if msg.get_content_type() == "multipart/report":
            found.append(reports.parse_dsn(raw))
    return found


def test_never_in_clear_and_only_to_the_listed_server_with_our_certificate(
    operators: Pair,
) -> None:
    pair = operators
    # OUT-2: the domain's server offers no STARTTLS: nothing is sent, the message waits.
    plain, plain_trap, plain_port = _trap(pair, tls=False)
    # OUT-3/OUT-4: a server with a valid certificate of the trust anchors, listed, but for
    # another domain; it sees our client certificate during the handshake, then gets nothing.
    rogue, rogue_trap, rogue_port = _trap(pair, tls=True)
    try:
        pair.a.ctx.routes[DOMAIN_B] = ("127.0.0.1", plain_port)
        _send(pair, MARTIN_B)
        wait_for(lambda: _queue(pair)[0].attempts >= 1)
        row = _queue(pair)[0]
        assert row.status == "queued" and row.last_reply and row.last_reply.startswith("451")
        assert plain_trap.messages == []

        pair.a.ctx.routes[DOMAIN_B] = ("127.0.0.1", rogue_port)
        wait_for(lambda: _queue(pair)[0].attempts >= 2, timeout=30)
        row = _queue(pair)[0]
        assert row.status == "queued" and "non inscrit" in (row.last_reply or "")
        assert rogue_trap.messages == []
        assert rogue_trap.peers and rogue_trap.peers[0] == pair.certs["a"].dn  # OUT-4

        # The real operator of the domain gets it at the next attempt, once.
        pair.a.ctx.routes[DOMAIN_B] = ("127.0.0.1", pair.b.ports["relay"])
        wait_for(lambda: _queue(pair)[0].status == "sent", timeout=30)
    finally:
        plain.stop()
        rogue.stop()


def test_permanent_failure_and_requested_success_are_reported_to_the_sender(
    operators: Pair,
) -> None:
    pair = operators
    # OUT-6: B refuses an unknown mailbox (550 5.1.1): failed DSN with the original headers.
    message_id = _send(pair, f"personne@{DOMAIN_B}")
    wait_for(lambda: any(d.recipients[0].action == "failed" for d in _reports_to_dupont(pair)))
    failed = next(d for d in _reports_to_dupont(pair) if d.recipients[0].action == "failed")
    assert failed.recipients[0].status == "5.1.1"
    assert failed.recipients[0].recipient == f"personne@{DOMAIN_B}"
    assert failed.returned == "headers"  # RET=HDRS by default
    assert failed.original_headers is not None
    assert failed.original_headers["Message-ID"] == message_id
    # OUT-7: NOTIFY=SUCCESS asks for a report of the relay.
    _send(pair, MARTIN_B, rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    wait_for(lambda: any(d.recipients[0].action == "relayed" for d in _reports_to_dupont(pair)))
    # NOTIFY=NEVER: a failure reported to nobody.
    before = len(_reports_to_dupont(pair))
    _send(pair, f"inconnu@{DOMAIN_B}", rcpt_options=["NOTIFY=NEVER"])
    wait_for(lambda: [q.status for q in _queue(pair)].count("failed") == 2)
    assert len(_reports_to_dupont(pair)) == before


def test_a_peer_down_is_retried_then_delayed_then_given_up(operators: Pair) -> None:
    pair = operators
    pair.b.stop()
    pair.a.ctx.delay_warning = timedelta(seconds=1)
    pair.a.ctx.queue_lifetime = timedelta(seconds=4)
    pair.a.ctx.max_retry_seconds = 0.5
    _send(pair, MARTIN_B)
    # OUT-5: a delay report once, then the failure at the end of the queue lifetime.
    wait_for(lambda: any(d.recipients[0].action == "delayed" for d in _reports_to_dupont(pair)))
    wait_for(lambda: _queue(pair)[0].status == "expired", timeout=30)
    # The report is written after the round's outcome commits: wait for it, not for the status.
    wait_for(lambda: len(_reports_to_dupont(pair)) >= 2, timeout=30)
    actions = sorted(d.recipients[0].action for d in _reports_to_dupont(pair))
    assert actions == ["delayed", "failed"]
    failed = next(d for d in _reports_to_dupont(pair) if d.recipients[0].action == "failed")
    assert failed.recipients[0].status == "5.4.7"
    assert _queue(pair)[0].attempts >= 2


def test_a_relay_attempt_that_cannot_open_tls_is_not_a_silent_success() -> None:
    """aiosmtplib with start_tls=True refuses a server without STARTTLS (the property OUT-2
    rests on): checked here against the library itself, not through our code."""
    import asyncio

    import aiosmtplib

    from parcours.messagerie.smtp import free_port as port_of

    class Sink:
        async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
            return "250 OK"

    port = port_of()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:

        async def attempt() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, timeout=5)
            await client.connect()

        try:
            asyncio.run(attempt())
        except (aiosmtplib.SMTPException, OSError) as exc:
            assert "STARTTLS" in str(exc) or "TLS" in str(exc)
        else:
            raise AssertionError("connexion en clair acceptée")
    finally:
        controller.stop()
    assert smtplib  # stdlib client used by the fixtures


def test_a_report_decided_before_a_crash_is_sent_at_restart_once(
    operators: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome and the decision to report commit together; the report itself is written
    after. An operator killed in between sends it when it starts again, and only once."""
    pair = operators
    crashed = threading.Event()

    def killed(ctx: object, row_id: int) -> None:  # the process dies right after the commit
        crashed.set()
        raise RuntimeError("processus tué")

    monkeypatch.setattr(queue, "send_pending_report", killed)
    _send(pair, f"personne@{DOMAIN_B}")  # B refuses: 550 5.1.1, a failure report is due
    wait_for(crashed.is_set)
    row = _queue(pair)[0]
    assert row.status == "failed"
    assert row.report_pending is not None and row.report_pending["action"] == "failed"
    assert _reports_to_dupont(pair) == []
    monkeypatch.undo()
    # Restart: the pending report goes out; a second start (or a report sent but not yet
    # cleared when the process died) does not double it.
    assert queue.send_all_pending_reports(pair.a.ctx) == 1
    with pair.a.db.session() as session:
        session.execute(
            update(QueuedMessage).values(report_pending={**row.report_pending})  # type: ignore[dict-item]
        )
    assert queue.send_all_pending_reports(pair.a.ctx) == 1
    assert queue.send_all_pending_reports(pair.a.ctx) == 0
    found = _reports_to_dupont(pair)
    assert [d.recipients[0].action for d in found] == ["failed"]
    assert found[0].recipients[0].status == "5.1.1"


def test_the_sealed_copy_is_deleted_once_no_recipient_needs_it(operators: Pair) -> None:
    """A health message is not kept longer than its relay: once relayed (and any report sent),
    the queue's encrypted copy goes; the row stays as the record of what happened."""
    pair = operators

    def copies() -> list[str]:
        stored = pair.a.ctx.blobs.keys()  # the blob store's listing, not a dict
        return [k for k in stored if k.startswith("mss/queue/")]

    pair.b.stop()  # first queued and kept while the peer is away
    _send(pair, MARTIN_B, rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    wait_for(lambda: _queue(pair) and _queue(pair)[0].attempts >= 1)
    assert len(copies()) == 1
    pair.b.start()
    pair.a.ctx.routes[DOMAIN_B] = ("127.0.0.1", pair.b.ports["relay"])
    wait_for(lambda: _queue(pair)[0].status == "sent", timeout=60)
    # The success report quoted the original before it went.
    wait_for(lambda: any(d.recipients[0].action == "relayed" for d in _reports_to_dupont(pair)))
    wait_for(lambda: copies() == [])
    assert _queue(pair)[0].report_pending is None
