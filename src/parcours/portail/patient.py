"""The patient space: the record by the nine DMP spaces, each document, who accessed it.

Thin pages: each calls the dossier service functions the FHIR routes call (same policy
decision, so a page can never show what the API would refuse) and the access trace is written
by the same middleware. Identifiers in URLs are the opaque resource ids, never the INS.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from parcours.annuaire import directory
from parcours.audit import context as audit_context
from parcours.dossier import documents, records
from parcours.dossier import terminology as term
from parcours.fhir.errors import FHIRError
from parcours.fhir.search import parse_search
from parcours.portail.web import page_session

MAX_DOCUMENTS = 500
MAX_TRACES = 200

ACCESS_MODES = {
    "normal": "Accès habituel",
    "bris_de_glace": "Accès en urgence (bris de glace)",
    "centre_15": "Régulation du centre 15 (SAMU)",
}
PARIS = ZoneInfo("Europe/Paris")

# What a trace says, in the patient's words: (interaction, resource type) → verb phrase.
_DOCUMENT_TYPES = ("DocumentReference", "Binary", "List")
_READS = ("read", "vread", "history")


def describe(interaction: str, resource_type: str | None) -> str:
    if interaction in _READS:
        if resource_type == "Patient":
            return "a consulté votre fiche d'identité et l'état de votre dossier"
        if resource_type == "AuditEvent":
            return "a consulté l'historique des accès à votre dossier"
        return "a consulté un document de votre dossier"
    if interaction in ("search", "search-type"):
        if resource_type == "AuditEvent":
            return "a consulté l'historique des accès à votre dossier"
        return "a consulté la liste des documents de votre dossier"
    if interaction == "transaction" or (
        interaction == "create" and resource_type in _DOCUMENT_TYPES
    ):
        return "a ajouté un document à votre dossier"
    if interaction == "create" and resource_type == "Consent":
        return "a enregistré votre consentement : ouverture de votre dossier"
    if interaction == "operation" and resource_type == "Patient":
        return "a modifié les droits d'accès ou les paramètres de votre dossier"
    if interaction == "create" and resource_type == "Patient":
        return "a enregistré votre identité pour votre dossier"
    if interaction in ("patch", "update"):
        return "a modifié un document de votre dossier"
    if interaction == "delete":
        return "a supprimé un document de votre dossier"
    return "a accédé à votre dossier"


ACTOR_KINDS = {
    "professional": "Professionnel de santé",
    "patient": "Vous",
    "agent": "Agent de l'Assurance Maladie",
    "system": "Système",
}


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def _patient_id(request: Request, ins: str) -> str | None:
    with request.app.state.db.session() as session:
        found = records.search_patients(session, request.state.principal, ins)
    return found[0]["id"] if found else None


def _display(codeable: dict[str, Any] | None) -> str:
    for coding in (codeable or {}).get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
        if term.is_class_system(coding.get("system")):
            return term.class_display(str(coding.get("code"))) or ""
    return str((codeable or {}).get("text") or "")


def _summary(resource: dict[str, Any]) -> dict[str, Any]:
    """What a patient reads of a DocumentReference: plain words, no codes."""
    attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
    authors = []
    for ref in resource.get("author") or []:
        if ref.get("display"):
            authors.append(ref["display"])
    for contained in resource.get("contained") or []:
        if contained.get("resourceType") == "Practitioner":
            name = (contained.get("name") or [{}])[0]
            given = " ".join(name.get("given") or [])
            authors.append(f"{given} {name.get('family', '')}".strip())
    context = resource.get("context") or {}
    url = str(attachment.get("url") or "")
    date = resource.get("date") or attachment.get("creation") or ""
    return {
        "id": resource["id"],
        "title": attachment.get("title")
        or resource.get("description")
        or _display(resource.get("type")),
        "type": _display(resource.get("type")),
        "category": _display((resource.get("category") or [None])[0]),
        "date": _date(date),
        "authors": [a for a in authors if a],
        "facility": _display(context.get("facilityType")),
        "practice": _display(context.get("practiceSetting")),
        "content_type": attachment.get("contentType") or "",
        "size": attachment.get("size"),
        "binary_id": url.rsplit("/", 1)[-1] if "Binary/" in url else None,
        "status": resource.get("status"),
    }


def _date(raw: str) -> str:
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return str(raw)
    return moment.strftime("%d/%m/%Y")


def router() -> APIRouter:
    pages = APIRouter(prefix="/portail/patient", include_in_schema=False)

    @pages.get("")
    def record(request: Request) -> Response:
        """Mon DMP: the record by space, as the DMP presents it."""
        session_ = page_session(request, "patient")
        principal = session_.principal
        audit_context.note(resource_type="DocumentReference", action="search")
        patient_id = _patient_id(request, principal.ins or "")
        if patient_id is None:
            return _render(request, "patient/sans_dossier.html", {"session": session_})
        store = request.app.state.documents
        params = documents.document_params(lambda: store.keys.index_key)
        query = parse_search(
            "DocumentReference",
            [("patient", patient_id), ("status", "current"), ("_count", str(MAX_DOCUMENTS))],
            params,
        )
        with request.app.state.db.session() as session:
            patient = records.read_patient(session, principal, patient_id)
            grouped = documents.search_by_space(session, principal, query, "")
        spaces = [
            {
                "code": space.code,
                "label": space.long_label,
                "documents": [_summary(r) for r in grouped.get(space.code, [])],
            }
            for space in term.spaces()
        ]
        return _render(
            request,
            "patient/dossier.html",
            {
                "session": session_,
                "patient": _patient_view(patient),
                "spaces": spaces,
                "total": sum(len(s["documents"]) for s in spaces),
            },
        )

    @pages.get("/documents/{doc_id}")
    def document(request: Request, doc_id: str) -> Response:
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        _check_id(doc_id)
        with request.app.state.db.session() as session:
            resource = documents.read(session, session_.principal, doc_id, "")
        return _render(
            request, "patient/document.html", {"session": session_, "doc": _summary(resource)}
        )

    @pages.get("/documents/{doc_id}/contenu")
    def content(request: Request, doc_id: str) -> Response:
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        _check_id(doc_id)
        store = request.app.state.documents
        with request.app.state.db.session() as session:
            summary = _summary(documents.read(session, session_.principal, doc_id, ""))
            if summary["binary_id"] is None:
                raise FHIRError(404, "not-found", "Ce document n'a pas de contenu téléchargeable.")
            got = documents.retrieve(session, store, session_.principal, summary["binary_id"])
        filename = _filename(summary["title"], got.content_type)
        return Response(
            got.data,
            media_type=got.content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @pages.get("/traces")
    def traces(request: Request) -> Response:
        """Who accessed my record, when, how: the bris de glace accesses stand out."""
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="AuditEvent", action="search")
        patient_id = _patient_id(request, session_.principal.ins or "")
        if patient_id is None:
            return _render(request, "patient/sans_dossier.html", {"session": session_})
        with request.app.state.db.session() as session:
            events = records.traces(session, session_.principal, patient_id, MAX_TRACES, 0)
            rows = _trace_rows(session, events)
        return _render(
            request,
            "patient/traces.html",
            {
                "session": session_,
                "rows": rows,
                "emergencies": sum(1 for r in rows if r["emergency"]),
            },
        )

    return pages


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _check_id(doc_id: str) -> None:
    if not _ID.match(doc_id):
        raise FHIRError(404, "not-found", "Ce document n'existe pas.")


def _filename(title: str, content_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "document"
    ext = {"application/pdf": ".pdf", "text/plain": ".txt", "text/xml": ".xml"}.get(content_type)
    return stem + (ext or "")


def _patient_view(resource: dict[str, Any]) -> dict[str, Any]:
    name = (resource.get("name") or [{}])[0]
    return {
        "name": f"{' '.join(name.get('given') or [])} {name.get('family', '')}".strip(),
        "birth_date": _date(resource.get("birthDate") or ""),
    }


def _trace_rows(session: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    rows = []
    for event in events:
        agent = (event.get("agent") or [{}])[0]
        actor_id = ((agent.get("who") or {}).get("identifier") or {}).get("value", "")
        kind = (agent.get("type") or {}).get("text", "")
        mode = ((agent.get("purposeOfUse") or [{}])[0]).get("text", "normal")
        if kind == "professional" and actor_id not in names:
            found = directory.find_professional(session, actor_id)
            names[actor_id] = found.display_name if found else actor_id
        moment = datetime.fromisoformat(event["recorded"]).astimezone(PARIS)
        interaction = ((event.get("subtype") or [{}])[0]).get("code", "")
        target = next(
            (
                str(e["what"]["reference"])
                for e in event.get("entity") or []
                if (e.get("what") or {}).get("reference") and "type" not in e
            ),
            "",
        )
        rtype = target.partition("/")[0]
        rows.append(
            {
                "when": moment.strftime("%d/%m/%Y à %H:%M"),
                "iso": event["recorded"],
                "who": names.get(actor_id) or ACTOR_KINDS.get(kind, kind),
                "kind": ACTOR_KINDS.get(kind, kind),
                "action": describe(interaction, rtype or None),
                "mode": ACCESS_MODES.get(mode, mode),
                "emergency": mode in ("bris_de_glace", "centre_15"),
                "refused": event.get("outcome") != "0",
            }
        )
    return rows
