"""Traces rendered as FHIR R4 ``AuditEvent`` (the shape the IHE MHD audit profiles use:
type ``rest``, subtype the RESTful interaction, the patient as an entity)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from parcours.audit.models import AuditEvent

_ACTIONS = {
    "create": "C",
    "transaction": "C",
    "read": "R",
    "vread": "R",
    "history": "R",
    "search": "E",
    "patch": "U",
    "update": "U",
    "delete": "D",
    "operation": "E",
}
_SUBTYPES = {"search": "search-type", "transaction": "transaction"}


def _outcome(status: int) -> str:
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def render(event: AuditEvent) -> dict[str, Any]:
    entity: list[dict[str, Any]] = []
    if event.patient_id:
        entity.append(
            {
                "what": {"reference": f"Patient/{event.patient_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                },
            }
        )
    if event.mailbox:  # an MSSanté message event: the mailbox, and what happened, no content
        mailbox: dict[str, Any] = {
            "name": event.mailbox,
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
            },
        }
        if event.query:
            mailbox["description"] = event.query
        entity.append(mailbox)
    if event.resource_type and event.resource_id:
        entity.append({"what": {"reference": f"{event.resource_type}/{event.resource_id}"}})
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(event.seq),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [
            {
                "system": "http://hl7.org/fhir/restful-interaction",
                "code": _SUBTYPES.get(event.action, event.action),
            }
        ],
        "action": _ACTIONS.get(event.action, "E"),
        "recorded": event.recorded_at.isoformat(),
        "outcome": _outcome(event.outcome),
        "outcomeDesc": (f"code {event.outcome}" if event.mailbox else f"HTTP {event.outcome}")
        + (f" — règle {event.rule}" if event.rule else ""),
        "agent": [
            {
                "type": {"text": event.actor_kind},
                "who": {"identifier": {"value": event.actor_id or "anonyme"}},
                "requestor": True,
                "network": {"address": event.client_ip, "type": "2"} if event.client_ip else None,
                "purposeOfUse": (
                    [{"text": event.access_mode}] if event.access_mode != "normal" else None
                ),
            }
        ],
        "source": {"observer": {"display": "parcours"}},
        "entity": entity,
    }
    resource["agent"][0] = {k: v for k, v in resource["agent"][0].items() if v is not None}
    return resource


def events_for_patient(
    session: Session,
    patient_id: str,
    limit: int,
    offset: int,
    *,
    actor_id: str | None = None,
    hidden_resources: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The record's traces, newest first; ``actor_id`` keeps one actor's own (R39 for a PS who
    is not the médecin traitant); ``hidden_resources`` leaves out the traces naming documents a
    legal representative may not know of (R24)."""
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if hidden_resources:
        query = query.where(
            or_(
                AuditEvent.resource_id.is_(None),
                AuditEvent.resource_id.not_in(sorted(hidden_resources)),
            )
        )
    rows = session.execute(query.order_by(AuditEvent.seq.desc()).offset(offset).limit(limit))
    return [render(e) for e in rows.scalars()]


def events_of_actor(
    session: Session, actor_id: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One actor's own actions, newest first: what a professional may always read of the
    traces (R39), whatever the record."""
    rows = session.execute(
        select(AuditEvent)
        .where(AuditEvent.actor_id == actor_id)
        .order_by(AuditEvent.seq.desc())
        .offset(offset)
        .limit(limit)
    )
    return [render(e) for e in rows.scalars()]
