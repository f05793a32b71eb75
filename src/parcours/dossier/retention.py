"""The end of a closed record's retention (art. R1111-40 CSP: ten years after closure).

When ``retention_until`` has passed, the record is deleted: its documents (rows, versions,
index tokens and terms, encrypted bytes), submissions, consents, readers, heirs' requests, the
holder's inbox and queued notifications, the record and the patient. Its traces are "kept with
it, purged with it" (reference R44), but a trace log that loses rows can no longer prove
anything: each of the record's trace rows becomes a tombstone instead (identifying fields
erased, place and hash kept), and the purge itself is traced in the chain of accesses to no
record, which is how ``audit verify`` tells a lawful tombstone from an erased live trace.

The database work is one transaction; the blobs are deleted after it commits, so a crash in
between leaves orphan bytes (encrypted, their key gone with the row), never a document without
its bytes; ``sweep_orphan_blobs`` removes those, and those of a publication that failed after
writing its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import delete, select, update

from parcours.audit.models import AuditEvent
from parcours.audit.service import PURGE_ACTION, TOMBSTONE_FIELDS, append, system_entry
from parcours.dossier.models import (
    Consent,
    Document,
    DocumentTerm,
    DocumentToken,
    DocumentVersion,
    HeirRequest,
    Patient,
    Reader,
    Record,
    Submission,
)
from parcours.dossier.store import DocumentStore
from parcours.notify.models import Delivery, InboxMessage, Notification
from parcours.storage.db import Database
from parcours.storage.models import utcnow


@dataclass
class PurgeReport:
    records: int = 0
    documents: int = 0
    blobs: int = 0
    tombstones: int = 0
    errors: list[str] = field(default_factory=list)


def due(db: Database, today: date) -> list[str]:
    with db.session() as session:
        return list(
            session.execute(
                select(Record.patient_id).where(
                    Record.status == "closed", Record.retention_until < today
                )
            ).scalars()
        )


def purge_record(db: Database, patient_id: str, today: date) -> tuple[int, int, list[str]]:
    """Delete one expired record in one transaction; return (documents, tombstones, blob keys)."""
    now = utcnow()
    with db.session() as session:
        record = session.get(Record, patient_id, with_for_update=True)
        if record is None or record.status != "closed" or not record.retention_until:
            return 0, 0, []
        if record.retention_until >= today:
            return 0, 0, []
        documents = session.execute(
            select(Document.id, Document.blob_key).where(Document.patient_id == patient_id)
        ).all()
        ids = [d for d, _ in documents]
        for table in (DocumentToken, DocumentTerm, DocumentVersion):
            session.execute(delete(table).where(table.document_id.in_(ids)))
        session.execute(delete(Document).where(Document.patient_id == patient_id))
        for table in (Submission, Consent, Reader, HeirRequest):
            session.execute(delete(table).where(table.patient_id == patient_id))
        notifications = select(Notification.id).where(Notification.patient_id == patient_id)
        session.execute(delete(Delivery).where(Delivery.notification_id.in_(notifications)))
        session.execute(delete(InboxMessage).where(InboxMessage.patient_id == patient_id))
        session.execute(delete(Notification).where(Notification.patient_id == patient_id))
        session.execute(delete(Record).where(Record.patient_id == patient_id))
        session.execute(delete(Patient).where(Patient.id == patient_id))
        tombstones = session.execute(
            update(AuditEvent)
            .where(AuditEvent.chain == patient_id, AuditEvent.purged_at.is_(None))
            .values(purged_at=now, **dict.fromkeys(TOMBSTONE_FIELDS))
        ).rowcount
        append(
            session,
            system_entry(
                "retention",
                PURGE_ACTION,
                "Patient",
                patient_id,
                None,  # the purge belongs to the chain of no record (NO_RECORD)
                query=f"documents={len(ids)}&traces={tombstones}",
                rule="R38",
            ),
        )
    return len(ids), tombstones, [key for _, key in documents]


def run(db: Database, store: DocumentStore, today: date | None = None) -> PurgeReport:
    today = today or utcnow().date()
    report = PurgeReport()
    for patient_id in due(db, today):
        documents, tombstones, keys = purge_record(db, patient_id, today)
        report.records += 1
        report.documents += documents
        report.tombstones += tombstones
        for key in keys:
            try:
                store.blobs.delete(key)
                report.blobs += 1
            except Exception as exc:  # the sweep will catch it; report, do not stop
                report.errors.append(f"{key}: {type(exc).__name__}")
    return report


ORPHAN_MIN_AGE_SECONDS = 3600.0


def sweep_orphan_blobs(
    db: Database, store: DocumentStore, min_age_seconds: float = ORPHAN_MIN_AGE_SECONDS
) -> int:
    """Delete stored bytes that no document row names. Only bytes older than
    ``min_age_seconds`` are considered: a publication writes its bytes before its row commits,
    and an hour is far beyond any transaction. The candidates are listed *before* the rows are
    read, so a row committed in between protects its blob. Returns how many were removed."""
    candidates = store.blobs.keys_older_than(min_age_seconds)
    removed = 0
    for start in range(0, len(candidates), 500):
        chunk = candidates[start : start + 500]
        with db.session() as session:
            known = set(
                session.execute(
                    select(Document.blob_key).where(Document.blob_key.in_(chunk))
                ).scalars()
            )
        for key in chunk:
            if key not in known:
                store.blobs.delete(key)
                removed += 1
    return removed
