"""Kill the worker mid-delivery (SIGKILL, inside an SMTP transaction), restart it: every
notification ends delivered, each channel marked once, the inbox written once, and the mail
sent at most once more, the one that was in flight, under the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.notify import outbox
from parcours.notify.models import Delivery, InboxMessage, Notification
from parcours.storage.db import Database
from parcours.storage.models import utcnow
from tests.notify.conftest import SmtpServer
from tests.scenario import DUPONT, load_scenario

COUNT = 10
LEASE = 2


def _queue(db: Database) -> list[str]:
    now = utcnow()
    items = [
        outbox.Pending(
            key=f"crash|bris-de-glace|{i}|8{DUPONT}",
            patient_id=f"patient-{i}",
            recipient_kind="mt",
            recipient_id="8" + DUPONT,
            event="bris-de-glace",
            payload={"acteur": "Dr Urgent", "mode": "bris_de_glace", "date": now.isoformat()},
        )
        for i in range(COUNT)
    ]
    with db.session() as session:
        assert outbox.write(session, items, uuid.uuid4().hex, now) == COUNT
        return list(session.execute(select(Notification.id)).scalars())


def _worker(db: Database, tmp_path: Path, smtp: SmtpServer, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PARCOURS_DATABASE_URL": db.url,
        "PARCOURS_DATA_DIR": str(tmp_path),
        "PARCOURS_SMTP_URL": smtp.url,
        "PARCOURS_SMTP_CA_FILE": str(smtp.ca_file),
        "PARCOURS_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "parcours.cli", "notify", "work", "--lease", str(LEASE), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_worker_restarts_and_delivers_each_notification_once(
    db: Database, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    load_scenario(db, tmp_path)
    ids = _queue(db)
    sink = smtp_server.sink
    sink.delay = 0.4  # each SMTP DATA takes a while: the kill lands inside one

    first = _worker(db, tmp_path, smtp_server, "--interval", "0.2")
    deadline = time.monotonic() + 60
    while len(sink.messages) < 3 and time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(sink.delay + 0.2)  # let the server finish the transaction the worker left
    with db.session() as session:
        delivered = session.execute(
            select(func.count()).select_from(Notification).where(Notification.status == "delivered")
        ).scalar_one()
    assert 0 < delivered < COUNT, "the kill must land mid-run for this test to mean anything"

    time.sleep(LEASE + 0.5)  # the dead worker's lease expires
    second = _worker(db, tmp_path, smtp_server, "--once")
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()

    with db.session() as session:
        statuses = Counter(session.execute(select(Notification.status)).scalars())
        deliveries = Counter(
            channel for (channel,) in session.execute(select(Delivery.channel)).all()
        )
        inbox = Counter(session.execute(select(InboxMessage.notification_id)).scalars())
        traces = Counter(
            (e.resource_id, e.query.split("&")[0])
            for e in session.execute(
                select(AuditEvent).where(AuditEvent.action == "notify", AuditEvent.outcome == 200)
            ).scalars()
        )
    assert statuses == {"delivered": COUNT}
    assert deliveries == {"inbox": COUNT, "email": COUNT}
    assert set(inbox) == set(ids) and set(inbox.values()) == {1}  # inbox: exactly once
    assert len(traces) == 2 * COUNT and set(traces.values()) == {1}
    # SMTP: every notification arrived; at most the one in flight at the kill arrived twice,
    # and then under the same Message-ID, so the receiver can drop the copy.
    received = Counter(sink.ids())
    assert set(received) == {f"<{nid}.email@parcours>" for nid in ids}
    assert sum(received.values()) - COUNT in (0, 1)
    assert verify(db).ok
