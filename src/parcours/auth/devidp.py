"""The built-in development identity provider (``PARCOURS_ENV=development`` only).

It publishes a real OIDC discovery document and JWKS, so the rest of the platform verifies its
tokens through the same path as Pro Santé Connect's or FranceConnect's: swapping the issuer is a
configuration change, not a code change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from parcours.auth.keys import ALGORITHM, SigningKey

# The one client the development IdP knows: the portal of this instance (registered redirect
# URI = <base_url>/portail/retour), as a real deployment registers it with FranceConnect / PSC.
PORTAL_CLIENT_ID = "parcours-portail"
PORTAL_CALLBACK = "/portail/retour"
CODE_TTL_SECONDS = 60


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


class UnknownIdentity(ValueError):
    """The identifier is malformed or names nobody the directory knows (message in French)."""


def identity_claims(
    session: Session | None,
    *,
    rpps: str | None = None,
    ins: str | None = None,
    agent: str | None = None,
    structure: str | None = None,
) -> dict[str, Any]:
    """The claims the development IdP asserts for one identity: a professional of the
    Annuaire (by RPPS), a patient (by INS, key checked) or a CPAM agent. One function for the
    ``parcours token`` command and the login page, so both assert the same things."""
    from parcours.identity import INS, RPPS, IdentifierError

    if rpps is not None:
        from parcours.annuaire import directory

        try:
            value = RPPS.parse(rpps)
        except IdentifierError as exc:
            raise UnknownIdentity(str(exc)) from None
        assert session is not None
        professional = directory.find_professional(session, "8" + str(value))
        if professional is None:
            raise UnknownIdentity(f"professionnel RPPS {value} inconnu de l'annuaire (ou inactif).")
        return {
            "sub": professional.idnat_ps,
            "actor": "professional",
            "idnat_ps": professional.idnat_ps,
            "profession": professional.profession_code,
            "structure": structure or professional.structure,
            "name": professional.display_name,
            "acr": "eidas1",
        }
    if ins is not None:
        try:
            value_ins = INS.parse(ins)
        except IdentifierError as exc:
            raise UnknownIdentity(str(exc)) from None
        return {"sub": str(value_ins), "actor": "patient", "ins": str(value_ins), "acr": "eidas1"}
    agent = (agent or "").strip()
    if not agent or not agent.replace("-", "").isalnum() or len(agent) > 64:
        raise UnknownIdentity(
            f"identifiant d'agent invalide « {agent} » (lettres, chiffres et tirets)."
        )
    return {"sub": agent, "actor": "agent", "agent_id": agent, "structure": structure}


def _access_code_ok(session: Session, ins: str, code: str) -> bool:
    """A patient whose record was opened at a desk holds an access code (the letter handed
    to him): it is required and checked. Without one, the development IdP stands for
    FranceConnect, which would have authenticated him, and asks for nothing more."""
    from parcours.dossier.creation import check_code

    return check_code(session, ins, code) is not False


@dataclass
class _Grant:
    claims: dict[str, Any]
    redirect_uri: str
    challenge: str
    nonce: str
    expires: float


class CodeStore:
    """Authorization codes: single use, short-lived, bound to the redirect URI and the PKCE
    challenge (RFC 7636 S256). In memory: the development IdP runs in one process."""

    def __init__(self) -> None:
        self._codes: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def issue(self, grant: _Grant) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._codes = {k: g for k, g in self._codes.items() if g.expires > now}
            self._codes[code] = grant
        return code

    def redeem(self, code: str) -> _Grant | None:
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant.expires < time.time():
            return None
        return grant


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_PROFILES = {
    "patient": ("Patient", "Identifiant national de santé (INS, 15 caractères)", "ins"),
    "ps": ("Professionnel de santé", "Numéro RPPS (11 chiffres)", "rpps"),
    "agent": ("Agent de l'Assurance Maladie", "Identifiant d'agent", "agent"),
}


def router() -> APIRouter:
    api = APIRouter(prefix="/idp", tags=["identity provider (development)"])
    codes = CodeStore()

    def authorize_params(request: Request, values: dict[str, str]) -> dict[str, str]:
        """The request of a registered client, or UnknownIdentity with the reason."""
        base = request.app.state.settings.base_url.rstrip("/")
        if values.get("client_id") != PORTAL_CLIENT_ID:
            raise UnknownIdentity("Application cliente inconnue.")
        if values.get("redirect_uri") != base + PORTAL_CALLBACK:
            raise UnknownIdentity("Adresse de retour non enregistrée pour cette application.")
        if values.get("response_type") != "code":
            raise UnknownIdentity("Seul le flux « authorization code » est pris en charge.")
        if values.get("code_challenge_method") != "S256" or not values.get("code_challenge"):
            raise UnknownIdentity("PKCE (S256) obligatoire.")
        if values.get("profil") not in _PROFILES:
            raise UnknownIdentity("Profil inconnu : patient, ps ou agent.")
        keep = ("client_id", "redirect_uri", "response_type", "state", "nonce")
        return {
            **{k: values.get(k, "") for k in keep},
            "code_challenge": values["code_challenge"],
            "code_challenge_method": "S256",
            "profil": values["profil"],
        }

    def login_page(
        request: Request, params: dict[str, str], error: str = "", typed: str = ""
    ) -> HTMLResponse:
        title, label, _ = _PROFILES[params["profil"]]
        return request.app.state.templates.TemplateResponse(
            request,
            "idp/login.html",
            {"params": params, "title": title, "label": label, "error": error, "typed": typed},
            status_code=400 if error else 200,
        )

    @api.get("/authorize", include_in_schema=False)
    def authorize(request: Request) -> Response:
        try:
            params = authorize_params(request, dict(request.query_params))
        except UnknownIdentity as exc:
            return request.app.state.templates.TemplateResponse(
                request, "idp/error.html", {"message": str(exc)}, status_code=400
            )
        return login_page(request, params)

    @api.post("/authorize", include_in_schema=False)
    async def authorize_submit(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            params = authorize_params(request, form)
        except UnknownIdentity as exc:
            return request.app.state.templates.TemplateResponse(
                request, "idp/error.html", {"message": str(exc)}, status_code=400
            )
        typed = form.get("identifiant", "").strip()
        kind = _PROFILES[params["profil"]][2]
        try:
            with request.app.state.db.session() as session:
                claims = identity_claims(session, **{kind: typed.replace(" ", "")})
                # Committed with the session even when refused: failures are counted.
                refused = kind == "ins" and not _access_code_ok(
                    session, claims["ins"], form.get("code", "")
                )
            if refused:
                raise UnknownIdentity(
                    "Code d'accès incorrect, expiré ou bloqué après plusieurs erreurs. "
                    "Un nouveau code peut vous être remis à l'accueil de votre caisse."
                )
        except UnknownIdentity as exc:
            return login_page(request, params, error=str(exc), typed=typed)
        code = codes.issue(
            _Grant(
                claims=claims,
                redirect_uri=params["redirect_uri"],
                challenge=params["code_challenge"],
                nonce=params["nonce"],
                expires=time.time() + CODE_TTL_SECONDS,
            )
        )
        query = urlencode({"code": code, "state": params["state"]})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)

    @api.post("/token", include_in_schema=False)
    async def token(request: Request) -> JSONResponse:
        """RFC 6749 §4.1.3 token request (client authenticated by PKCE, a public client)."""
        form = {k: str(v) for k, v in (await request.form()).items()}

        def refuse(error: str, description: str) -> JSONResponse:
            return JSONResponse(
                {"error": error, "error_description": description},
                status_code=400,
                headers={"Cache-Control": "no-store"},
            )

        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type", "grant_type=authorization_code attendu.")
        if form.get("client_id") != PORTAL_CLIENT_ID:
            return refuse("invalid_client", "Application cliente inconnue.")
        grant = codes.redeem(form.get("code", ""))
        if grant is None:
            return refuse("invalid_grant", "Code inconnu, déjà utilisé ou expiré.")
        if form.get("redirect_uri") != grant.redirect_uri:
            return refuse("invalid_grant", "redirect_uri différente de celle de la demande.")
        verifier = form.get("code_verifier", "")
        if not hmac.compare_digest(pkce_challenge(verifier), grant.challenge):
            return refuse("invalid_grant", "code_verifier ne correspond pas (PKCE).")
        settings = request.app.state.settings
        key: SigningKey = request.app.state.dev_key
        claims = dict(grant.claims)
        subject = str(claims.pop("sub"))
        ttl = settings.token_ttl_seconds
        access = mint_token(
            key,
            issuer=settings.dev_issuer,
            audience=settings.audience,
            subject=subject,
            claims=claims,
            ttl_seconds=ttl,
        )
        id_token = mint_token(
            key,
            issuer=settings.dev_issuer,
            audience=PORTAL_CLIENT_ID,
            subject=subject,
            claims={"nonce": grant.nonce, "name": claims.get("name")},
            ttl_seconds=ttl,
        )
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": ttl,
                "id_token": id_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    @api.get("/.well-known/openid-configuration")
    def discovery(request: Request) -> JSONResponse:
        issuer = request.app.state.settings.dev_issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "jwks_uri": issuer + "/jwks",
                "authorization_endpoint": issuer + "/authorize",
                "token_endpoint": issuer + "/token",
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "grant_types_supported": ["authorization_code"],
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
