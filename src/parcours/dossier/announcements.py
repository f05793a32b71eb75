"""The announcement clock (art. R1111-53 CSP; reference dmp-access.md R22/R23, §3.2).

A document published ``INVISIBLE_PATIENT`` waits for the consultation where it is announced.
From day 14 without announcement the holder receives a content-free "your record was updated,
see your doctor" notice; at one month the document becomes visible by itself and the holder is
told a new document is available. The dates come from ``policy.engine.announcement_due`` (the
same function the decision point uses for R22), so the job and the reads cannot disagree.

Run by the embedded worker (``PARCOURS_WORKER=embedded``) or ``parcours notify work``; safe to
run as often as wanted: the outbox's idempotency key queues each notice once, and a document
that became visible is stamped so it leaves the job's query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from parcours.audit.service import append, system_entry
from parcours.dossier.documents import document_state
from parcours.dossier.models import Document, Patient, Record
from parcours.notify import outbox
from parcours.policy.engine import add_months, announcement_due
from parcours.policy.rules import load_rules
from parcours.storage.db import Database
from parcours.storage.models import utcnow


@dataclass
class AnnouncementReport:
    reminders: int = 0
    made_visible: int = 0


def run(db: Database, now: datetime | None = None) -> AnnouncementReport:
    now = now or utcnow()
    rules = load_rules()
    horizon = now - timedelta(days=rules["announce_notice_days"])
    report = AnnouncementReport()
    with db.session() as session:
        rows = session.execute(
            select(Document.id)
            .where(
                Document.invisible_patient.is_(True),
                Document.announced_at.is_(None),
                Document.deleted_at.is_(None),
                Document.status == "current",
                Document.published_at <= horizon,
            )
            .order_by(Document.published_at)
        ).scalars()
        ids = list(rows)
    for doc_id in ids:
        with db.session() as session:
            doc = session.get(Document, doc_id)
            if doc is None or doc.announced_at is not None:
                continue
            due = announcement_due(document_state(doc), now, rules=rules)
            if due is None:
                continue
            record = session.get(Record, doc.patient_id)
            patient = session.get(Patient, doc.patient_id)
            if record is None or patient is None or record.status != "open":
                continue  # a closed record notifies nobody; its documents wait with it
            event, rule = (
                ("announce-reminder", "R23")
                if due == "reminder"
                else (
                    "document-available",
                    "R22",
                )
            )
            if due == "visible":
                doc.announced_at = add_months(
                    doc.published_at or doc.last_updated, rules["announce_auto_visible_months"]
                )
            request_id = uuid.uuid4().hex
            items = [
                outbox.Pending(
                    key=f"{doc.patient_id}|{event}|{doc.id}|{patient.ins}"[:255],
                    patient_id=doc.patient_id,
                    recipient_kind="holder",
                    recipient_id=patient.ins,
                    event=event,
                    payload={"acteur": None, "mode": "normal", "date": now.isoformat()},
                )
            ]
            added = outbox.write(session, items, request_id, now)
            if not added and due == "reminder":
                continue  # already reminded: nothing to trace either
            append(
                session,
                system_entry(
                    "announcement-clock",
                    event,
                    "DocumentReference",
                    doc.id,
                    doc.patient_id,
                    rule=rule,
                    policy_version=rules.version,
                    request_id=request_id,
                ),
            )
            if due == "reminder":
                report.reminders += 1
            else:
                report.made_visible += 1
    return report
