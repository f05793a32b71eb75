"""The built-in development identity provider (``PARCOURS_ENV=development`` only).

It publishes a real OIDC discovery document and JWKS, so the rest of the platform verifies its
tokens through the same path as Pro Santé Connect's or FranceConnect's: swapping the issuer is a
configuration change, not a code change.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from parcours.auth.keys import ALGORITHM, SigningKey


def mint_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    claims: dict[str, Any],
    ttl_seconds: int,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    payload = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
        # The development IdP stands for Pro Santé Connect / the patient IdP at their usual
        # level (CPS or e-CPS, second factor); a weak login must say so with its own acr.
        "acr": "eidas1",
        **{k: v for k, v in claims.items() if v is not None},
    }
    return jwt.encode(payload, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})


def router() -> APIRouter:
    api = APIRouter(prefix="/idp", tags=["identity provider (development)"])

    @api.get("/.well-known/openid-configuration")
    def discovery(request: Request) -> JSONResponse:
        issuer = request.app.state.settings.dev_issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "jwks_uri": issuer + "/jwks",
                "id_token_signing_alg_values_supported": [ALGORITHM],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "claims_supported": [
                    "sub",
                    "actor",
                    "idnat_ps",
                    "profession",
                    "structure",
                    "ins",
                    "agent_id",
                    "acr",
                    "access_mode",
                    "name",
                ],
            }
        )

    @api.get("/jwks")
    def jwks(request: Request) -> JSONResponse:
        key: SigningKey = request.app.state.dev_key
        return JSONResponse({"keys": [key.public_jwk]})

    return api
