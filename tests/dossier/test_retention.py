"""The end of a closed record's retention (R1111-40: ten years; reference R44 "traces kept
with it, purged with it"): everything of the record goes, its traces become tombstones that
keep the chains and the signed checkpoints verifiable, and erasing a live record's trace is
still reported."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from parcours.audit.models import AuditEvent
from parcours.audit.service import CHECKPOINT_KEY_FILE, checkpoint, verify
from parcours.auth import keys
from parcours.dossier import retention
from parcours.dossier.models import Document, Patient, Record
from parcours.dossier.samples import OTHER_INS
from parcours.storage.models import utcnow
from tests.dossier.conftest import Dmp, open_record


def _close(dmp: Dmp) -> None:
    response = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$close-dmp",
        "patient",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "reason", "valueString": "je ferme mon DMP"}],
        },
    )
    assert response.status_code == 200, response.text


def _count(dmp: Dmp, model: type, **where: object) -> int:
    with dmp.db.session() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.execute(query).scalar_one()


def test_an_expired_record_is_deleted_and_its_traces_become_tombstones(dmp: Dmp) -> None:
    key = keys.load_or_create(dmp.settings.keys_dir, CHECKPOINT_KEY_FILE)
    doc = dmp.publish_one()
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc}", "dupont").status_code == 200
    other = open_record(dmp, OTHER_INS)  # another record, untouched by the purge
    _close(dmp)
    with dmp.db.session() as session:
        record = session.get(Record, dmp.patient_id)
        assert record is not None and record.retention_until is not None
        end = record.retention_until
        blob_key = session.get(Document, doc).blob_key  # type: ignore[union-attr]
    traces = _count(dmp, AuditEvent, chain=dmp.patient_id)
    assert traces >= 4
    checkpoint(dmp.db, key.private_key, key.kid, grace_seconds=0)

    assert retention.run(dmp.db, dmp.store, end).records == 0  # not yet: last day included
    report = retention.run(dmp.db, dmp.store, end + timedelta(days=1))
    assert (report.records, report.documents, report.blobs) == (1, 1, 1)
    assert report.tombstones == traces and report.errors == []

    assert _count(dmp, Patient, id=dmp.patient_id) == 0
    assert _count(dmp, Document, patient_id=dmp.patient_id) == 0
    assert blob_key not in set(dmp.store.blobs.keys())
    assert _count(dmp, Patient, id=other) == 1
    with dmp.db.session() as session:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.chain == dmp.patient_id))
            .scalars()
            .all()
        )
        purge = session.execute(select(AuditEvent).where(AuditEvent.action == "purge")).scalar_one()
    assert len(rows) == traces  # same places in the chain
    assert all(r.purged_at is not None and r.actor_id is None and r.client_ip is None for r in rows)
    assert purge.resource_id == dmp.patient_id and purge.chain == "-"
    report_after = verify(dmp.db, key.private_key.public_key())
    assert report_after.ok, report_after.reason
    # Nothing is left to read, for anyone.
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc}", "dupont").status_code == 404
    assert retention.run(dmp.db, dmp.store, end + timedelta(days=2)).records == 0


def test_erasing_a_live_records_trace_is_reported(dmp: Dmp) -> None:
    dmp.publish_one()
    with dmp.db.session() as session:
        victim = session.execute(
            select(AuditEvent.seq).where(AuditEvent.chain == dmp.patient_id).limit(1)
        ).scalar_one()
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.seq == victim)
            .values(purged_at=utcnow(), actor_id=None)
        )
    report = verify(dmp.db)
    assert not report.ok and report.first_bad_seq == victim
    assert "hors d'une purge" in (report.reason or "")


def test_an_open_record_is_never_purged(dmp: Dmp) -> None:
    dmp.publish_one()
    report = retention.run(dmp.db, dmp.store, utcnow().date() + timedelta(days=365 * 30))
    assert report.records == 0 and _count(dmp, Patient, id=dmp.patient_id) == 1


def test_the_sweep_removes_only_old_orphan_bytes(dmp: Dmp) -> None:
    import os
    import time

    doc = dmp.publish_one()
    with dmp.db.session() as session:
        kept = session.get(Document, doc).blob_key  # type: ignore[union-attr]
    dmp.store.blobs.put("or/phelin-ancien", b"\x00chiffre")
    dmp.store.blobs.put("or/phelin-recent", b"\x00chiffre")
    an_hour_ago = time.time() - 7200
    root = dmp.store.blobs.root  # type: ignore[attr-defined]
    for key in (kept, "or/phelin-ancien"):
        os.utime(root / key, (an_hour_ago, an_hour_ago))
    assert retention.sweep_orphan_blobs(dmp.db, dmp.store) == 1
    left = set(dmp.store.blobs.keys())
    assert kept in left and "or/phelin-recent" in left and "or/phelin-ancien" not in left
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc}", "dupont").status_code == 200
