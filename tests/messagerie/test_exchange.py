"""End to end between two operators, with ``smtplib`` and ``imaplib`` only (issue #6, tests §1):
a professional of operator A sends to one of operator B with an XDM attachment, over A's
submission, A's mutual-TLS relay and B's inbound relay; B reads it over IMAP and answers with
an MDN that comes back to A."""

from __future__ import annotations

import contextlib
import email
import smtplib
import time
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.messagerie import reports, xdm
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.operator import Operator
from tests.messagerie.conftest import DOMAIN_B, DUPONT_A, MARTIN_B, Pair
from tests.messagerie.test_xdm import build as build_package
from tests.scenario import DUPONT, MARTIN


def letter(
    sender: str, to: str, subject: str = "Courrier de liaison", **extra: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(email.utils.localtime())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    for name, value in extra.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Bonjour, ci-joint le compte rendu.\nConfraternellement.")
    return msg


def wait_for(predicate, timeout: float = 20.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition non atteinte à temps")


def inbox_count(pair: Pair, op: Operator, who: str, idnat: str) -> int:
    client = pair.imap(op, who, pair.token(idnat))
    try:
        status, data = client.select("INBOX", readonly=True)
        assert status == "OK"
        return int(data[0])
    finally:
        client.logout()


def test_ps_of_a_sends_an_xdm_to_ps_of_b_who_reads_it_and_acknowledges(operators: Pair) -> None:
    pair = operators
    package = build_package()
    msg = letter(
        DUPONT_A,
        MARTIN_B,
        subject="XDM/1.0/DDM+Compte rendu de consultation",
        X_MSS_NIL="DEV000001",
        Disposition_Notification_To=DUPONT_A,
    )
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        refused = client.send_message(msg)
    assert refused == {}

    wait_for(lambda: inbox_count(pair, pair.b, MARTIN_B, "8" + MARTIN) == 1)
    reader = pair.imap(pair.b, MARTIN_B, pair.token("8" + MARTIN))
    reader.select("INBOX")
    status, data = reader.fetch("1", "(BODY[])")
    assert status == "OK"
    raw = next(part[1] for part in data if isinstance(part, tuple))
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["Message-ID"] == msg["Message-ID"]
    assert received["X-MSS-NIL"] == "DEV000001"
    assert "by mx.territoire.mssante.test" in str(received.get_all("Received"))
    attachment = next(p for p in received.iter_attachments() if p.get_filename() == "IHE_XDM.ZIP")
    opened = xdm.read_xdm(attachment.get_content())
    sent = xdm.read_xdm(package)
    assert [e.document.content for e in opened.entries] == [
        e.document.content for e in sent.entries
    ]
    reader.logout()

    # The recipient's client answers the read receipt (RFC 8098) through its own operator.
    to = reports.mdn_requested(received, return_path=DUPONT_A)
    assert to == DUPONT_A
    mdn = reports.build_mdn(
        received,
        final_recipient=MARTIN_B,
        disposition="processed",
        mode="automatic-action/MDN-sent-automatically",
        error=None,
        reporting_ua="parcours-test",
        from_address=MARTIN_B,
    )
    with pair.smtp(pair.b, MARTIN_B, pair.token("8" + MARTIN)) as client:
        client.sendmail(MARTIN_B, [DUPONT_A], mdn)

    wait_for(lambda: inbox_count(pair, pair.a, DUPONT_A, "8" + DUPONT) == 1)
    back = pair.imap(pair.a, DUPONT_A, pair.token("8" + DUPONT))
    back.select("INBOX")
    _, data = back.fetch("1", "(BODY[])")
    parsed = reports.parse_mdn(next(p[1] for p in data if isinstance(p, tuple)))
    assert parsed.original_message_id == msg["Message-ID"]
    assert parsed.disposition.endswith("processed")
    back.logout()

    # Traces: submission in the sender's chain, relay out, inbound delivery in the recipient's,
    # IMAP read; never a subject; the chains verify.
    with pair.a.db.session() as session:
        a_events = {
            (e.mailbox, e.action)
            for e in session.execute(
                select(AuditEvent).where(AuditEvent.mailbox.is_not(None))
            ).scalars()
        }
        subjects = [e.query or "" for e in session.execute(select(AuditEvent)).scalars()]
        queued = session.execute(select(QueuedMessage)).scalars().all()
    assert (DUPONT_A, "mss-soumission") in a_events
    assert (DUPONT_A, "mss-relais-sortant") in a_events
    assert (DUPONT_A, "mss-relais-entrant") in a_events  # the MDN
    assert all("Compte rendu" not in text for text in subjects)
    assert [q.status for q in queued] == ["sent"]
    with pair.b.db.session() as session:
        b_events = {
            (e.mailbox, e.action)
            for e in session.execute(
                select(AuditEvent).where(AuditEvent.mailbox.is_not(None))
            ).scalars()
        }
    assert (MARTIN_B, "mss-relais-entrant") in b_events
    assert any(action.startswith("mss-imap") for _, action in b_events)
    assert verify(pair.a.db).ok and verify(pair.b.db).ok
    assert DOMAIN_B in {q.domain for q in queued}


def test_the_mailbox_owner_reads_its_message_events_over_fhir(operators: Pair) -> None:
    """Issue #6 §6: every message event traced without content, queryable by the mailbox
    owner (FHIR AuditEvent, ``entity-name`` = the address) and by nobody else."""
    from fastapi.testclient import TestClient

    from parcours.app import create_app

    pair = operators
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        client.send_message(letter(DUPONT_A, MARTIN_B, subject="Résultats de M. Secret"))
        with contextlib.suppress(smtplib.SMTPRecipientsRefused):
            client.send_message(letter(DUPONT_A, "x@gmail.com"))
    wait_for(lambda: inbox_count(pair, pair.b, MARTIN_B, "8" + MARTIN) == 1)
    app = create_app(pair.settings, pair.a.db)
    with TestClient(app) as http:

        def get(who: str) -> Any:
            return http.get(
                "/fhir/AuditEvent",
                params={"entity-name": DUPONT_A},
                headers={"Authorization": f"Bearer {pair.token(who)}"},
            )

        mine = get("8" + DUPONT)
        assert mine.status_code == 200, mine.text
        events = [e["resource"] for e in mine.json()["entry"]]
        actions = {e["subtype"][0]["code"] for e in events}
        assert {"mss-authentification", "mss-soumission", "mss-refus"} <= actions
        assert wait_for(
            lambda: (
                "mss-relais-sortant"
                in {e["resource"]["subtype"][0]["code"] for e in get("8" + DUPONT).json()["entry"]}
            )
        )
        assert "Secret" not in mine.text  # no subject, no body
        assert all(any(x.get("name") == DUPONT_A for x in e["entity"]) for e in events)
        other = get("8" + MARTIN)
        assert other.status_code == 403
        assert other.json()["resourceType"] == "OperationOutcome"
