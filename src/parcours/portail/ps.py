"""WebPS: the professional's pages over the DMP.

Find a patient by INS (key checked) or in his patientèle, read the record as the policy lets
him (the médecin traitant's VSM first, then the spaces in his profession's order — seed 004's
« profils métiers »), search it by keyword, open a document, break the glass with a stated
justification, read his own access history. Every page calls the dossier services the FHIR
routes call, under the caller's own token; the bris de glace is the same per-request access
mode an API client sends in ``X-Acces-Mode``, kept for one patient and one hour in the signed
session once the professional has justified it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from parcours.annuaire import nomenclatures as nos
from parcours.audit import context as audit_context
from parcours.audit.fhir import events_of_actor
from parcours.auth.principal import Principal
from parcours.dossier import authoring, documents, records
from parcours.dossier import terminology as term
from parcours.fhir.errors import FHIRError
from parcours.fhir.search import parse_search
from parcours.identity import INS, IdentifierError
from parcours.portail import views
from parcours.portail.web import (
    PageSession,
    checked_form,
    checked_upload,
    page_session,
    save_session,
)

BRIS_DE_GLACE_SECONDS = 3600
MIN_JUSTIFICATION = 15
MAX_DOCUMENTS = 500
HISTORY = 200


@cache
def profiles() -> dict[str, Any]:
    path = Path(__file__).parent / "data" / "profils_metiers.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def space_order(profession: str | None) -> list[str]:
    data = profiles()
    return list(data["professions"].get(profession or "", data["default"]))


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def _identity(principal: Principal) -> dict[str, Any]:
    return {
        "profession": nos.PROFESSIONS.get(principal.profession or "", "Professionnel de santé"),
        "strong": principal.strong_auth,
        "acr": principal.auth_level or "?",
        "structure": principal.structure,
    }


def _emergency(session_: PageSession, patient_id: str) -> dict[str, Any] | None:
    granted = (session_.payload.get("bdg") or {}).get(patient_id)
    if granted and granted.get("until", 0) > time.time():
        return granted  # type: ignore[no-any-return]
    return None


def acting(request: Request, session_: PageSession, patient_id: str) -> Principal:
    """The principal for this patient's pages: in bris de glace mode with its justification
    when the professional broke the glass for this record, else as he logged in. Recorded on
    the request, so the trace carries the mode the decision was taken under."""
    granted = _emergency(session_, patient_id)
    if granted is None:
        return session_.principal
    principal = dataclasses.replace(
        session_.principal, access_mode="bris_de_glace", justification=granted["justification"]
    )
    request.state.principal = principal
    return principal


def router() -> APIRouter:
    pages = APIRouter(prefix="/portail/ps", include_in_schema=False)

    @pages.get("")
    def home(request: Request) -> Response:
        session_ = page_session(request, "ps")
        audit_context.note(resource_type="Patient", action="search")
        with request.app.state.db.session() as session:
            patients = [
                _patient_view(p) for p in records.known_patients(session, session_.principal)
            ]
        return _render(
            request,
            "ps/accueil.html",
            {
                "session": session_,
                "me": _identity(session_.principal),
                "patients": patients,
                "form": {},
            },
        )

    @pages.post("/recherche")
    async def find(request: Request) -> Response:
        """INS in a POST body, never in a URL; the key is checked before any look-up."""
        session_ = page_session(request, "ps")
        form = await checked_form(request, session_)
        audit_context.note(resource_type="Patient", action="search")
        typed = form.get("ins", "").replace(" ", "")
        error = ""
        try:
            ins = str(INS.parse(typed))
        except IdentifierError as exc:
            error = f"{exc} Vérifiez le numéro sur la carte Vitale ou l'attestation du patient."
        else:
            found = await run_in_threadpool(_find, request, session_.principal, ins)
            if found:
                return RedirectResponse(f"/portail/ps/patients/{found}", status_code=303)
            error = "Aucun dossier médical partagé n'est ouvert pour cet INS."
        with request.app.state.db.session() as session:
            patients = [
                _patient_view(p) for p in records.known_patients(session, session_.principal)
            ]
        return _render(
            request,
            "ps/accueil.html",
            {
                "session": session_,
                "me": _identity(session_.principal),
                "patients": patients,
                "form": form,
                "error": error,
            },
            400,
        )

    @pages.get("/patients/{patient_id}")
    def record(request: Request, patient_id: str) -> Response:
        session_ = page_session(request, "ps")
        views.check_id(patient_id)
        audit_context.note(resource_type="DocumentReference", action="search")
        return _record_page(request, session_, patient_id)

    @pages.post("/patients/{patient_id}/recherche")
    async def keyword(request: Request, patient_id: str) -> Response:
        """Full-text search in the record (French stemming, blind index): POST so that the
        words, which may name a disease, never sit in a URL or a log."""
        session_ = page_session(request, "ps")
        form = await checked_form(request, session_)
        views.check_id(patient_id)
        audit_context.note(resource_type="DocumentReference", action="search")
        words = form.get("mots", "").strip()[:200]
        return await run_in_threadpool(_record_page, request, session_, patient_id, words)

    @pages.post("/patients/{patient_id}/bris-de-glace")
    async def break_glass(request: Request, patient_id: str) -> Response:
        session_ = page_session(request, "ps")
        form = await checked_form(request, session_)
        views.check_id(patient_id)
        justification = " ".join(form.get("justification", "").split())[:500]
        error = ""
        if len(justification) < MIN_JUSTIFICATION:
            error = (
                "Décrivez la situation d'urgence (au moins "
                f"{MIN_JUSTIFICATION} caractères) : elle est conservée dans les traces."
            )
        elif form.get("engagement") != "oui":
            error = "Cochez la case pour confirmer que la situation relève de l'urgence."
        if error:
            audit_context.note(resource_type="Patient", action="read")
            return await run_in_threadpool(
                _record_page, request, session_, patient_id, "", error, form
            )
        payload = dict(session_.payload)
        granted = dict(payload.get("bdg") or {})
        granted[patient_id] = {
            "justification": justification,
            "until": time.time() + BRIS_DE_GLACE_SECONDS,
        }
        payload["bdg"] = granted
        response = RedirectResponse(f"/portail/ps/patients/{patient_id}", status_code=303)
        save_session(response, request, payload)
        return response

    @pages.get("/patients/{patient_id}/documents/{doc_id}")
    def document(request: Request, patient_id: str, doc_id: str) -> Response:
        session_ = page_session(request, "ps")
        views.check_id(patient_id)
        views.check_id(doc_id)
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        with request.app.state.db.session() as session:
            resource = documents.read(session, acting(request, session_, patient_id), doc_id, "")
        if (resource.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
            raise FHIRError(404, "not-found", "Ce document n'appartient pas à ce dossier.")
        return _render(
            request,
            "ps/document.html",
            {
                "session": session_,
                "patient_id": patient_id,
                "doc": views.summary(resource),
                "emergency": _emergency(session_, patient_id),
            },
        )

    @pages.get("/patients/{patient_id}/documents/{doc_id}/contenu")
    def content(request: Request, patient_id: str, doc_id: str) -> Response:
        session_ = page_session(request, "ps")
        views.check_id(patient_id)
        views.check_id(doc_id)
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        principal = acting(request, session_, patient_id)
        store = request.app.state.documents
        with request.app.state.db.session() as session:
            summary = views.summary(documents.read(session, principal, doc_id, ""))
            if summary["binary_id"] is None:
                raise FHIRError(404, "not-found", "Ce document n'a pas de contenu téléchargeable.")
            got = documents.retrieve(session, store, principal, summary["binary_id"])
        return Response(
            got.data,
            media_type=got.content_type,
            headers={
                "Content-Disposition": "attachment; "
                f'filename="{views.filename(summary["title"], got.content_type)}"'
            },
        )

    @pages.get("/patients/{patient_id}/depot")
    def upload_form(request: Request, patient_id: str) -> Response:
        session_ = page_session(request, "ps")
        views.check_id(patient_id)
        return _upload_page(request, session_, patient_id)

    @pages.post("/patients/{patient_id}/depot")
    async def upload(request: Request, patient_id: str) -> Response:
        """A PDF or CDA file → ITI-105 (authoring.publish_upload): validated, decided, traced
        and stored as an API publication; any refusal comes back on the form, kept."""
        session_ = page_session(request, "ps")
        views.check_id(patient_id)
        store = request.app.state.documents
        form = await checked_upload(request, session_, store.max_document_bytes)
        audit_context.note(resource_type="DocumentReference", action="transaction")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        file = form.get("fichier")
        data = await file.read() if file is not None and not isinstance(file, str) else b""
        try:
            act_date = date.fromisoformat(fields.get("date", ""))
        except ValueError:
            return _upload_page(
                request, session_, patient_id, "Indiquez la date de l'acte (jj/mm/aaaa).", fields
            )
        try:
            await run_in_threadpool(
                authoring.publish_upload,
                request.app.state.db,
                store,
                acting(request, session_, patient_id),
                patient_id=patient_id,
                type_code=fields.get("type", ""),
                title=fields.get("titre", ""),
                act_date=act_date,
                data=data,
                masked=fields.get("masque") == "oui",
                invisible_to_patient=fields.get("invisible") == "oui",
                base="",
            )
        except authoring.UploadRefused as exc:
            return _upload_page(request, session_, patient_id, str(exc), fields)
        except FHIRError as exc:
            if exc.status >= 500:
                raise
            reason = "; ".join(i.diagnostics for i in exc.issues)
            return _upload_page(request, session_, patient_id, reason, fields, exc.status)
        return RedirectResponse(f"/portail/ps/patients/{patient_id}?fait=depot", 303)

    @pages.get("/historique")
    def history(request: Request) -> Response:
        """His own actions on every record (R39: a professional always reads his own)."""
        session_ = page_session(request, "ps")
        audit_context.note(resource_type="AuditEvent", action="search")
        with request.app.state.db.session() as session:
            events = events_of_actor(session, session_.principal.actor_id, HISTORY, 0)
            rows = views.trace_rows(session, events)
        for row, event in zip(rows, events, strict=True):
            patient = next(
                (
                    e["what"]["reference"].split("/", 1)[1]
                    for e in event.get("entity") or []
                    if str((e.get("what") or {}).get("reference", "")).startswith("Patient/")
                ),
                None,
            )
            row["patient_id"] = patient
            row["action"] = (
                row["action"].replace("votre dossier", "le dossier").replace("votre ", "la ")
            )
        return _render(request, "ps/historique.html", {"session": session_, "rows": rows})

    return pages


def _upload_page(
    request: Request,
    session_: PageSession,
    patient_id: str,
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 400,
) -> Response:
    audit_context.note(resource_type="Patient", action="read")
    with request.app.state.db.session() as session:
        patient = records.read_patient(session, acting(request, session_, patient_id), patient_id)
    return _render(
        request,
        "ps/depot.html",
        {
            "session": session_,
            "patient_id": patient_id,
            "patient": _patient_view(patient),
            "types": authoring.document_types(),
            "error": error,
            "form": form or {"date": date.today().isoformat()},
            "max_mb": request.app.state.documents.max_document_bytes // 1_048_576,
            "emergency": _emergency(session_, patient_id),
        },
        status if error else 200,
    )


def _find(request: Request, principal: Principal, ins: str) -> str | None:
    with request.app.state.db.session() as session:
        found = records.search_patients(session, principal, ins)
    return found[0]["id"] if found and found[0].get("active") else None


def _patient_view(resource: dict[str, Any]) -> dict[str, Any]:
    name = (resource.get("name") or [{}])[0]
    return {
        "id": resource["id"],
        "name": f"{' '.join(name.get('given') or [])} {str(name.get('family', '')).upper()}",
        "birth_date": views.french_date(resource.get("birthDate") or ""),
        "active": bool(resource.get("active")),
    }


def _record_page(
    request: Request,
    session_: PageSession,
    patient_id: str,
    words: str = "",
    error: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    principal = acting(request, session_, patient_id)
    store = request.app.state.documents
    params = documents.document_params(lambda: store.keys.index_key)
    criteria = [("patient", patient_id), ("status", "current"), ("_count", str(MAX_DOCUMENTS))]
    if words:
        criteria.append(("_content", words))
    context: dict[str, Any] = {
        "session": session_,
        "patient_id": patient_id,
        "emergency": _emergency(session_, patient_id),
        "words": words,
        "done": "Document déposé dans le dossier."
        if request.query_params.get("fait") == "depot"
        else "",
        "error": error,
        "form": form or {},
    }
    with request.app.state.db.session() as session:
        patient = records.read_patient(session, principal, patient_id)
        context["patient"] = _patient_view(patient)
        try:
            query = parse_search("DocumentReference", criteria, params)
            grouped = documents.search_by_space(session, principal, query, "")
        except FHIRError as exc:
            if exc.status != 403:
                raise
            # The refusal is traced by the middleware; the page offers what the law allows.
            context["refusal"] = "; ".join(i.diagnostics for i in exc.issues)
            return _render(request, "ps/refus.html", context, 400 if error else 403)
    mt_id = next(
        (g["identifier"]["value"] for g in patient.get("generalPractitioner") or []),
        None,
    )
    by_code = {s.code: s for s in term.spaces()}
    order = [c for c in space_order(principal.profession) if c in by_code]
    spaces = [
        {
            "code": code,
            "label": by_code[code].long_label,
            "documents": [views.summary(r) for r in grouped.get(code, [])],
        }
        for code in order
    ]
    vsm_code = profiles()["vsm_type"].partition("|")[2]
    vsm = [
        views.summary(r)
        for code in order
        for r in grouped.get(code, [])
        if any(
            c.get("code") == vsm_code and "loinc" in str(c.get("system", "")).lower()
            for c in (r.get("type") or {}).get("coding") or []
        )
    ]
    vsm.sort(key=lambda d: d["sort_date"], reverse=True)
    mt_vsm = next((d for d in vsm if mt_id and mt_id in d["author_ids"]), None)
    context.update(
        spaces=spaces,
        total=sum(len(s["documents"]) for s in spaces),
        vsm=mt_vsm or (vsm[0] if vsm else None),
        vsm_by_mt=mt_vsm is not None,
        me=_identity(session_.principal),
    )
    return _render(request, "ps/dossier.html", context)
