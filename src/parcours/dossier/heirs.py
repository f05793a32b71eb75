"""After the holder's death: the death recorded by the Assurance Maladie, and heirs' requests.

The reference (dmp-access.md R43; art. L1110-4 V and L1111-18 CSP) gives heirs, a concubin or a
PACS partner no login to the record: they may *ask* for what they need to know the causes of
death, defend the deceased's memory or assert their rights, unless the holder opposed it in his
lifetime (``$dmp-droits`` set-opposition ``ayants_droit``). The request is decided by the policy
(R43: record closed at death, no opposition), stored, and reviewed offline by Assurance Maladie
staff, who accept or reject it; the requester is told through the notification outbox. The
extract itself is produced offline, as the reference says.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parcours.auth.principal import Principal
from parcours.dossier import records
from parcours.dossier.models import HeirRequest, Patient
from parcours.fhir.errors import BadRequest, FHIRError, NotFound
from parcours.fhir.parameters import parameter_values
from parcours.notify import outbox
from parcours.storage.models import utcnow

RELATIONSHIPS = {
    "heritier": "Héritier",
    "concubin": "Concubin",
    "partenaire-pacs": "Partenaire de PACS",
}
PURPOSES = {
    "cause-deces": "Connaître les causes de la mort",
    "memoire": "Défendre la mémoire du défunt",
    "droits": "Faire valoir ses droits",
}
DECISIONS = {"accepter": "accepted", "rejeter": "rejected"}
TASK_CODE_SYSTEM = "https://parcours.invalid/fhir/CodeSystem/demande-dmp"
PURPOSE_SYSTEM = "https://parcours.invalid/fhir/CodeSystem/motif-ayant-droit"
REVIEWERS = frozenset({"agent"})  # Assurance Maladie staff


def _choice(values: dict[str, Any], name: str, allowed: dict[str, str]) -> str:
    raw = values.get(name)
    if raw not in allowed:
        raise BadRequest(
            f"Paramètre « {name} » obligatoire : {', '.join(allowed)}.",
            expression=[f"Parameters.parameter.{name}"],
        )
    return str(raw)


def record_death(session: Session, principal: Principal, patient_id: str, body: Any) -> None:
    """The CNAM feed (a system) records the holder's death: the record closes, kept ten years,
    and from then on only heirs' requests and the traces remain (G2, R43)."""
    values = parameter_values(body)
    raw = values.get("deathDate")
    try:
        died = date.fromisoformat(str(raw))
    except ValueError:
        raise BadRequest(
            "Paramètre « deathDate » (date du décès, AAAA-MM-JJ) obligatoire.",
            expression=["Parameters.parameter.deathDate"],
        ) from None
    now = utcnow()
    if died > now.date():
        raise BadRequest("La date du décès est dans le futur.")
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    resolved = records.load(session, patient)
    records.enforce(principal, "record-death", resolved.state, now=now)
    record = resolved.record
    assert record is not None  # G2 refused an absent record
    record.status, record.closure_kind = "closed", "death"
    record.closed_at, record.closed_by = now, principal.actor_id
    record.close_reason = f"décès le {died.isoformat()}"
    record.retention_until = now.date() + timedelta(days=365 * records.RETENTION_YEARS + 3)
    patient.version += 1
    patient.last_updated = now
    session.flush()


def file_request(
    session: Session, principal: Principal, patient_id: str, body: Any
) -> dict[str, Any]:
    values = parameter_values(body)
    relationship = _choice(values, "lien", RELATIONSHIPS)
    purpose = _choice(values, "motif", PURPOSES)
    proof = values.get("justificatif")
    if not isinstance(proof, str) or not proof.strip():
        raise BadRequest(
            "Paramètre « justificatif » obligatoire (pièces établissant la qualité "
            "d'ayant droit : acte de décès, acte de notoriété…).",
            expression=["Parameters.parameter.justificatif"],
        )
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    now = utcnow()
    records.enforce(principal, "heir-request", records.load(session, patient).state, now=now)
    request = HeirRequest(
        id=str(uuid.uuid4()),
        patient_id=patient_id,
        requester_id=principal.actor_id,
        requester_name=principal.name,
        relationship=relationship,
        purpose=purpose,
        proof=proof.strip()[:4000],
        status="requested",
        created_at=now,
    )
    session.add(request)
    session.flush()
    return render(request)


