"""Turning a decision's notification obligations into outbox rows, in the trace's transaction.

The policy-decision point says *who* must be told *what* (``Notify``); this module resolves the
recipients from the record (the holder's INS, the médecin traitant's IDNPS, the representatives)
and writes one row per recipient with an idempotency key, so the same event never queues twice.
A professional's first consultation is confirmed by inserting the ``dmp_reader`` row in the same
transaction: of two concurrent first reads, only one notifies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parcours.auth.principal import Principal
from parcours.notify.models import Notification
from parcours.policy.engine import Decision
from parcours.policy.facts import DocumentState, RecordState, Request


@dataclass(frozen=True)
class Pending:
    key: str
    patient_id: str
    recipient_kind: str
    recipient_id: str
    event: str
    payload: dict[str, Any] = field(default_factory=dict)
    first_reader: str | None = None  # actor whose first consultation this notifies


def _recipients(kind: str, state: RecordState, request: Request) -> list[str]:
    if kind == "holder":
        return [state.ins] if state.ins else []
    if kind == "representatives":
        return sorted(state.representatives)
    if kind in ("mt", "previous_mt"):
        return [state.mt] if state.mt else []
    if kind == "target":
        return [request.target] if request.target else []
    return []


def pending_for(
    state: RecordState,
    principal: Principal,
    decision: Decision,
    request: Request,
    document: DocumentState | None,
    request_id: str,
) -> list[Pending]:
    items: list[Pending] = []
    day = request.now.date().isoformat()
    for note in decision.notifications:
        if note.event == "first-access":
            occurrence = principal.actor_id  # once per PS per record (§3.2)
        elif note.event in ("bris-de-glace", "centre-15"):
            occurrence = f"{principal.actor_id}|{day}"  # once per emergency session (#16)
        elif document is not None:
            occurrence = f"{document.id}|{request_id}"
        else:
            occurrence = request_id
        payload = {
            "acteur": principal.name or principal.actor_id,
            "acteur_id": principal.actor_id,
            "mode": request.mode,
            "date": request.now.isoformat(),
            "document": document.id if document else None,
        }
        for recipient in _recipients(note.recipient, state, request):
            items.append(
                Pending(
                    key=f"{state.patient_id}|{note.event}|{occurrence}|{recipient}"[:255],
                    patient_id=state.patient_id,
                    recipient_kind=note.recipient,
                    recipient_id=recipient,
                    event=note.event,
                    payload=payload,
                    first_reader=principal.actor_id if note.event == "first-access" else None,
                )
            )
    return items


def write(session: Session, items: list[Pending], request_id: str, now: datetime) -> int:
    """Insert what is not already queued; return how many rows were added."""
    from parcours.dossier.models import Reader

    if not items:
        return 0
    keys = [i.key for i in items]
    existing = set(
        session.execute(
            select(Notification.idempotency_key).where(Notification.idempotency_key.in_(keys))
        ).scalars()
    )
    added = 0
    confirmed: dict[tuple[str, str], bool] = {}
    for item in items:
        if item.key in existing:
            continue
        if item.first_reader is not None:
            pk = (item.patient_id, item.first_reader)
            if pk not in confirmed:
                confirmed[pk] = session.get(Reader, pk) is None
                if confirmed[pk]:
                    session.add(Reader(patient_id=pk[0], actor_id=pk[1], first_at=now))
            if not confirmed[pk]:
                continue
        session.add(
            Notification(
                id=str(uuid.uuid4()),
                idempotency_key=item.key,
                patient_id=item.patient_id,
                recipient_kind=item.recipient_kind,
                recipient_id=item.recipient_id,
                event=item.event,
                payload=item.payload,
                created_at=now,
                request_id=request_id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
            )
        )
        existing.add(item.key)
        added += 1
    session.flush()
    return added
