"""Writing and verifying the trace log: one hash chain per DMP, signed checkpoints over all.

Each row's hash covers its fields and the previous row *of the same record*, so editing,
deleting or reordering a row breaks its chain and ``parcours audit verify`` names the first bad
one (reference dmp-access.md §3.1: "hash-chained per record"). One chain per record lets the
writers of different records proceed in parallel: only writers of the same record queue on a
transaction-scoped advisory lock (PostgreSQL), and a unique (chain, prev_hash) constraint makes
a fork impossible even if that lock were bypassed.

A chain alone cannot reveal that its last rows were deleted. Periodic checkpoints fold every
row's hash in sequence order into one accumulator and sign it with a key kept outside the
database, so a deletion before the last checkpoint, or a rewrite of the whole log, is caught.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parcours.audit.models import AuditCheckpoint, AuditEvent
from parcours.storage.db import Database
from parcours.storage.models import utcnow

GENESIS = "0" * 64
NO_RECORD = "-"  # the chain of accesses that concern no DMP (directory reads…)
# The checkpoint signing key, in the instance's key directory: keep it off the database host.
CHECKPOINT_KEY_FILE = "audit-checkpoint-es256.pem"
PURGE_ACTION = "purge"  # a record's end of retention, traced in the NO_RECORD chain
# What a tombstone forgets: who, from where, with which words. What it keeps (kind, mode,
# action, outcome, rule, time) carries no identity and still tells the chain's story.
TOMBSTONE_FIELDS = (
    "actor_id",
    "actor_structure",
    "resource_id",
    "query",
    "client_ip",
    "justification",
    "call_id",
    "on_behalf_of",
    "mailbox",
)
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
    # The MSSanté mailbox a message event concerns (its owner reads these traces).
    mailbox: str | None = None


def system_entry(
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    patient_id: str | None,
    *,
    outcome: int = 200,
    query: str | None = None,
    rule: str | None = None,
    justification: str | None = None,
    policy_version: str | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """The trace of something the instance did by itself (a delivery, the announcement clock,
    a purge): no person, no address, no access mode but the normal one."""
    return AuditEntry(
        request_id=request_id or uuid.uuid4().hex,
        actor_kind="system",
        actor_id=actor,
        actor_structure=None,
        access_mode="normal",
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        query=query,
        outcome=outcome,
        client_ip=None,
        patient_id=patient_id,
        rule=rule,
        justification=justification,
        policy_version=policy_version,
    )


# Fields added after the chain started: left out of the digest when empty, so that records
# written before they existed still verify.
_OPTIONAL = frozenset(
    {
        "patient_id",
        "rule",
        "justification",
        "call_id",
        "on_behalf_of",
        "policy_version",
        "mailbox",
    }
)


def _digest(
    prev_hash: str, recorded_at: datetime, entry: dict[str, object], chain: str | None = None
) -> str:
    fields = {k: v for k, v in entry.items() if not (k in _OPTIONAL and v is None)}
    if chain is not None:  # rows of the original single chain predate the column
        fields["chain"] = chain
    body = orjson.dumps(
        {**fields, "recorded_at": recorded_at.isoformat(timespec="microseconds")},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + b"|" + body).hexdigest()


def chain_of(entry: AuditEntry) -> str:
    """A DMP record's accesses chain together, and so do a mailbox's message events: writers
    of different records or mailboxes never wait for each other."""
    if entry.patient_id:
        return entry.patient_id
    if entry.mailbox:
        return "mss:" + hashlib.sha256(entry.mailbox.encode()).hexdigest()[:40]
    return NO_RECORD


def _chain_lock_key(chain: str) -> int:
    return int.from_bytes(hashlib.sha256(chain.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Appended:
    recorded_at: datetime
    hash: str


_FIELDS = tuple(AuditEntry.__dataclass_fields__)
_COLUMNS = ("recorded_at", "chain", "prev_hash", "hash", *_FIELDS)
_SQL: dict[str, tuple[str, str]] = {}


def _statements(dialect: str) -> tuple[str, str]:
    """The two statements of an append, in the driver's own parameter style.

    Every traced request pays for them, so they bypass the ORM's unit of work (which cost four
    times the SQL itself on SQLite, bench/dossier.py step 5)."""
    if dialect not in _SQL:
        mark = "?" if dialect == "sqlite" else "%s"
        last = f"SELECT hash FROM audit_event WHERE chain = {mark} ORDER BY seq DESC LIMIT 1"
        insert = (
            f"INSERT INTO audit_event ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})"
        )
        _SQL[dialect] = (last, insert)
    return _SQL[dialect]


def append(session: Session, entry: AuditEntry) -> Appended:
    """Append one record to its record's chain inside the caller's transaction (so it commits
    with the action). Only writers of the *same* record wait for each other."""
    return _append(session.connection(), entry)


def _append(connection: Connection, entry: AuditEntry, known_head: str | None = None) -> Appended:
    """With ``known_head`` (the chain's last hash as this process last wrote it) neither the
    lock nor the read is taken: if another writer moved the chain meanwhile, the unique
    (chain, prev_hash) constraint refuses the row and the caller retries from the database."""
    chain = chain_of(entry)
    dialect = connection.dialect.name
    last_sql, insert_sql = _statements(dialect)
    if known_head is None:
        if dialect == "postgresql":
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(%s)", (_chain_lock_key(chain),)
            )
        known_head = connection.exec_driver_sql(last_sql, (chain,)).scalar()
    prev_hash = known_head or GENESIS
    recorded_at = utcnow()
    fields = {name: getattr(entry, name) for name in _FIELDS}
    digest = _digest(prev_hash, recorded_at, fields, chain)
    stamp: object = recorded_at
    if dialect == "sqlite":  # the storage format of SQLAlchemy's DateTime on SQLite (UTC)
        stamp = recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    connection.exec_driver_sql(
        insert_sql, (stamp, chain, prev_hash, digest, *(fields[name] for name in _FIELDS))
    )
    return Appended(recorded_at, digest)


def record(db: Database, entry: AuditEntry, notifications: Sequence[Any] = ()) -> None:
    """Append in a transaction of its own (reads, whose action writes nothing else), with the
    notifications the decision obliged: both commit, or neither (outbox, R45)."""
    # SQLite has one writer at a time anyway: queue in-process rather than on its busy timeout.
    guard = _lock if db.dialect == "sqlite" else contextlib.nullcontext()
    if not notifications:  # the common case: a bare connection, no ORM session
        with guard:
            _record_optimistic(db, entry)
        return
    with guard:
        from parcours.notify import outbox

        with db.session() as session:
            event = append(session, entry)
            outbox.write(session, list(notifications), entry.request_id, event.recorded_at)


# Per Database object (not per URL: a database recreated at the same URL must not inherit the
# heads of the old one, which no row of the new one would contradict): chain -> last hash this
# process wrote.
_heads: weakref.WeakKeyDictionary[Database, dict[str, str]] = weakref.WeakKeyDictionary()
_heads_lock = threading.Lock()
_OPTIMISTIC_ATTEMPTS = 5


def _record_optimistic(db: Database, entry: AuditEntry) -> None:
    """A trace is one INSERT and a COMMIT when this process wrote the chain's last row (the
    usual case: a record is mostly read through one instance); on PostgreSQL two round trips
    fewer than lock-then-read, on SQLite one (0.09 ms of a 0.35 ms append, bench step 5). A
    stale head is refused by the (chain, prev_hash) constraint and the next attempt reads the
    head under the chain's lock."""
    key = chain_of(entry)
    with _heads_lock:
        heads = _heads.setdefault(db, {})
    for attempt in range(_OPTIMISTIC_ATTEMPTS):
        with _heads_lock:
            head = heads.get(key) if attempt == 0 else None
        try:
            with db.engine.begin() as connection:
                appended = _append(connection, entry, known_head=head)
        except IntegrityError:
            with _heads_lock:
                heads.pop(key, None)
            # Another writer moved the chain between our read of its head and our insert: an
            # optimistic writer (which takes no lock), or on SQLite one appending inside a
            # longer transaction (the mail relay settling a round), since SQLite reads the head
            # before taking its write lock. Read the head again, a bounded number of times.
            if attempt == _OPTIMISTIC_ATTEMPTS - 1:
                raise
            continue
        with _heads_lock:
            heads[key] = appended.hash
        return


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_bad_seq: int | None
    reason: str | None
    chains: int = 0
    checkpoints: int = 0
    unsigned: bool = False  # checkpoints present but no key given to check their signatures

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


