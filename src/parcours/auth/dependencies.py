"""FastAPI dependency resolving the caller; routes declare it, they never parse headers."""

from __future__ import annotations

import dataclasses

from fastapi import Request

from parcours.auth.principal import ACCESS_MODES, PURPOSES, Principal
from parcours.auth.tokens import AuthenticationError
from parcours.fhir.errors import FHIRError

_CHALLENGE = 'Bearer realm="parcours"'


def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise FHIRError(
            401,
            "login",
            "Authentification requise : en-tête « Authorization: Bearer <jeton> » absent.",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise FHIRError(
            401,
            "login",
            "Schéma d'authentification non pris en charge : utilisez « Bearer <jeton> ».",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    try:
        principal = request.app.state.verifier.verify(token.strip())
    except AuthenticationError as exc:
        raise FHIRError(
            401,
            "login",
            str(exc),
            headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        ) from None
    request.state.principal = principal  # a refused access context is traced to its author
    principal = _with_access_context(principal, request)
    request.state.principal = principal
    return principal


# Per-request access context, as the DMP's VIHF carries it on every call: the access mode (bris
# de glace, centre 15), its justification or the regulation call id, the purpose of use and the
# minor's secret connection. A header overrides the token's default mode for this request only.
MODE_HEADER = "x-acces-mode"
JUSTIFICATION_HEADER = "x-acces-justification"
CALL_HEADER = "x-acces-appel"
PURPOSE_HEADER = "x-acces-finalite"
SECRET_HEADER = "x-acces-secret"


def _header(request: Request, name: str, limit: int = 500) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit or not value.isprintable():
        raise FHIRError(
            400, "invalid", f"En-tête {name} invalide (texte de {limit} caractères au plus)."
        )
    return value or None


def _with_access_context(principal: Principal, request: Request) -> Principal:
    mode = _header(request, MODE_HEADER, 32) or principal.access_mode
    if mode not in ACCESS_MODES:
        raise FHIRError(
            400,
            "invalid",
            f"Mode d'accès inconnu « {mode} » (attendu : {', '.join(ACCESS_MODES)}).",
        )
    purpose = _header(request, PURPOSE_HEADER, 32) or "care"
    if purpose not in PURPOSES:
        raise FHIRError(
            400, "invalid", f"Finalité inconnue « {purpose} » (attendu : {', '.join(PURPOSES)})."
        )
    secret = _header(request, SECRET_HEADER, 8)
    if secret not in (None, "true", "false"):
        raise FHIRError(400, "invalid", f"En-tête {SECRET_HEADER} : true ou false.")
    return dataclasses.replace(
        principal,
        access_mode=mode,  # type: ignore[arg-type]
        justification=_header(request, JUSTIFICATION_HEADER),
        call_id=_header(request, CALL_HEADER, 64),
        purpose=purpose,  # type: ignore[arg-type]
        minor_secret=secret == "true",
    )
