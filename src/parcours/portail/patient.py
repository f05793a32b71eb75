"""The patient space: the record by the nine DMP spaces, each document, who accessed it.

Thin pages: each calls the dossier service functions the FHIR routes call (same policy
decision, so a page can never show what the API would refuse) and the access trace is written
by the same middleware. Identifiers in URLs are the opaque resource ids, never the INS.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from parcours.annuaire import directory
from parcours.audit import context as audit_context
from parcours.dossier import documents, records, rights
from parcours.dossier import terminology as term
from parcours.fhir.errors import FHIRError
from parcours.fhir.search import parse_search
from parcours.identity import RPPS, IdentifierError
from parcours.notify import inbox
from parcours.notify.models import InboxMessage
from parcours.portail import views
from parcours.portail.web import PageSession, checked_form, page_session

MAX_DOCUMENTS = 500
MAX_TRACES = 200
MAX_MESSAGES = 100

DONE = {
    "masque": "Le document est masqué : les professionnels de santé ne le voient plus, "
    "sauf son auteur et votre médecin traitant.",
    "visible": "Le document est de nouveau visible des professionnels qui accèdent à votre "
    "dossier.",
    "designate-mt": "Votre médecin traitant est enregistré dans votre dossier.",
    "block": "Ce professionnel ne peut plus accéder à votre dossier.",
    "unblock": "Ce professionnel peut de nouveau accéder à votre dossier, s'il en a le droit.",
    "oppose-bris-de-glace": "Votre choix sur l'accès en urgence est enregistré.",
    "oppose-centre-15": "Votre choix sur l'accès par le centre 15 est enregistré.",
    "fermeture": "Votre dossier est fermé. Il est conservé 10 ans puis détruit ; vous pouvez "
    "le rouvrir pendant ce délai.",
}


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def _patient_id(request: Request, ins: str) -> str | None:
    with request.app.state.db.session() as session:
        found = records.search_patients(session, request.state.principal, ins)
    return found[0]["id"] if found else None


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
            if _record_closed(patient):
                return _render(request, "patient/ferme.html", {"session": session_})
            grouped = documents.search_by_space(session, principal, query, "")
        spaces = [
            {
                "code": space.code,
                "label": space.long_label,
                "documents": [views.summary(r) for r in grouped.get(space.code, [])],
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
        views.check_id(doc_id)
        with request.app.state.db.session() as session:
            resource = documents.read(session, session_.principal, doc_id, "")
        return _render(
            request,
            "patient/document.html",
            {
                "session": session_,
                "doc": views.summary(resource),
                "done": DONE.get(request.query_params.get("fait", "")),
            },
        )

    @pages.get("/documents/{doc_id}/masquage")
    def mask_confirm(request: Request, doc_id: str) -> Response:
        """The consequences first, then the choice (a form that posts the change)."""
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        views.check_id(doc_id)
        with request.app.state.db.session() as session:
            resource = documents.read(session, session_.principal, doc_id, "")
        return _render(
            request, "patient/masquage.html", {"session": session_, "doc": views.summary(resource)}
        )

    @pages.post("/documents/{doc_id}/masquage")
    async def mask(request: Request, doc_id: str) -> Response:
        session_ = page_session(request, "patient")
        form = await checked_form(request, session_)
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id, action="patch")
        views.check_id(doc_id)
        masked = form.get("masquer") == "oui"
        await run_in_threadpool(_set_masked, request, session_, doc_id, masked)
        target = f"/portail/patient/documents/{doc_id}?fait={'masque' if masked else 'visible'}"
        return RedirectResponse(target, status_code=303)

    @pages.get("/notifications")
    def notifications(request: Request) -> Response:
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="Communication", action="search")
        with request.app.state.db.session() as session:
            total, rows, unread = inbox.messages(session, session_.principal, MAX_MESSAGES, 0)
            items = [_message_view(m) for m in rows]
        return _render(
            request,
            "patient/notifications.html",
            {"session": session_, "messages": items, "total": total, "unread": unread},
        )

    @pages.get("/notifications/{message_id}")
    def notification(request: Request, message_id: str) -> Response:
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="Communication", resource_id=message_id)
        views.check_id(message_id)
        with request.app.state.db.session() as session:
            item = _message_view(
                inbox.message(session, session_.principal, message_id, mark_read=True)
            )
        return _render(request, "patient/notification.html", {"session": session_, "msg": item})

    @pages.get("/parametres")
    def settings_page(request: Request) -> Response:
        session_ = page_session(request, "patient")
        return _settings_response(request, session_)

    @pages.post("/parametres")
    async def settings_change(request: Request) -> Response:
        """One change of the record's access settings (rights.apply, the $dmp-droits
        operation): designate the médecin traitant, block or unblock a professional, oppose
        or allow emergency access. Errors come back on the same page, the typed value kept."""
        session_ = page_session(request, "patient")
        form = await checked_form(request, session_)
        audit_context.note(resource_type="Patient", action="operation")
        error = await run_in_threadpool(_apply_setting, request, session_, form)
        if error:
            return _settings_response(request, session_, error=error, form=form, status=400)
        return RedirectResponse("/portail/patient/parametres?fait=" + form["action"], 303)

    @pages.get("/fermeture")
    def close_confirm(request: Request) -> Response:
        session_ = page_session(request, "patient")
        return _render(request, "patient/fermeture.html", {"session": session_, "form": {}})

    @pages.post("/fermeture")
    async def close(request: Request) -> Response:
        session_ = page_session(request, "patient")
        form = await checked_form(request, session_)
        audit_context.note(resource_type="Patient", action="operation")
        if form.get("confirme") != "oui":
            return _render(
                request,
                "patient/fermeture.html",
                {
                    "session": session_,
                    "form": form,
                    "error": "Cochez la case pour confirmer la fermeture de votre dossier.",
                },
                400,
            )
        await run_in_threadpool(_close, request, session_, form.get("motif", "")[:500])
        return RedirectResponse("/portail/patient", 303)

    @pages.get("/documents/{doc_id}/contenu")
    def content(request: Request, doc_id: str) -> Response:
        session_ = page_session(request, "patient")
        audit_context.note(resource_type="DocumentReference", resource_id=doc_id)
        views.check_id(doc_id)
        store = request.app.state.documents
        with request.app.state.db.session() as session:
            summary = views.summary(documents.read(session, session_.principal, doc_id, ""))
            if summary["binary_id"] is None:
                raise FHIRError(404, "not-found", "Ce document n'a pas de contenu téléchargeable.")
            got = documents.retrieve(session, store, session_.principal, summary["binary_id"])
        filename = views.filename(summary["title"], got.content_type)
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
            rows = views.trace_rows(session, events)
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


def _patient_view(resource: dict[str, Any]) -> dict[str, Any]:
    name = (resource.get("name") or [{}])[0]
    return {
        "name": f"{' '.join(name.get('given') or [])} {name.get('family', '')}".strip(),
        "birth_date": views.french_date(resource.get("birthDate") or ""),
    }


def _set_masked(request: Request, session_: PageSession, doc_id: str, masked: bool) -> None:
    with request.app.state.db.session() as session:
        documents.set_masked(session, session_.principal, doc_id, masked, "")


def _close(request: Request, session_: PageSession, reason: str) -> None:
    patient_id = _patient_id(request, session_.principal.ins or "")
    if patient_id is None:
        raise FHIRError(404, "not-found", "Vous n'avez pas de dossier à fermer.")
    with request.app.state.db.session() as session:
        records.close_record(session, session_.principal, patient_id, reason)


def _message_view(message: InboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "subject": message.subject,
        "body": message.body,
        "when": message.created_at.astimezone(views.PARIS).strftime("%d/%m/%Y à %H:%M"),
        "unread": message.read_at is None,
    }


# --- access settings -------------------------------------------------------------------

_SETTING_ACTIONS = {
    "designate-mt": ("designate-mt", None),
    "block": ("block", None),
    "unblock": ("unblock", None),
    "oppose-bris-de-glace": ("set-opposition", "bris_de_glace"),
    "oppose-centre-15": ("set-opposition", "centre_15"),
}


def _apply_setting(request: Request, session_: PageSession, form: dict[str, str]) -> str | None:
    """Apply one settings form; the French reason of a refusal, or None when done."""
    choice = form.get("action", "")
    if choice not in _SETTING_ACTIONS:
        return "Action inconnue."
    action, setting = _SETTING_ACTIONS[choice]
    parameters: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    with request.app.state.db.session() as session:
        if setting is None:
            typed = form.get("rpps", "").replace(" ", "")
            idnps = typed if len(typed) == 12 and typed[0] in "80" else "8" + typed
            try:
                RPPS.parse(idnps[1:]) if idnps[0] == "8" else None
            except IdentifierError as exc:
                return f"{exc} Vérifiez le numéro sur une ordonnance du professionnel."
            if directory.find_professional(session, idnps) is None:
                return f"Aucun professionnel de santé en exercice n'a le numéro RPPS « {typed} »."
            parameters.append({"name": "target", "valueString": idnps})
        else:
            parameters.append({"name": "setting", "valueCode": setting})
            parameters.append({"name": "value", "valueBoolean": form.get("valeur") == "oui"})
        patient_id = _patient_id(request, session_.principal.ins or "")
        if patient_id is None:
            return "Vous n'avez pas de dossier."
        try:
            rights.apply(
                session,
                session_.principal,
                patient_id,
                {"resourceType": "Parameters", "parameter": parameters},
            )
        except FHIRError as exc:
            session.rollback()
            return "; ".join(i.diagnostics for i in exc.issues)
    return None


def _settings_response(
    request: Request,
    session_: PageSession,
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    audit_context.note(resource_type="Patient", action="read")
    patient_id = _patient_id(request, session_.principal.ins or "")
    if patient_id is None:
        return _render(request, "patient/sans_dossier.html", {"session": session_})
    with request.app.state.db.session() as session:
        state = records.read_patient(session, session_.principal, patient_id)
        if _record_closed(state):
            return _render(request, "patient/ferme.html", {"session": session_})
        current = rights.settings(session, session_.principal, patient_id)
        view = _settings_view(session, current)
    return _render(
        request,
        "patient/parametres.html",
        {
            "session": session_,
            "settings": view,
            "error": error,
            "form": form or {},
            "done": DONE.get(request.query_params.get("fait", "")),
        },
        status,
    )


def _record_closed(patient: dict[str, Any]) -> bool:
    return not patient.get("active")


def _settings_view(session: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    def name_of(idnps: str) -> str:
        found = directory.find_professional(session, idnps)
        return found.display_name if found else idnps

    view: dict[str, Any] = {"blocked": [], "mt": None}
    for p in parameters.get("parameter") or []:
        name, value = p["name"], p.get("valueString", p.get("valueBoolean"))
        if name == "mt":
            view["mt"] = {"idnps": value, "name": name_of(str(value))}
        elif name == "blocked":
            view["blocked"].append(
                {"idnps": value, "rpps": str(value)[1:], "name": name_of(str(value))}
            )
        elif name in ("oppose_bris_de_glace", "oppose_centre_15", "mask_all"):
            view[name] = bool(value)
    return view
