"""Bearer-token verification against trusted OpenID Connect issuers.

The order of checks is the defence: the algorithm is checked against an allow-list of
asymmetric algorithms *before* any key is looked up (so ``none`` and HS* with a public key as
secret can never verify), the issuer must be one we trust, the key comes from *that* issuer's
JWKS and must be of the family the algorithm needs, then PyJWT checks signature, audience,
expiry and not-before. A failure says why, in French, without echoing the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK

from parcours.auth.keys import SigningKey
from parcours.auth.principal import ACCESS_MODES, ACTOR_KINDS, ROLES, Principal

ALLOWED_ALGORITHMS = ("ES256", "ES384", "RS256", "PS256")
_KTY_FOR_ALG = {"ES": "EC", "RS": "RSA", "PS": "RSA"}


class AuthenticationError(Exception):
    """The token cannot be trusted; the message is safe to show the caller."""


class KeySource(Protocol):
    def key_for(self, kid: str | None, alg: str) -> PyJWK: ...


def _select(keys: list[dict[str, Any]], kid: str | None, alg: str) -> PyJWK:
    wanted_kty = _KTY_FOR_ALG[alg[:2]]
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    for jwk in candidates:
        if jwk.get("kty") != wanted_kty:
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
            continue
        return PyJWK(jwk, algorithm=alg)
    raise AuthenticationError(
        "Clé de signature inconnue de l'émetteur"
        + (f" (kid « {kid} »)" if kid else "")
        + f" pour l'algorithme {alg}."
    )


@dataclass
class StaticJwks:
    """Keys known in-process (the development IdP): no network round-trip to ourselves."""

    keys: list[dict[str, Any]]

    @classmethod
    def from_signing_key(cls, key: SigningKey) -> StaticJwks:
        return cls([key.public_jwk])

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        return _select(self.keys, kid, alg)


class RemoteJwks:
    """An issuer's JWKS fetched over HTTPS through its discovery document, cached.

    An unknown ``kid`` triggers one refresh (key rotation) but at most every
    ``min_refresh_seconds``, so forged kids cannot make us hammer the issuer.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        ttl_seconds: float = 3600,
        min_refresh_seconds: float = 30,
        client: httpx.Client | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.jwks_uri = jwks_uri
        self.ttl = ttl_seconds
        self.min_refresh = min_refresh_seconds
        self._client = client
        self._keys: list[dict[str, Any]] = []
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        return self._client or httpx.Client(timeout=5.0)

    def _refresh(self) -> None:
        client = self._http()
        try:
            if self.jwks_uri is None:
                conf = client.get(self.issuer + "/.well-known/openid-configuration")
                conf.raise_for_status()
                document = conf.json()
                if document.get("issuer", "").rstrip("/") != self.issuer:
                    raise AuthenticationError("Document de découverte OIDC incohérent.")
                self.jwks_uri = document["jwks_uri"]
            response = client.get(self.jwks_uri)
            response.raise_for_status()
            self._keys = list(response.json().get("keys", []))
            self._fetched_at = time.monotonic()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise AuthenticationError(
                f"Clés de l'émetteur {self.issuer} indisponibles ({type(exc).__name__})."
            ) from None
        finally:
            if self._client is None:
                client.close()

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > self.ttl:
                self._refresh()
            try:
                return _select(self._keys, kid, alg)
            except AuthenticationError:
                if age < self.min_refresh:
                    raise
                self._refresh()
                return _select(self._keys, kid, alg)


class TokenVerifier:
    def __init__(
        self,
        issuers: dict[str, KeySource],
        *,
        audience: str,
        leeway_seconds: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuers = {iss.rstrip("/"): src for iss, src in issuers.items()}
        self.audience = audience
        self.leeway = leeway_seconds
        self.clock = clock

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("Jeton mal formé (JWT illisible).") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthenticationError(
                f"Algorithme de signature « {alg} » refusé "
                f"(acceptés : {', '.join(ALLOWED_ALGORITHMS)})."
            )
        issuer = str(unverified.get("iss", "")).rstrip("/")
        source = self.issuers.get(issuer)
        if source is None:
            raise AuthenticationError(f"Émetteur de jeton non reconnu : « {issuer or '?'} ».")
        key = source.key_for(header.get("kid"), alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=unverified.get("iss"),
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Jeton expiré.") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("Jeton pas encore valide (nbf/iat dans le futur).") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                f"Jeton destiné à une autre audience (attendue : « {self.audience} »)."
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("Émetteur du jeton invalide.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"Revendication obligatoire absente : {exc.claim}.") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("Signature du jeton invalide.") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"Jeton refusé ({type(exc).__name__}).") from None
        return principal_from_claims(issuer, claims)


def principal_from_claims(issuer: str, claims: dict[str, Any]) -> Principal:
    """Map issuer claims to a Principal.

    Our development IdP emits ``actor`` plus ``idnat_ps``/``ins``/``agent_id``; Pro Santé Connect
    puts the IDNPS in ``SubjectNameID``, which is accepted as a professional identity too.
    """
    actor = claims.get("actor")
    idnat_ps = claims.get("idnat_ps") or claims.get("SubjectNameID")
    if actor is None and idnat_ps:
        actor = "professional"
    mode = claims.get("access_mode", "normal")
    if mode not in ACCESS_MODES:
        raise AuthenticationError(f"Mode d'accès inconnu dans le jeton : « {mode} ».")
    common = {
        "subject": str(claims["sub"]),
        "issuer": issuer,
        "token_id": claims.get("jti"),
        "auth_level": claims.get("acr"),
        "access_mode": mode,
        "name": claims.get("name"),
    }
    if actor == "professional":
        if not idnat_ps:
            raise AuthenticationError("Jeton professionnel sans identifiant national (IDNPS).")
        role = claims.get("role", "none")
        if role not in ROLES:
            raise AuthenticationError(f"Rôle inconnu dans le jeton : « {role} ».")
        return Principal(
            kind="professional",
            idnat_ps=str(idnat_ps),
            profession=claims.get("profession"),
            structure=claims.get("structure"),
            role=role,
            via_structure=claims.get("via_structure"),
            **common,
        )
    if actor == "patient":
        if not claims.get("ins"):
            raise AuthenticationError("Jeton patient sans INS.")
        return Principal(kind="patient", ins=str(claims["ins"]), **common)
    if actor == "legal_representative":
        if not claims.get("ins"):
            raise AuthenticationError("Jeton de représentant légal sans INS.")
        represents = claims.get("represents") or []
        if not isinstance(represents, list) or not all(isinstance(r, str) for r in represents):
            raise AuthenticationError("Revendication « represents » : liste d'INS attendue.")
        return Principal(
            kind="legal_representative",
            ins=str(claims["ins"]),
            represents=tuple(represents),
            **common,
        )
    if actor in ACTOR_KINDS and actor not in ("professional", "patient", "agent"):
        # Systems, structure certificates without an acting PS, and the accessors the law
        # forbids: they authenticate, and the access policy refuses what they may not do.
        return Principal(
            kind=actor,
            agent_id=str(claims["sub"]),
            structure=claims.get("structure"),
            **common,
        )
    if actor == "agent":
        if not claims.get("agent_id"):
            raise AuthenticationError("Jeton agent sans identifiant d'agent.")
        return Principal(
            kind="agent",
            agent_id=str(claims["agent_id"]),
            structure=claims.get("structure"),
            **common,
        )
    raise AuthenticationError("Type d'acteur absent ou inconnu dans le jeton.")
