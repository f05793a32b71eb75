"""The notification worker against a real SMTP server (STARTTLS) and the portal inbox:
delivered once per channel, traced, retried with backoff, abandoned after the last attempt,
and readable as FHIR ``Communication`` by its recipient only (issue #5 §5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.notify.channels import InboxChannel, configured_channels
from parcours.notify.models import Delivery, InboxMessage, Notification
from parcours.notify.worker import run_once
from parcours.storage.models import utcnow
from tests.dossier.conftest import Dmp, _token
from tests.notify.conftest import SmtpServer
from tests.scenario import DUPONT

STRANGER = "810000008887"
PATIENT_MAIL = "anne.lefevre@example.org"
DUPONT_MSS = "elise.dupont@ch-rennes.mssante.fr"  # first PER mailbox of Dr Dupont


def _set_contact(dmp: Dmp, email: str) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": "set-contact"},
            {"name": "email", "valueString": email},
        ],
    }
    response = dmp.call("POST", f"/fhir/Patient/{dmp.patient_id}/$dmp-droits", "patient", json=body)
    assert response.status_code == 200, response.text


def _break_the_glass(dmp: Dmp, doc: str) -> None:
    dmp.tokens["urgentiste"] = _token(
        dmp.settings,
        STRANGER,
        {"actor": "professional", "idnat_ps": STRANGER, "profession": "10", "name": "Dr Urgent"},
    )
    response = dmp.call(
        "GET",
        f"/fhir/DocumentReference/{doc}",
        "urgentiste",
        headers={"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "Coma, SMUR"},
    )
    assert response.status_code == 200, response.text


def _channels(dmp: Dmp, smtp: SmtpServer) -> list:
    settings = replace(dmp.settings, smtp_url=smtp.url, smtp_ca_file=str(smtp.ca_file))
    channels = configured_channels(settings)
    assert [c.name for c in channels] == ["inbox", "email"]
    return channels


def _inbox(dmp: Dmp, who: str) -> list[dict]:
    response = dmp.call("GET", "/fhir/Communication", who)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def test_bris_de_glace_reaches_patient_and_mt_by_inbox_and_mail(
    dmp: Dmp, smtp_server: SmtpServer
) -> None:
    _set_contact(dmp, PATIENT_MAIL)
    doc = dmp.publish_one()
    _break_the_glass(dmp, doc)
    with dmp.db.session() as session:
        queued = session.execute(select(func.count()).select_from(Notification)).scalar_one()
    report = run_once(dmp.db, _channels(dmp, smtp_server))
    assert report.delivered == queued and report.failed == 0 and report.errors == []

    # The patient's portal inbox and his mailbox both say it, without medical content.
    alerts = [
        m
        for m in _inbox(dmp, "patient")
        if m["category"][0]["coding"][0]["code"] == "bris-de-glace"
    ]
    assert len(alerts) == 1
    assert "Dr Urgent" in alerts[0]["payload"][0]["contentString"]
    assert alerts[0]["subject"] == {"reference": f"Patient/{dmp.patient_id}"}
    mails = {(tuple(rcpt), m["Subject"]): m for rcpt, m in smtp_server.sink.messages}
    to_patient = mails[((PATIENT_MAIL,), "Accès en urgence (bris de glace) au DMP")]
    to_mt = mails[((DUPONT_MSS,), "Accès en urgence (bris de glace) au DMP")]
    assert "Coma" not in to_patient.get_content() and "Compte rendu" not in to_patient.get_content()
    assert to_mt["Auto-Submitted"] == "auto-generated"
    assert all(smtp_server.sink.tls_seen)  # every message went over STARTTLS
    # The médecin traitant sees it in his own inbox, not the patient's other messages.
    mt_events = {m["category"][0]["coding"][0]["code"] for m in _inbox(dmp, "dupont")}
    assert "bris-de-glace" in mt_events and "record-created" not in mt_events

    # Each delivery is traced against the record, the chain still verifies.
    with dmp.db.session() as session:
        notified = (
            session.execute(
                select(AuditEvent).where(AuditEvent.action == "notify", AuditEvent.outcome == 200)
            )
            .scalars()
            .all()
        )
        deliveries = session.execute(select(func.count()).select_from(Delivery)).scalar_one()
    assert len(notified) == deliveries
    assert {e.patient_id for e in notified} == {dmp.patient_id}
    assert verify(dmp.db).ok

    # A second pass has nothing left to do: nothing is sent twice.
    sent = len(smtp_server.sink.messages)
    assert run_once(dmp.db, _channels(dmp, smtp_server)).claimed == 0
    assert len(smtp_server.sink.messages) == sent


def test_smtp_failure_is_retried_with_backoff_then_abandoned(
    dmp: Dmp, smtp_server: SmtpServer
) -> None:
    _set_contact(dmp, PATIENT_MAIL)
    smtp_server.sink.refuse = True
    channels = _channels(dmp, smtp_server)
    with dmp.db.session() as session:
        ids = set(session.execute(select(Notification.id)).scalars())
    now = utcnow()
    first = run_once(dmp.db, channels, max_attempts=2, clock=lambda: now)
    assert first.retried == len(ids) and first.delivered == 0 and first.failed == 0
    with dmp.db.session() as session:
        rows = session.execute(select(Notification)).scalars().all()
        assert {n.status for n in rows} == {"pending"}
        assert {n.attempts for n in rows} == {1}
        assert {n.next_attempt_at for n in rows} == {now + timedelta(seconds=30)}
        assert all("SMTP" in (n.last_error or "") for n in rows)
        # The inbox channel succeeded: it is marked, and will not be written again.
        inbox = session.execute(select(func.count()).select_from(InboxMessage)).scalar_one()
        failures = session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "notify", AuditEvent.outcome == 502)
        ).scalar_one()
    assert inbox == len(ids) and failures == len(ids)

    # Not due yet: nothing claimed. Due, still refused: second and last attempt → failed.
    assert run_once(dmp.db, channels, max_attempts=2, clock=lambda: now).claimed == 0
    later = now + timedelta(seconds=31)
    second = run_once(dmp.db, channels, max_attempts=2, clock=lambda: later)
    assert second.failed == len(ids)
    with dmp.db.session() as session:
        assert {n.status for n in session.execute(select(Notification)).scalars()} == {"failed"}
        assert session.execute(select(func.count()).select_from(InboxMessage)).scalar_one() == inbox
    assert smtp_server.sink.messages == []


def test_unreachable_smtp_server_is_a_retry_not_a_crash(dmp: Dmp) -> None:
    settings = replace(dmp.settings, smtp_url="smtp://127.0.0.1:9")  # nothing listens
    dead = configured_channels(settings)[1]
    _set_contact(dmp, PATIENT_MAIL)
    report = run_once(dmp.db, [InboxChannel(), dead])
    assert report.retried >= 1 and report.delivered == 0
    assert any("SMTP 127.0.0.1:9" in e for e in report.errors)


def test_inbox_belongs_to_its_recipient(dmp: Dmp) -> None:
    run_once(dmp.db, [InboxChannel()])
    mine = _inbox(dmp, "patient")
    assert mine and all(m["recipient"][0]["identifier"]["value"] != "8" + DUPONT for m in mine)
    dupont = _inbox(dmp, "dupont")
    assert dupont and {m["id"] for m in dupont}.isdisjoint({m["id"] for m in mine})
    # Another user's message by id: 404, as if it did not exist.
    foreign = dmp.call("GET", f"/fhir/Communication/{mine[0]['id']}", "dupont")
    assert foreign.status_code == 404
    own = dmp.call("GET", f"/fhir/Communication/{mine[0]['id']}", "patient")
    assert own.status_code == 200 and own.json()["id"] == mine[0]["id"]
    bad = dmp.call("GET", "/fhir/Communication?recipient=8" + DUPONT, "patient")
    assert bad.status_code == 400 and "recipient" in bad.text
    assert dmp.client.get("/fhir/Communication").status_code == 401


def test_contact_address_is_validated(dmp: Dmp) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": "set-contact"},
            {"name": "email", "valueString": "pas une adresse"},
        ],
    }
    response = dmp.call("POST", f"/fhir/Patient/{dmp.patient_id}/$dmp-droits", "patient", json=body)
    assert response.status_code == 400 and "Adresse électronique invalide" in response.text
    # Only the holder sets it: his médecin traitant cannot.
    body["parameter"][1]["valueString"] = "autre@example.org"
    refused = dmp.call("POST", f"/fhir/Patient/{dmp.patient_id}/$dmp-droits", "dupont", json=body)
    assert refused.status_code == 403
