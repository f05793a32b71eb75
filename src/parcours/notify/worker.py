"""Delivering the outbox: lease, send per channel, mark, trace, retry.

A worker takes a notification by writing a lease on it (``claimed_by``/``claimed_until``) in a
short transaction of its own; a row is taken only when it is pending, due, and free or its lease
has expired. Each channel is then delivered in its own transaction, which also writes the
``notification_delivery`` row and the trace of that delivery, so after a crash the restarted
worker skips every channel already marked and re-sends at most the one in flight. A failure
pushes the next attempt back exponentially; after ``max_attempts`` the row is marked failed and
stays in the table for an operator to see (``parcours notify status``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from parcours.audit.service import append, system_entry
from parcours.notify.channels import Channel, ChannelError
from parcours.notify.models import Delivery, Notification
from parcours.notify.render import render
from parcours.storage.db import Database
from parcours.storage.models import utcnow

log = logging.getLogger("parcours.notify")

BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min… capped at one hour."""
    seconds = BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, BACKOFF_MAX_SECONDS))


@dataclass
class RunReport:
    claimed: int = 0
    delivered: int = 0  # notifications fully delivered in this run
    deliveries: int = 0  # channel deliveries made in this run
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _trace(session: Session, n: Notification, channel: str, outcome: int, reference: str) -> None:
    """Each delivery is itself traced, in the transaction that marks it (issue #5 §5)."""
    append(
        session,
        system_entry(
            "notify-worker",
            "notify",
            "Communication",
            n.id,
            n.patient_id,
            outcome=outcome,
            query=f"channel={channel}&event={n.event}&recipient={n.recipient_kind}",
            justification=reference[:200] if outcome >= 400 else None,
        ),
    )


def claim(db: Database, worker: str, now: datetime, lease: timedelta, limit: int) -> list[str]:
    """Lease up to ``limit`` due notifications to ``worker``; return their ids."""
    with db.session() as session:
        candidates = list(
            session.execute(
                select(Notification.id)
                .where(
                    Notification.status == "pending",
                    Notification.next_attempt_at <= now,
                    or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
                )
                .order_by(Notification.next_attempt_at, Notification.created_at)
                .limit(limit)
            ).scalars()
        )
        taken: list[str] = []
        for nid in candidates:
            # Compare-and-set: of two workers racing on a row, one update matches.
            result = session.execute(
                update(Notification)
                .where(
                    Notification.id == nid,
                    Notification.status == "pending",
                    or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
                )
                .values(claimed_by=worker, claimed_until=now + lease)
            )
            if result.rowcount == 1:
                taken.append(nid)
    return taken


def deliver_one(
    db: Database,
    nid: str,
    worker: str,
    channels: Sequence[Channel],
    *,
    max_attempts: int,
    report: RunReport,
    lease: timedelta = timedelta(seconds=120),
    clock: Callable[[], datetime] = utcnow,
) -> None:
    with db.session() as session:
        n = session.get(Notification, nid)
        if n is None or n.status != "pending" or n.claimed_by != worker:
            return
        n.claimed_until = clock() + lease  # the batch's lease started earlier: renew it
        done = set(
            session.execute(
                select(Delivery.channel).where(Delivery.notification_id == nid)
            ).scalars()
        )
        message = render(n.event, n.recipient_kind, n.payload or {})
        targets = [(ch, ch.address(session, n)) for ch in channels if ch.name not in done]
    errors: list[str] = []
    for channel, address in targets:
        if address is None:
            continue  # this channel cannot reach this recipient: nothing owed
        with db.session() as session:
            n = session.get(Notification, nid)
            assert n is not None
            try:
                reference = channel.send(session, n, message, address)
            except ChannelError as exc:
                session.rollback()
                errors.append(f"{channel.name}: {exc}")
                _trace(session, n, channel.name, 502, str(exc))
                continue
            session.add(
                Delivery(
                    notification_id=nid,
                    channel=channel.name,
                    delivered_at=clock(),
                    reference=reference[:255],
                )
            )
            _trace(session, n, channel.name, 200, reference)
        report.deliveries += 1
    with db.session() as session:
        n = session.get(Notification, nid)
        assert n is not None
        now = clock()
        n.claimed_by, n.claimed_until = None, None
        if errors:
            n.attempts += 1
            n.last_error = "; ".join(errors)[:1000]
            if n.attempts >= max_attempts:
                n.status = "failed"
                report.failed += 1
                log.warning("notification %s abandoned after %d attempts", nid, n.attempts)
            else:
                n.next_attempt_at = now + backoff(n.attempts)
                report.retried += 1
            report.errors.extend(errors)
        else:
            n.status, n.delivered_at = "delivered", now
            report.delivered += 1


def run_once(
    db: Database,
    channels: Sequence[Channel],
    *,
    worker: str | None = None,
    lease_seconds: int = 120,
    max_attempts: int = 8,
    batch: int = 100,
    clock: Callable[[], datetime] = utcnow,
) -> RunReport:
    """Deliver what is due now, batch after batch, until nothing due is left."""
    worker = worker or worker_name()
    report = RunReport()
    while True:
        ids = claim(db, worker, clock(), timedelta(seconds=lease_seconds), batch)
        if not ids:
            return report
        report.claimed += len(ids)
        for nid in ids:
            deliver_one(
                db,
                nid,
                worker,
                channels,
                max_attempts=max_attempts,
                report=report,
                lease=timedelta(seconds=lease_seconds),
                clock=clock,
            )


class BackgroundWorker:
    """The embedded worker: delivers notifications and runs the periodic jobs in a thread."""

    def __init__(
        self,
        db: Database,
        channels: Sequence[Channel],
        *,
        interval: float = 2.0,
        jobs: Sequence[tuple[float, Callable[[], object]]] = (),
        lease_seconds: int = 120,
        max_attempts: int = 8,
    ) -> None:
        self.db = db
        self.channels = channels
        self.interval = interval
        self.jobs = list(jobs)  # (period in seconds, job)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.name = worker_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="parcours-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        next_due = [0.0] * len(self.jobs)
        while not self._stop.is_set():
            for i, (period, job) in enumerate(self.jobs):
                if time.monotonic() >= next_due[i]:
                    next_due[i] = time.monotonic() + period
                    try:
                        job()
                    except Exception:
                        log.exception("periodic job failed")
            try:
                run_once(
                    self.db,
                    self.channels,
                    worker=self.name,
                    lease_seconds=self.lease_seconds,
                    max_attempts=self.max_attempts,
                )
            except Exception:
                log.exception("notification delivery failed")
            self._stop.wait(self.interval)
