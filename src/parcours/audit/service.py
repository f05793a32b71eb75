"""Writing and verifying the hash chain.

Each record's hash covers its fields and the previous record's hash, so deleting, editing or
reordering a row breaks every later link and ``parcours audit verify`` finds the first bad one.
Appends are serialised (a process lock, plus a transaction-scoped advisory lock on PostgreSQL)
because two concurrent writers reading the same predecessor would fork the chain.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from parcours.audit.models import AuditEvent
from parcours.storage.db import Database
from parcours.storage.models import utcnow

GENESIS = "0" * 64
_ADVISORY_KEY = 0x70617263  # "parc"
_lock = threading.Lock()


@dataclass(frozen=True)
class AuditEntry:
    request_id: str
    actor_kind: str
    actor_id: str | None
    actor_structure: str | None
    access_mode: str
    action: str
    resource_type: str | None
    resource_id: str | None
    query: str | None
    outcome: int
    client_ip: str | None
    patient_id: str | None = None
    rule: str | None = None
    justification: str | None = None
    call_id: str | None = None
    on_behalf_of: str | None = None
    policy_version: str | None = None


# Fields added after the chain started: left out of the digest when empty, so that records
# written before they existed still verify.
_OPTIONAL = frozenset(
    {"patient_id", "rule", "justification", "call_id", "on_behalf_of", "policy_version"}
)


def _digest(prev_hash: str, recorded_at: datetime, entry: dict[str, object]) -> str:
    fields = {k: v for k, v in entry.items() if not (k in _OPTIONAL and v is None)}
    body = orjson.dumps(
        {**fields, "recorded_at": recorded_at.isoformat(timespec="microseconds")},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + b"|" + body).hexdigest()


def append(session: Session, entry: AuditEntry) -> AuditEvent:
    """Append one record inside the caller's transaction (so it commits with the action)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
    last = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar_one_or_none()
    prev_hash = last or GENESIS
    recorded_at = utcnow()
    fields = asdict(entry)
    event = AuditEvent(
        recorded_at=recorded_at,
        prev_hash=prev_hash,
        hash=_digest(prev_hash, recorded_at, fields),
        **fields,
    )
    session.add(event)
    session.flush()
    return event


def record(db: Database, entry: AuditEntry, notifications: Sequence[Any] = ()) -> None:
    """Append in a transaction of its own (reads, whose action writes nothing else), with the
    notifications the decision obliged: both commit, or neither (outbox, R45)."""
    with _lock, db.session() as session:
        event = append(session, entry)
        if notifications:
            from parcours.notify import outbox

            outbox.write(session, list(notifications), entry.request_id, event.recorded_at)


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_bad_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def _events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last_seq = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.seq > last_seq)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last_seq = rows[-1].seq


def verify(db: Database) -> ChainReport:
    prev = GENESIS
    checked = 0
    with db.session() as session:
        for event in _events(session):
            fields = {name: getattr(event, name) for name in AuditEntry.__dataclass_fields__}
            if event.prev_hash != prev:
                return ChainReport(checked, event.seq, "maillon précédent ne correspond pas")
            if _digest(prev, event.recorded_at, fields) != event.hash:
                return ChainReport(checked, event.seq, "contenu modifié (empreinte invalide)")
            prev = event.hash
            checked += 1
    return ChainReport(checked, None, None)
