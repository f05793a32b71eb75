"""The announcement clock (R1111-53; dmp-access.md R22/R23 and §3.2): a document published
INVISIBLE_PATIENT stays hidden from the holder, a content-free reminder goes out once from day
14, and at one month the document becomes visible and the holder is told."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.dossier import announcements
from parcours.dossier.models import Document
from parcours.notify.models import Notification
from parcours.storage.models import utcnow
from tests.dossier.conftest import Dmp
from tests.dossier.test_search import A07, V3

HIDDEN = [(V3, "N"), (A07, "INVISIBLE_PATIENT")]


def _queued(dmp: Dmp, event: str) -> list[Notification]:
    with dmp.db.session() as session:
        return list(
            session.execute(select(Notification).where(Notification.event == event)).scalars()
        )


def test_reminder_at_day_14_once_then_visible_at_one_month(dmp: Dmp) -> None:
    doc = dmp.publish_one(data=b"Resultat a annoncer", security=HIDDEN)
    visible = dmp.publish_one(data=b"Deja visible")
    path = f"/fhir/DocumentReference/{doc}"
    assert dmp.call("GET", path, "patient").status_code == 403
    now = utcnow()

    assert announcements.run(dmp.db, now + timedelta(days=13)).reminders == 0
    assert _queued(dmp, "announce-reminder") == []

    day15 = announcements.run(dmp.db, now + timedelta(days=15))
    assert (day15.reminders, day15.made_visible) == (1, 0)
    (reminder,) = _queued(dmp, "announce-reminder")
    assert reminder.recipient_kind == "holder" and reminder.payload.get("document") is None
    assert announcements.run(dmp.db, now + timedelta(days=20)).reminders == 0  # once only
    assert dmp.call("GET", path, "patient").status_code == 403  # a reminder shows nothing

    month = announcements.run(dmp.db, now + timedelta(days=32))
    assert (month.reminders, month.made_visible) == (0, 1)
    assert len(_queued(dmp, "document-available")) == 1
    assert dmp.call("GET", path, "patient").status_code == 200
    assert announcements.run(dmp.db, now + timedelta(days=40)).made_visible == 0

    with dmp.db.session() as session:
        stamped = session.get(Document, doc)
        untouched = session.get(Document, visible)
        assert stamped is not None and stamped.announced_at is not None
        assert untouched is not None and untouched.announced_at is None
        traces = session.execute(
            select(AuditEvent.action, AuditEvent.rule, AuditEvent.resource_id).where(
                AuditEvent.actor_kind == "system"
            )
        ).all()
    assert sorted(traces) == [("announce-reminder", "R23", doc), ("document-available", "R22", doc)]
    assert verify(dmp.db).ok


def test_an_announced_document_needs_no_reminder(dmp: Dmp) -> None:
    doc = dmp.publish_one(data=b"Annonce faite", security=HIDDEN)
    patch = [
        {
            "op": "replace",
            "path": "/securityLabel",
            "value": [{"coding": [{"system": V3, "code": "N"}]}],
        }
    ]
    response = dmp.call(
        "PATCH",
        f"/fhir/DocumentReference/{doc}",
        headers={"Content-Type": "application/json-patch+json"},
        json=patch,
    )
    assert response.status_code == 200, response.text
    report = announcements.run(dmp.db, utcnow() + timedelta(days=15))
    assert (report.reminders, report.made_visible) == (0, 0)