def _visible(principal: Principal, request: HeirRequest) -> bool:
    return principal.kind in REVIEWERS or (
        principal.kind == "heir" and request.requester_id == principal.actor_id
    )


def read(session: Session, principal: Principal, task_id: str) -> dict[str, Any]:
    request = session.get(HeirRequest, task_id)
    if request is None or not _visible(principal, request):
        raise NotFound("Task", task_id)  # someone else's request does not exist for you
    return render(request)


def search(session: Session, principal: Principal, status: str | None) -> list[dict[str, Any]]:
    query = select(HeirRequest).order_by(HeirRequest.created_at)
    if principal.kind == "heir":
        query = query.where(HeirRequest.requester_id == principal.actor_id)
    elif principal.kind not in REVIEWERS:
        raise FHIRError(
            403,
            "forbidden",
            "Les demandes d'ayants droit sont instruites par l'Assurance Maladie ; chaque "
            "demandeur voit les siennes.",
        )
    if status is not None:
        if status not in ("requested", "accepted", "rejected"):
            raise BadRequest("status : requested, accepted ou rejected.")
        query = query.where(HeirRequest.status == status)
    return [render(r) for r in session.execute(query).scalars()]


def decide_request(
    session: Session, principal: Principal, task_id: str, body: Any, request_id: str
) -> dict[str, Any]:
    """Assurance Maladie staff accept or reject a request after checking the proof offline."""
    if principal.kind not in REVIEWERS:
        raise FHIRError(
            403, "forbidden", "Seul un agent de l'Assurance Maladie instruit ces demandes."
        )
    values = parameter_values(body)
    decision = _choice(values, "decision", DECISIONS)
    note = values.get("motif")
    request = session.get(HeirRequest, task_id, with_for_update=True)
    if request is None:
        raise NotFound("Task", task_id)
    if request.status != "requested":
        raise FHIRError(409, "conflict", f"Demande déjà instruite ({request.status}).")
    if decision == "rejeter" and not (isinstance(note, str) and note.strip()):
        raise BadRequest("Un rejet est motivé : paramètre « motif » obligatoire.")
    now = utcnow()
    request.status = DECISIONS[decision]
    request.decided_at, request.decided_by = now, principal.actor_id
    request.decision_note = note.strip() if isinstance(note, str) and note.strip() else None
    outbox.write(
        session,
        [
            outbox.Pending(
                key=f"{request.patient_id}|heir-request-{request.status}|{request.id}|"
                f"{request.requester_id}"[:255],
                patient_id=request.patient_id,
                recipient_kind="heir",
                recipient_id=request.requester_id,
                event=f"heir-request-{request.status}",
                payload={"date": now.isoformat(), "demande": request.id},
            )
        ],
        request_id,
        now,
    )
    session.flush()
    return render(request)


def render(request: HeirRequest) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": request.id,
        "status": request.status,
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": TASK_CODE_SYSTEM,
                    "code": "acces-ayant-droit",
                    "display": "Demande d'accès d'un ayant droit (art. L1110-4 V CSP)",
                }
            ]
        },
        "for": {"reference": f"Patient/{request.patient_id}"},
        "authoredOn": request.created_at.isoformat(),
        "requester": {"identifier": {"value": request.requester_id}},
        "reasonCode": {
            "coding": [
                {
                    "system": PURPOSE_SYSTEM,
                    "code": request.purpose,
                    "display": PURPOSES[request.purpose],
                }
            ]
        },
        "input": [
            {"type": {"text": "lien"}, "valueString": RELATIONSHIPS[request.relationship]},
            {"type": {"text": "justificatif"}, "valueString": request.proof},
        ],
    }
    if request.requester_name:
        task["requester"]["display"] = request.requester_name
    if request.decided_at:
        task["lastModified"] = request.decided_at.isoformat()
    if request.decision_note:
        task["statusReason"] = {"text": request.decision_note}
    return task
