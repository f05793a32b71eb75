"""FastAPI dependency resolving the caller; routes declare it, they never parse headers."""

from __future__ import annotations

from fastapi import Request

from parcours.auth.principal import Principal
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
    request.state.principal = principal
    return principal
