"""One hash chain per DMP and signed checkpoints over the whole log (dmp-access.md §3.1;
issue #5 §4): what a per-record chain alone catches, and what only a checkpoint can."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from parcours.audit.models import AuditCheckpoint, AuditEvent
from parcours.audit.service import (
    CHECKPOINT_KEY_FILE,
    GENESIS,
    NO_RECORD,
    AuditEntry,
    _digest,
    checkpoint,
    record,
    verify,
)
from parcours.auth import keys
from parcours.storage.db import Database
from tests.cli.test_cli import run


def _entry(patient: str | None, outcome: int = 200) -> AuditEntry:
    return AuditEntry(
        request_id=uuid.uuid4().hex,
        actor_kind="professional",
        actor_id="810100000001",
        actor_structure=None,
        access_mode="normal",
        action="read",
        resource_type="DocumentReference",
        resource_id=uuid.uuid4().hex[:12],
        query=None,
        outcome=outcome,
        client_ip="127.0.0.1",
        patient_id=patient,
    )


def _rows(db: Database) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


@pytest.fixture
def key(tmp_path: Path) -> keys.SigningKey:
    return keys.load_or_create(tmp_path / "keys", CHECKPOINT_KEY_FILE)


def test_each_record_has_its_own_chain(db: Database) -> None:
    for patient in ["A", "B", "A", None, "B", "A"]:
        record(db, _entry(patient))
    rows = _rows(db)
    by_chain: dict[str, list[AuditEvent]] = {}
    for row in rows:
        by_chain.setdefault(row.chain or "?", []).append(row)
    assert set(by_chain) == {"A", "B", NO_RECORD}
    for chain in by_chain.values():
        assert chain[0].prev_hash == GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    report = verify(db)
    assert report.ok and report.checked == 6 and report.chains == 3


def test_a_deleted_middle_row_breaks_its_chain(db: Database) -> None:
    for patient in ["A", "B", "A", "A"]:
        record(db, _entry(patient))
    victim = _rows(db)[2]  # A's second row
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == victim.seq))
    report = verify(db)
    assert not report.ok and report.first_bad_seq == _rows(db)[2].seq
    assert "maillon" in (report.reason or "")


def test_moving_a_row_to_another_record_is_seen(db: Database) -> None:
    for patient in ["A", "A", "B"]:
        record(db, _entry(patient))
    second = _rows(db)[1]  # (moving A's first row would collide with B's: same GENESIS link)
    with db.session() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == second.seq).values(chain="B", patient_id="B")
        )
    assert not verify(db).ok


def test_deleting_the_tail_needs_a_checkpoint(db: Database, key: keys.SigningKey) -> None:
    for patient in ["A", "B", "A"]:
        record(db, _entry(patient))
    cp = checkpoint(db, key.private_key, key.kid, grace_seconds=0)
    assert cp is not None and cp.count == 3
    last = _rows(db)[-1]
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == last.seq))
    report = verify(db, key.private_key.public_key())
    assert not report.ok
    assert "supprimées" in (report.reason or "") and report.first_bad_seq == cp.upto_seq


def test_a_rewritten_chain_verifies_link_by_link_but_not_against_the_checkpoint(
    db: Database, key: keys.SigningKey
) -> None:
    """Someone with write access edits a refusal into a success and recomputes every hash of
    the chain after it: the per-chain walk is satisfied, the signed accumulator is not."""
    for outcome in [403, 200, 200]:
        record(db, _entry("A", outcome))
    checkpoint(db, key.private_key, key.kid, grace_seconds=0)
    rows = _rows(db)
    fields = [{name: getattr(r, name) for name in AuditEntry.__dataclass_fields__} for r in rows]
    fields[0]["outcome"] = 200
    prev = GENESIS
    with db.session() as session:
        for row, values in zip(rows, fields, strict=True):
            new_hash = _digest(prev, row.recorded_at, values, row.chain)
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.seq == row.seq)
                .values(outcome=values["outcome"], prev_hash=prev, hash=new_hash)
            )
            prev = new_hash
    report = verify(db, key.private_key.public_key())
    assert not report.ok and "point de contrôle" in (report.reason or "")


def test_a_forged_checkpoint_fails_its_signature(db: Database, key: keys.SigningKey) -> None:
    record(db, _entry("A"))
    checkpoint(db, key.private_key, key.kid, grace_seconds=0)
    record(db, _entry("A"))
    cp2 = checkpoint(db, key.private_key, key.kid, grace_seconds=0)
    assert cp2 is not None and cp2.count == 2
    assert verify(db, key.private_key.public_key()).ok
    with db.session() as session:
        forged = hashlib.sha256(b"forged").hexdigest()
        session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.id == cp2.id).values(accumulator=forged)
        )
    report = verify(db, key.private_key.public_key())
    assert not report.ok and "signature invalide" in (report.reason or "")


def test_checkpoint_leaves_out_rows_younger_than_the_grace(
    db: Database, key: keys.SigningKey
) -> None:
    record(db, _entry("A"))
    assert checkpoint(db, key.private_key, key.kid, grace_seconds=3600) is None
    assert checkpoint(db, key.private_key, key.kid, grace_seconds=0) is not None
    assert checkpoint(db, key.private_key, key.kid, grace_seconds=0) is None  # nothing new


def test_cli_verify_reports_an_altered_row(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARCOURS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARCOURS_DATABASE_URL", db.url)
    for patient in ["A", "B", "A"]:
        record(db, _entry(patient))
    made = run("audit", "checkpoint", "--grace", "0")
    assert made.exit_code == 0 and "3 traces" in made.output
    ok = run("audit", "verify")
    assert ok.exit_code == 0 and "3 traces vérifiées dans 2 chaînes" in ok.output
    assert "1 points de contrôle signés" in ok.output
    target = _rows(db)[1]
    with db.session() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == target.seq).values(outcome=200 + 1)
        )
    broken = run("audit", "verify")
    assert broken.exit_code == 1
    assert f"trace n° {target.seq}" in broken.output and "modifié" in broken.output


def test_a_stale_cached_head_is_refused_by_the_constraint_then_retried(db: Database) -> None:
    """The optimistic append (every bare trace's path) trusts the head this process last wrote; when
    another process moved the chain meanwhile, the (chain, prev_hash) constraint refuses the
    row and the append retries under the lock: no fork, no lost trace."""
    from parcours.audit import service

    service._record_optimistic(db, _entry("A"))  # caches A's head
    first = _rows(db)[0]
    assert service._heads[db]["A"] == first.hash
    with db.engine.begin() as connection:  # "another process" appends to A
        service._append(connection, _entry("A"))
    assert service._heads[db]["A"] == first.hash  # now stale
    service._record_optimistic(db, _entry("A"))  # refused by the constraint, then retried
    rows = [r for r in _rows(db) if r.chain == "A"]
    assert len(rows) == 3
    assert service._heads[db]["A"] == rows[2].hash
    assert [r.prev_hash for r in rows] == [GENESIS, rows[0].hash, rows[1].hash]
    assert verify(db).ok
