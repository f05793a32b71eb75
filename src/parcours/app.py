"""Assembly of the HTTP application: settings, database, token verifier, audit, routers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from parcours import __version__
from parcours.annuaire import routes as annuaire_routes
from parcours.annuaire import service as annuaire_service
from parcours.audit.middleware import AuditMiddleware
from parcours.auth import devidp, keys
from parcours.auth.tokens import KeySource, RemoteJwks, StaticJwks, TokenVerifier
from parcours.config import Settings, get_settings
from parcours.dossier import routes as dossier_routes
from parcours.dossier.store import DocumentStore, open_store
from parcours.fhir.capability import capability_statement
from parcours.fhir.errors import FHIRError, Issue, operation_outcome
from parcours.fhir.responses import FHIRResponse
from parcours.notify import routes as notify_routes
from parcours.portail import guichet as portail_guichet
from parcours.portail import login as portail_login
from parcours.portail import patient as portail_patient
from parcours.portail import ps as portail_ps
from parcours.portail.web import HERE as PORTAL_HERE
from parcours.portail.web import (
    CookieSigner,
    CsrfRefused,
    LoginRequired,
    SecurityHeaders,
    TooLarge,
    error_page,
    is_portal,
    make_templates,
)
from parcours.storage import migrate
from parcours.storage.db import Database

log = logging.getLogger("parcours")
PORTAL_STATIC = str(PORTAL_HERE / "static")


def build_verifier(settings: Settings, dev_key: keys.SigningKey | None) -> TokenVerifier:
    issuers: dict[str, KeySource] = {}
    if settings.is_development and dev_key is not None:
        issuers[settings.dev_issuer] = StaticJwks.from_signing_key(dev_key)
    for item in settings.oidc_issuers:
        issuer, _, jwks_uri = item.partition("|")
        issuers[issuer] = RemoteJwks(issuer, jwks_uri=jwks_uri or None)
    return TokenVerifier(
        issuers, audience=settings.audience, leeway_seconds=settings.clock_skew_seconds
    )


def create_app(
    settings: Settings | None = None,
    db: Database | None = None,
    documents: DocumentStore | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.resolved_database_url)
    if not migrate.is_up_to_date(db):
        raise RuntimeError(
            "Schéma de base de données absent ou périmé : lancez « parcours db upgrade »."
        )
    dev_key = keys.load_or_create(settings.keys_dir) if settings.is_development else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.worker == "embedded":
            from parcours.notify.jobs import background_worker

            worker = background_worker(db, settings)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="parcours",
        version=__version__,
        description="DMP, MSSanté et Annuaire santé : API FHIR R4.",
    )
    app.state.settings = settings
    app.state.db = db
    app.state.dev_key = dev_key
    app.state.verifier = build_verifier(settings, dev_key)
    app.state.documents = documents or open_store(settings)

    app.state.templates = make_templates()
    app.state.cookie_signer = CookieSigner.load_or_create(settings.keys_dir)
    app.state.oidc_discovery = {}

    _install_error_handlers(app)
    app.add_middleware(
        AuditMiddleware,
        database=lambda: app.state.db,
        prefixes=("/fhir", "/portail/patient", "/portail/ps", "/portail/guichet"),
    )
    app.add_middleware(SecurityHeaders)

    @app.get("/health", tags=["santé du service"])
    def health() -> dict[str, Any]:
        with db.session() as session:
            session.connection().exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__, "database": db.dialect}

    @app.get("/fhir/metadata", tags=["FHIR"])
    def metadata(request: Request) -> FHIRResponse:
        kinds = {
            rtype: (kind.params, kind.includes) for rtype, kind in annuaire_service.KINDS.items()
        }
        return FHIRResponse(capability_statement(settings.base_url.rstrip("/") + "/fhir", kinds))

    if settings.is_development:
        app.include_router(devidp.router())
    app.include_router(annuaire_routes.router())
    app.include_router(dossier_routes.router())
    app.include_router(notify_routes.router())
    app.include_router(portail_login.router())
    app.include_router(portail_patient.router())
    app.include_router(portail_ps.router())
    app.include_router(portail_guichet.router())
    app.mount("/portail/static", StaticFiles(directory=PORTAL_STATIC), name="portail-static")

    @app.api_route(
        "/fhir/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def unknown_fhir(path: str) -> None:
        raise FHIRError(
            404,
            "not-supported",
            f"Type de ressource ou opération non pris en charge : /fhir/{path}",
        )

    return app


def _install_error_handlers(app: FastAPI) -> None:
    """FHIR callers get an OperationOutcome; portal pages get the same refusal as a French page
    (never a stack trace), or a trip to the login page when the session is missing or over."""

    @app.exception_handler(FHIRError)
    async def fhir_error(request: Request, exc: FHIRError) -> Response:
        if is_portal(request):
            return error_page(request, exc.status, "; ".join(i.diagnostics for i in exc.issues))
        return FHIRResponse(exc.outcome(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired) -> Response:
        target = f"/portail/connexion?profil={exc.profile}"
        if exc.reason:
            target = "/portail/?expiree=1"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> Response:
        return error_page(
            request,
            413,
            f"Le fichier dépasse la taille admise ({exc.max_bytes / 1_048_576:.0f} Mo).",
        )

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _exc: CsrfRefused) -> Response:
        return error_page(
            request,
            403,
            "Ce formulaire a expiré ou ne vient pas de cette page. "
            "Rechargez la page et recommencez.",
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> FHIRResponse:
        issues = [
            Issue("invalid", f"{'.'.join(str(p) for p in err['loc'])} : {err['msg']}")
            for err in exc.errors()
        ]
        return FHIRResponse(operation_outcome(issues), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_portal(request):
            return error_page(request, exc.status_code, "")
        code = {404: "not-found", 405: "not-supported", 401: "login", 403: "forbidden"}.get(
            exc.status_code, "processing"
        )
        return FHIRResponse(
            operation_outcome([Issue(code, str(exc.detail))]),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        if is_portal(request):
            return error_page(request, 500, "")
        return FHIRResponse(
            operation_outcome([Issue("exception", "Erreur interne du serveur.")]), status_code=500
        )
