"""Portal login: OpenID Connect authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636).

The portal is an ordinary OIDC client of the identity provider (the development IdP here;
FranceConnect for patients and Pro Santé Connect for professionals in a deployment, a
configuration change: ``PARCOURS_PORTAL_ISSUER``). The access token it receives is the same
kind of token an API client sends, checked by the same verifier on every page.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from parcours.auth.devidp import PORTAL_CALLBACK, PORTAL_CLIENT_ID, pkce_challenge
from parcours.auth.tokens import AuthenticationError
from parcours.portail.web import (
    LOGIN_COOKIE,
    LOGIN_TTL_SECONDS,
    SESSION_COOKIE,
    checked_form,
    cookie_options,
    page_session,
)

HOME = {"patient": "/portail/patient", "ps": "/portail/ps", "agent": "/portail/guichet"}
KINDS = {"patient": "patient", "ps": "professional", "agent": "agent"}


class LoginFailed(Exception):
    """The login could not complete; the message is shown to the user as is (French)."""


def _issuer(request: Request) -> str:
    settings = request.app.state.settings
    issuer = settings.portal_issuer or (settings.dev_issuer if settings.is_development else "")
    if not issuer:
        raise LoginFailed(
            "La connexion au portail n'est pas configurée sur cette instance "
            "(PARCOURS_PORTAL_ISSUER)."
        )
    return issuer.rstrip("/")


def _discovery(request: Request, issuer: str) -> dict[str, Any]:
    cache: dict[str, dict[str, Any]] = request.app.state.oidc_discovery
    if issuer not in cache:
        try:
            response = httpx.get(issuer + "/.well-known/openid-configuration", timeout=10)
            response.raise_for_status()
            cache[issuer] = response.json()
        except (httpx.HTTPError, ValueError):
            raise LoginFailed(
                "Le service d'identification ne répond pas. Réessayez dans quelques minutes."
            ) from None
    return cache[issuer]


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def router() -> APIRouter:
    pages = APIRouter(prefix="/portail", include_in_schema=False)

    @pages.get("/")
    def home(request: Request) -> Response:
        return _render(request, "accueil.html", {"expired": "expiree" in request.query_params})

    @pages.get("/connexion")
    def login(request: Request, profil: str = "patient") -> Response:
        if profil not in HOME:
            return _render(request, "erreur.html", {"message": "Profil inconnu."}, 400)
        try:
            issuer = _issuer(request)
            endpoint = _discovery(request, issuer)["authorization_endpoint"]
        except LoginFailed as exc:
            return _render(request, "erreur.html", {"message": str(exc)}, 503)
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        base = request.app.state.settings.base_url.rstrip("/")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": PORTAL_CLIENT_ID,
                "redirect_uri": base + PORTAL_CALLBACK,
                "scope": "openid",
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
                "profil": profil,
            }
        )
        response = RedirectResponse(f"{endpoint}?{query}", status_code=303)
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "profil": profil,
            "exp": time.time() + LOGIN_TTL_SECONDS,
        }
        response.set_cookie(
            LOGIN_COOKIE,
            request.app.state.cookie_signer.dumps(pending),
            **cookie_options(request, LOGIN_TTL_SECONDS),
        )
        return response

    @pages.get("/retour")
    def callback(request: Request) -> Response:
        pending = request.app.state.cookie_signer.loads(request.cookies.get(LOGIN_COOKIE))
        try:
            if pending is None:
                raise LoginFailed("La demande de connexion a expiré. Recommencez.")
            if request.query_params.get("error"):
                raise LoginFailed("Le service d'identification a refusé la connexion.")
            if not secrets.compare_digest(request.query_params.get("state", ""), pending["state"]):
                raise LoginFailed("Réponse de connexion inattendue (state). Recommencez.")
            token, name = _exchange(request, pending)
        except LoginFailed as exc:
            response = _render(request, "erreur.html", {"message": str(exc)}, 400)
            response.delete_cookie(LOGIN_COOKIE, path="/")
            return response
        settings = request.app.state.settings
        session = {
            "token": token,
            "csrf": secrets.token_urlsafe(24),
            "name": name,
            "exp": time.time() + settings.token_ttl_seconds,
        }
        response = RedirectResponse(HOME[pending["profil"]], status_code=303)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        response.set_cookie(
            SESSION_COOKIE,
            request.app.state.cookie_signer.dumps(session),
            **cookie_options(request, settings.token_ttl_seconds),
        )
        return response

    @pages.post("/deconnexion")
    async def logout(request: Request) -> Response:
        profile = request.query_params.get("profil", "patient")
        profile = profile if profile in HOME else "patient"
        session = page_session(request, profile)
        await checked_form(request, session)
        response = RedirectResponse("/portail/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return pages


def _exchange(request: Request, pending: dict[str, Any]) -> tuple[str, str]:
    """Code → tokens at the token endpoint; the access token is checked by the API's verifier
    and the ID token's nonce by its issuer's keys (OIDC Core §3.1.3.7)."""
    issuer = _issuer(request)
    endpoint = _discovery(request, issuer)["token_endpoint"]
    base = request.app.state.settings.base_url.rstrip("/")
    try:
        response = httpx.post(
            endpoint,
            data={
                "grant_type": "authorization_code",
                "code": request.query_params.get("code", ""),
                "redirect_uri": base + PORTAL_CALLBACK,
                "client_id": PORTAL_CLIENT_ID,
                "code_verifier": pending["verifier"],
            },
            timeout=10,
        )
    except httpx.HTTPError:
        raise LoginFailed("Le service d'identification ne répond pas.") from None
    if response.status_code != 200:
        raise LoginFailed("La connexion a été refusée (code expiré ou déjà utilisé). Recommencez.")
    body = response.json()
    verifier = request.app.state.verifier
    try:
        principal = verifier.verify(body["access_token"])
        header = jwt.get_unverified_header(body["id_token"])
        key = verifier.issuers[issuer].key_for(header.get("kid"), header.get("alg"))
        id_claims = jwt.decode(
            body["id_token"],
            key=key,
            algorithms=[header.get("alg")],
            audience=PORTAL_CLIENT_ID,
            issuer=issuer,
        )
    except (KeyError, AuthenticationError, jwt.PyJWTError):
        raise LoginFailed("Jetons d'identification invalides. Recommencez.") from None
    if not secrets.compare_digest(str(id_claims.get("nonce", "")), pending["nonce"]):
        raise LoginFailed("Réponse de connexion rejouée ou altérée (nonce). Recommencez.")
    if principal.kind != KINDS[pending["profil"]]:
        raise LoginFailed("Cette identité ne correspond pas à l'espace demandé.")
    return body["access_token"], principal.name or id_claims.get("name") or ""
