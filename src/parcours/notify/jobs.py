"""The background work of an instance, in one place: notification delivery, the announcement
clock, signed trace checkpoints and the end of closed records' retention. Used by the embedded
worker thread of ``parcours serve`` (``PARCOURS_WORKER=embedded``) and by ``parcours notify work``
alike."""

from __future__ import annotations

import logging

from parcours.audit.models import AuditCheckpoint
from parcours.config import Settings
from parcours.notify.channels import configured_channels
from parcours.notify.worker import BackgroundWorker
from parcours.storage.db import Database

log = logging.getLogger("parcours.notify")

ANNOUNCEMENT_PERIOD_SECONDS = 300.0
RETENTION_PERIOD_SECONDS = 6 * 3600.0


def make_checkpoint(
    db: Database, settings: Settings, grace_seconds: int = 60
) -> AuditCheckpoint | None:
    from parcours.audit.service import CHECKPOINT_KEY_FILE, checkpoint
    from parcours.auth import keys

    key = keys.load_or_create(settings.keys_dir, CHECKPOINT_KEY_FILE)
    return checkpoint(db, key.private_key, key.kid, grace_seconds=grace_seconds)


def announcements(db: Database) -> object:
    from parcours.dossier import announcements as clock

    report = clock.run(db)
    if report.reminders or report.made_visible:
        log.info(
            "announcement clock: %d reminders, %d documents made visible",
            report.reminders,
            report.made_visible,
        )
    return report


def retention(db: Database, settings: Settings) -> object:
    from parcours.dossier import retention as purge
    from parcours.dossier.store import open_store

    store = open_store(settings)
    report = purge.run(db, store)
    swept = purge.sweep_orphan_blobs(db, store)
    if swept:
        log.info("retention: %d orphan blobs removed", swept)
    if report.records:
        log.info(
            "retention: %d records purged (%d documents, %d traces made tombstones)",
            report.records,
            report.documents,
            report.tombstones,
        )
    return report


def background_worker(db: Database, settings: Settings, interval: float = 2.0) -> BackgroundWorker:
    return BackgroundWorker(
        db,
        configured_channels(settings),
        interval=interval,
        jobs=[
            (ANNOUNCEMENT_PERIOD_SECONDS, lambda: announcements(db)),
            (settings.audit_checkpoint_minutes * 60.0, lambda: make_checkpoint(db, settings)),
            (RETENTION_PERIOD_SECONDS, lambda: retention(db, settings)),
        ],
        lease_seconds=settings.notify_lease_seconds,
        max_attempts=settings.notify_max_attempts,
    )
