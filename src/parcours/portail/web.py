"""What every portal page shares: templates, the session cookie, CSRF, security headers, and
the principal of a page request.

Why server-rendered pages (Jinja2, no front-end build): the users are patients on a phone and
professionals on hospital workstations; pages that work without JavaScript, load fast and are
served entirely by parcours (no CDN: the machine has no internet) meet them best, and keep one
path to the data: a page calls the same service function as the FHIR route, under the same
policy decision, traced by the same middleware.

The session is a signed cookie holding the access token the identity provider issued (the same
token an API client would send). Every page verifies it again with the API's verifier, so an
expired or revoked token ends the session exactly as it would refuse an API call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parcours.auth.principal import Principal
from parcours.auth.tokens import AuthenticationError

HERE = Path(__file__).parent
SESSION_COOKIE = "parcours_session"
LOGIN_COOKIE = "parcours_connexion"
SESSION_KEY_FILE = "portail-session.key"
LOGIN_TTL_SECONDS = 600

# CSP: nothing but this origin; no inline script or style, no framing (clickjacking), forms
# post only here. Pages work without JavaScript.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Health data: never kept by the browser's or a proxy's cache.
    (b"cache-control", b"no-store"),
]
_HEADER_PREFIXES = ("/portail", "/idp/authorize")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["static"] = lambda name: f"/portail/static/{name}"
    return templates


class SecurityHeaders:
    """Adds the portal's security headers to every portal response (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_HEADER_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


# --- signed cookies ----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    """HMAC-SHA256 over a JSON payload, key kept with the instance's other keys (0600)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> CookieSigner:
        path = keys_dir / SESSION_KEY_FILE
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def dumps(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        mac = hmac.new(self.key, body.encode("ascii"), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def loads(self, value: str | None) -> dict[str, Any] | None:
        if not value or "." not in value:
            return None
        body, _, mac = value.partition(".")
        expected = hmac.new(self.key, body.encode("ascii"), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(mac)):
                return None
            payload = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        if payload.get("exp", 0) < time.time():
            return None
        return payload


def cookie_options(request: Request, max_age: int) -> dict[str, Any]:
    """HttpOnly always; Secure when the instance is served over HTTPS; SameSite=Lax so that
    the identity provider's redirect back (a top-level GET) carries the login cookie, while
    every state-changing form also needs the CSRF token."""
    secure = request.app.state.settings.base_url.startswith("https://")
    return {"httponly": True, "secure": secure, "samesite": "lax", "path": "/", "max_age": max_age}


# --- the session of a page request -------------------------------------------------------


class LoginRequired(Exception):
    """No valid session: the page sends the user to log in (``profile``: patient or ps)."""

    def __init__(self, profile: str, reason: str = "") -> None:
        super().__init__(reason)
        self.profile = profile
        self.reason = reason


class CsrfRefused(Exception):
    """A form posted without the session's CSRF token (or with a stale one)."""


@dataclass(frozen=True)
class PageSession:
    principal: Principal
    csrf: str
    name: str
    payload: dict[str, Any]


def page_session(request: Request, profile: str) -> PageSession:
    """The signed-in user of a portal page, verified like an API caller (same verifier), and
    recorded on the request for the access trace."""
    payload = request.app.state.cookie_signer.loads(request.cookies.get(SESSION_COOKIE))
    if payload is None:
        raise LoginRequired(profile)
    try:
        principal = request.app.state.verifier.verify(payload["token"])
    except AuthenticationError as exc:
        raise LoginRequired(profile, str(exc)) from None
    expected = {"patient": ("patient",), "ps": ("professional",), "agent": ("agent",)}
    # The desk (profile "agent") also serves pharmacists, who open records at the counter.
    allowed = expected[profile] + (("professional",) if profile == "agent" else ())
    if principal.kind not in allowed:
        raise LoginRequired(profile, "Cet espace demande une autre connexion.")
    request.state.principal = principal
    return PageSession(principal, str(payload["csrf"]), str(payload.get("name") or ""), payload)


def save_session(response: Any, request: Request, payload: dict[str, Any]) -> None:
    """Write the session back (same expiry) after the page changed what it carries."""
    max_age = max(0, int(payload.get("exp", 0) - time.time()))
    response.set_cookie(
        SESSION_COOKIE,
        request.app.state.cookie_signer.dumps(payload),
        **cookie_options(request, max_age),
    )


async def checked_upload(request: Request, session: PageSession, max_bytes: int) -> Any:
    """A multipart form with a file: the declared size is checked before anything is read
    (413 page), then the CSRF token; returns the parsed form (files as UploadFile)."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > max_bytes + 65536:
        raise TooLarge(max_bytes)
    form = await request.form(max_part_size=max_bytes + 1)
    if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise CsrfRefused()
    return form


class TooLarge(Exception):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.max_bytes = max_bytes


async def checked_form(request: Request, session: PageSession) -> dict[str, str]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
        raise CsrfRefused()
    return form


# --- errors as pages ---------------------------------------------------------------------

ERROR_TITLES = {
    400: "Demande incomplète ou incorrecte",
    403: "Accès refusé",
    404: "Page ou document introuvable",
    410: "Document retiré",
    413: "Fichier trop volumineux",
}


def is_portal(request: Request) -> bool:
    return request.url.path.startswith("/portail")


def error_page(request: Request, status: int, detail: str) -> Any:
    """A refusal in sentences: what happened, the service's own reason, what to do next."""
    title = ERROR_TITLES.get(status, "Le service n'a pas pu répondre")
    if status >= 500:
        detail = "Une erreur interne est survenue. Réessayez plus tard ; si elle persiste, "
        detail += "signalez-la à votre caisse ou à l'assistance."
    return request.app.state.templates.TemplateResponse(
        request,
        "erreur.html",
        {"title": title, "message": detail, "status": status},
        status_code=status,
    )