def fold(accumulator: str, row_hash: str) -> str:
    """The checkpoint accumulator: every row's hash, in sequence order, over all chains."""
    return hashlib.sha256(f"{accumulator}|{row_hash}".encode()).hexdigest()


def _statement(cp: AuditCheckpoint) -> bytes:
    return orjson.dumps(
        {
            "upto_seq": cp.upto_seq,
            "count": cp.count,
            "accumulator": cp.accumulator,
            "prev_checkpoint": cp.prev_checkpoint,
            "created_at": cp.created_at.isoformat(timespec="microseconds"),
        },
        option=orjson.OPT_SORT_KEYS,
    )


def checkpoint_digest(cp: AuditCheckpoint) -> str:
    return hashlib.sha256(_statement(cp)).hexdigest()


def _signature_ok(cp: AuditCheckpoint, key: ec.EllipticCurvePublicKey) -> bool:
    try:
        key.verify(base64.b64decode(cp.signature), _statement(cp), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(db: Database, key: ec.EllipticCurvePublicKey | None = None) -> ChainReport:
    """Walk every chain in one pass (sequence order, the last hash of each chain in memory) and
    check each signed checkpoint against the accumulator of the rows it covers.

    A modified row breaks its own digest; a deleted or reordered row breaks the next link of
    its chain; deleted rows at the end of a chain, which no later link reveals, change the
    accumulator of every checkpoint taken after them.
    """
    heads: dict[str | None, str] = {}
    checked = 0
    accumulator = GENESIS
    with db.session() as session:
        # Chains whose record reached the end of its retention: their rows are tombstones
        # (identifying fields erased, hash and link kept). Which chains those are is read from
        # the purge traces themselves, which are chained and checked like any other row, so
        # erasing a row of a live record is reported, not excused.
        purged = set(
            session.execute(
                select(AuditEvent.resource_id).where(
                    AuditEvent.action == PURGE_ACTION, AuditEvent.chain == NO_RECORD
                )
            ).scalars()
        )
        checkpoints = list(
            session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars()
        )
        pending = iter(checkpoints)
        cp = next(pending, None)
        prev_cp = GENESIS

        def settle(cp: AuditCheckpoint) -> str | None:
            if cp.prev_checkpoint != prev_cp:
                return f"point de contrôle n° {cp.id} : chaînage des points de contrôle rompu"
            if key is not None and not _signature_ok(cp, key):
                return f"point de contrôle n° {cp.id} : signature invalide"
            if cp.count != checked or cp.accumulator != accumulator:
                return (
                    f"point de contrôle n° {cp.id} : traces supprimées ou ajoutées "
                    f"jusqu'à la n° {cp.upto_seq}"
                )
            return None

        for event in _events(session):
            while cp is not None and event.seq > cp.upto_seq:
                problem = settle(cp)
                if problem:
                    return ChainReport(checked, cp.upto_seq, problem, len(heads), cp.id - 1)
                prev_cp = checkpoint_digest(cp)
                cp = next(pending, None)
            fields = {name: getattr(event, name) for name in AuditEntry.__dataclass_fields__}
            prev = heads.get(event.chain, GENESIS)
            if event.prev_hash != prev:
                return ChainReport(
                    checked, event.seq, "maillon précédent ne correspond pas", len(heads)
                )
            if event.purged_at is not None:
                if event.chain not in purged:
                    return ChainReport(
                        checked, event.seq, "trace effacée hors d'une purge de DMP", len(heads)
                    )
            elif _digest(prev, event.recorded_at, fields, event.chain) != event.hash:
                return ChainReport(
                    checked, event.seq, "contenu modifié (empreinte invalide)", len(heads)
                )
            heads[event.chain] = event.hash
            accumulator = fold(accumulator, event.hash)
            checked += 1
        while cp is not None:
            problem = settle(cp)
            if problem:
                return ChainReport(checked, cp.upto_seq, problem, len(heads), cp.id - 1)
            prev_cp = checkpoint_digest(cp)
            cp = next(pending, None)
    return ChainReport(
        checked,
        None,
        None,
        chains=len(heads),
        checkpoints=len(checkpoints),
        unsigned=bool(checkpoints) and key is None,
    )


def checkpoint(
    db: Database, signing_key: ec.EllipticCurvePrivateKey, key_id: str, *, grace_seconds: int = 60
) -> AuditCheckpoint | None:
    """Sign the state of the log up to the last row older than ``grace_seconds``.

    The grace leaves out rows whose transaction may still be open (on PostgreSQL a sequence
    number is taken before commit): a checkpoint must never cover a row that appears later.
    Returns None when nothing new is old enough to be covered.
    """
    with db.session() as session:
        last = session.execute(
            select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
        ).scalar_one_or_none()
        start_seq = last.upto_seq if last else 0
        accumulator = last.accumulator if last else GENESIS
        count = last.count if last else 0
        horizon = utcnow() - timedelta(seconds=grace_seconds)
        upto = start_seq
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq > start_seq, AuditEvent.recorded_at <= horizon)
            .order_by(AuditEvent.seq)
        )
        for seq, row_hash in rows:
            accumulator = fold(accumulator, row_hash)
            count += 1
            upto = seq
        if upto == start_seq:
            return None
        cp = AuditCheckpoint(
            created_at=utcnow(),
            upto_seq=upto,
            count=count,
            accumulator=accumulator,
            prev_checkpoint=checkpoint_digest(last) if last else GENESIS,
            key_id=key_id,
            signature="",
        )
        cp.signature = base64.b64encode(
            signing_key.sign(_statement(cp), ec.ECDSA(hashes.SHA256()))
        ).decode()
        session.add(cp)
        session.flush()
        session.expunge(cp)
        return cp
