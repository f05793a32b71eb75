"""The desk where a DMP is opened with the patient present: CPAM reception or pharmacy.

The form checks what the agent can check (INS key, birth date against the NIR), asks for the
explicit consent (the legal representative's for a minor), then prints the letter that hands
the patient his access code — shown once, in the answer to the POST, never in a URL and never
stored in clear. Opening goes through ``dossier.creation`` and so through the same record
services, policy (R41) and trace as the FHIR API; the channel is kept on the record.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from parcours.audit import context as audit_context
from parcours.dossier import creation, records
from parcours.fhir.errors import FHIRError
from parcours.portail import views
from parcours.portail.web import PageSession, checked_form, page_session

GENDERS = {"female": "Féminin", "male": "Masculin", "other": "Autre", "unknown": "Inconnu"}
QUALITIES = ("mère", "père", "tuteur ou tutrice", "autre représentant légal")


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def _form_page(
    request: Request,
    session_: PageSession,
    form: dict[str, str],
    error: str = "",
    status: int = 200,
) -> Response:
    return _render(
        request,
        "guichet/creation.html",
        {
            "session": session_,
            "form": form,
            "error": error,
            "genders": GENDERS,
            "qualities": QUALITIES,
            "channel": records.CHANNELS.get(_channel_or_none(session_), ""),
        },
        status,
    )


def _channel_or_none(session_: PageSession) -> str:
    try:
        return creation.channel_for(session_.principal)
    except FHIRError:
        return ""


def router() -> APIRouter:
    pages = APIRouter(prefix="/portail/guichet", include_in_schema=False)

    @pages.get("")
    def form(request: Request) -> Response:
        session_ = page_session(request, "agent")
        if not _channel_or_none(session_):
            raise FHIRError(403, "forbidden", "Accueil réservé aux agents et aux pharmaciens.")
        return _form_page(request, session_, {})

    @pages.post("")
    async def open_record(request: Request) -> Response:
        session_ = page_session(request, "agent")
        fields = await checked_form(request, session_)
        audit_context.note(resource_type="Consent", action="create")
        try:
            born = date.fromisoformat(fields.get("naissance", ""))
        except ValueError:
            return _form_page(request, session_, fields, "Indiquez la date de naissance.", 400)
        if fields.get("sexe") not in GENDERS:
            return _form_page(request, session_, fields, "Indiquez le sexe du patient.", 400)
        representative = None
        if fields.get("representant", "").strip():
            quality = fields.get("qualite", "")
            representative = creation.Representative(
                fields["representant"], quality if quality in QUALITIES else QUALITIES[-1]
            )
        try:
            opened = await run_in_threadpool(_open, request, session_, fields, born, representative)
        except creation.CreationRefused as exc:
            return _form_page(request, session_, fields, str(exc), 400)
        except FHIRError as exc:
            if exc.status >= 500:
                raise
            reason = "; ".join(i.diagnostics for i in exc.issues)
            return _form_page(request, session_, fields, reason, exc.status)
        base = request.app.state.settings.base_url.rstrip("/")
        portal = f"{base}/portail/"
        qr = segno.make(portal, error="m").svg_inline(scale=4, title="Adresse de l'espace patient")
        return _render(
            request,
            "guichet/lettre.html",
            {
                "session": session_,
                "opened": opened,
                "name": f"{' '.join(fields.get('prenoms', '').split())} "
                f"{fields.get('nom', '').strip().upper()}",
                "ins": fields.get("ins", "").replace(" ", ""),
                "born": views.french_date(born.isoformat()),
                "portal": portal,
                "qr": Markup(qr),  # segno's own SVG: no user input in it
                "channel": records.CHANNELS[opened.channel],
                "representative": representative,
            },
        )

    return pages


def _open(
    request: Request,
    session_: PageSession,
    fields: dict[str, str],
    born: date,
    representative: creation.Representative | None,
) -> creation.Opened:
    with request.app.state.db.session() as session:
        return creation.open_record(
            session,
            session_.principal,
            ins=fields.get("ins", "").replace(" ", ""),
            family=fields.get("nom", ""),
            given=fields.get("prenoms", ""),
            born=born,
            gender=fields["sexe"],
            consent=fields.get("consentement") == "oui",
            representative=representative,
        )
