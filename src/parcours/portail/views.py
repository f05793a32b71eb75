"""Shared page views: how documents and traces read for people, dates in French time.

Used by the patient space and WebPS alike, so a document or an access reads the same words
whoever looks at it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from parcours.annuaire import directory
from parcours.dossier import terminology as term
from parcours.fhir.errors import FHIRError

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


def display(codeable: dict[str, Any] | None) -> str:
    for coding in (codeable or {}).get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
        if term.is_class_system(coding.get("system")):
            return term.class_display(str(coding.get("code"))) or ""
    return str((codeable or {}).get("text") or "")


def summary(resource: dict[str, Any]) -> dict[str, Any]:
    """What a patient reads of a DocumentReference: plain words, no codes."""
    attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
    authors, author_ids = [], []
    for ref in resource.get("author") or []:
        if ref.get("display"):
            authors.append(ref["display"])
        if (ref.get("identifier") or {}).get("value"):
            author_ids.append(ref["identifier"]["value"])
    for contained in resource.get("contained") or []:
        if contained.get("resourceType") == "Practitioner":
            name = (contained.get("name") or [{}])[0]
            given = " ".join(name.get("given") or [])
            authors.append(f"{given} {name.get('family', '')}".strip())
            author_ids += [i.get("value") for i in contained.get("identifier") or []]
    context = resource.get("context") or {}
    url = str(attachment.get("url") or "")
    date = resource.get("date") or attachment.get("creation") or ""
    return {
        "id": resource["id"],
        "title": attachment.get("title")
        or resource.get("description")
        or display(resource.get("type")),
        "type": display(resource.get("type")),
        "category": display((resource.get("category") or [None])[0]),
        "date": french_date(date),
        "sort_date": str(date),
        "author_ids": [i for i in author_ids if i],
        "authors": [a for a in authors if a],
        "facility": display(context.get("facilityType")),
        "practice": display(context.get("practiceSetting")),
        "content_type": attachment.get("contentType") or "",
        "size": attachment.get("size"),
        "binary_id": url.rsplit("/", 1)[-1] if "Binary/" in url else None,
        "status": resource.get("status"),
        "masked": any(
            c.get("code") == term.MASQUE_PS
            for label in resource.get("securityLabel") or []
            for c in label.get("coding") or []
        ),
    }


def french_date(raw: str) -> str:
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return str(raw)
    return moment.strftime("%d/%m/%Y")


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(doc_id: str) -> None:
    if not _ID.match(doc_id):
        raise FHIRError(404, "not-found", "Ce document n'existe pas.")


def filename(title: str, content_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "document"
    ext = {"application/pdf": ".pdf", "text/plain": ".txt", "text/xml": ".xml"}.get(content_type)
    return stem + (ext or "")


def trace_rows(session: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
