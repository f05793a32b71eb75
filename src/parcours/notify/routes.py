"""The inbox as FHIR ``Communication``: each user reads his own messages, and nobody else's.

A notification delivered to the portal inbox is a ``Communication`` (status ``completed``, the
event as category, the text as payload). The rule (recipient = caller) lives
in ``notify.inbox``, which the portal's inbox pages read through too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from parcours.auth.dependencies import current_principal
from parcours.auth.principal import Principal
from parcours.fhir.errors import BadRequest
from parcours.fhir.responses import FHIRResponse
from parcours.fhir.routing import check_id, fhir_base, search_items
from parcours.fhir.search import match_bundle, page
from parcours.identity.ins import INS_OID_NIR
from parcours.identity.professional import IDNPS_OID
from parcours.notify import inbox as inbox_service
from parcours.notify.models import InboxMessage
from parcours.storage.deps import db_session

SessionDep = Annotated[Session, Depends(db_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
EVENT_SYSTEM = "https://parcours.invalid/fhir/CodeSystem/evenement-notification"


def render(message: InboxMessage) -> dict[str, Any]:
    system = {"patient": INS_OID_NIR, "ps": IDNPS_OID}.get(message.recipient_kind)
    recipient: dict[str, Any] = {"value": message.recipient_id}
    if system:
        recipient["system"] = f"urn:oid:{system}"
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": message.id,
        "status": "completed",
        "category": [{"coding": [{"system": EVENT_SYSTEM, "code": message.event}]}],
        "sent": message.created_at.isoformat(),
        "recipient": [{"identifier": recipient}],
        "sender": {"display": "Dossier Médical Partagé"},
        "topic": {"text": message.subject},
        "payload": [{"contentString": message.body}],
    }
    if message.patient_id:
        resource["subject"] = {"reference": f"Patient/{message.patient_id}"}
    if message.read_at:
        resource["received"] = message.read_at.isoformat()
    return resource


def router() -> APIRouter:
    api = APIRouter(prefix="/fhir", tags=["Messagerie du portail"])

    @api.get("/Communication", summary="Mes notifications (boîte de réception du portail)")
    def inbox(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        params = dict(items)
        unknown = set(params) - {"_count", "_offset"}
        if unknown:
            raise BadRequest(
                f"Communication : paramètre(s) non pris en charge : {', '.join(sorted(unknown))} "
                "(la boîte de réception ne se filtre que par _count et _offset)."
            )
        count, offset = page(params, maximum=200)
        total, rows, _unread = inbox_service.messages(session, principal, count, offset)
        return FHIRResponse(match_bundle(fhir_base(request), [render(m) for m in rows], total))

    @api.get("/Communication/{message_id}", summary="Lire une notification")
    def read(message_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        message = inbox_service.message(session, principal, check_id("Communication", message_id))
        return FHIRResponse(render(message))

    return api
