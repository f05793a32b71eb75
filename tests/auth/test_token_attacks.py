"""Token attacks against the real HTTP stack: each must end in 401 + OperationOutcome."""

from __future__ import annotations

import base64
import json
import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from parcours.app import create_app
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.config import Settings
from parcours.storage.db import Database

SEARCH = "/fhir/Practitioner?name=martin"


@pytest.fixture
def client(settings: Settings, db: Database) -> TestClient:
    return TestClient(create_app(settings, db))


@pytest.fixture
def dev_key(settings: Settings) -> keys.SigningKey:
    return keys.load_or_create(settings.keys_dir)


def _claims(**extra: object) -> dict[str, object]:
    return {"actor": "professional", "idnat_ps": "810000000001", **extra}


def good_token(settings: Settings, key: keys.SigningKey, **overrides: object) -> str:
    params: dict[str, object] = {
        "issuer": settings.dev_issuer,
        "audience": settings.audience,
        "subject": "810000000001",
        "claims": _claims(),
        "ttl_seconds": 600,
    }
    params.update(overrides)
    return mint_token(key, **params)  # type: ignore[arg-type]


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _assert_refused(response, fragment: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["www-authenticate"].startswith('Bearer realm="parcours"')
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    if fragment:
        assert fragment in body["issue"][0]["diagnostics"]


def test_valid_token_is_accepted(
    client: TestClient, settings: Settings, dev_key: keys.SigningKey
) -> None:
    response = client.get(
        SEARCH, headers={"Authorization": f"Bearer {good_token(settings, dev_key)}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "searchset"


def test_missing_token(client: TestClient) -> None:
    _assert_refused(client.get(SEARCH), "absent")


def test_wrong_scheme(client: TestClient) -> None:
    _assert_refused(client.get(SEARCH, headers={"Authorization": "Basic dXNlcjpwYXNz"}), "Bearer")


def test_garbage_token(client: TestClient) -> None:
    _assert_refused(client.get(SEARCH, headers={"Authorization": "Bearer not-a-jwt"}), "mal formé")


def test_alg_none(client: TestClient, settings: Settings) -> None:
    now = int(time.time())
    payload = {
        "iss": settings.dev_issuer,
        "aud": settings.audience,
        "sub": "x",
        "iat": now,
        "exp": now + 600,
        **_claims(),
    }
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(payload)}."
        _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "refusé")


def test_expired(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = good_token(settings, dev_key, now=time.time() - 7200, ttl_seconds=600)
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "expiré")


def test_not_yet_valid(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = good_token(settings, dev_key, now=time.time() + 3600)
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "pas encore")


def test_wrong_audience(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = good_token(settings, dev_key, audience="another-api")
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "audience")


def test_wrong_issuer(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = good_token(settings, dev_key, issuer="https://evil.example/idp")
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "non reconnu")


def test_forged_signature_other_key_same_kid(
    client: TestClient, settings: Settings, dev_key: keys.SigningKey
) -> None:
    attacker = keys.SigningKey(ec.generate_private_key(ec.SECP256R1()), dev_key.kid)
    token = good_token(settings, attacker)
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "Signature")


def test_tampered_payload(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    header, payload, signature = good_token(settings, dev_key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["idnat_ps"] = "810000000099"
    token = f"{header}.{_b64(claims)}.{signature}"
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "Signature")


def test_key_confusion_hs256_with_public_key(
    client: TestClient, settings: Settings, dev_key: keys.SigningKey
) -> None:
    public_pem = dev_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    payload = {
        "iss": settings.dev_issuer,
        "aud": settings.audience,
        "sub": "x",
        "iat": now,
        "exp": now + 600,
        **_claims(),
    }
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": dev_key.kid})
    body = _b64(payload)
    import hashlib
    import hmac

    sig = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "HS256")


def test_unknown_kid(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = jwt.encode(
        {
            "iss": settings.dev_issuer,
            "aud": settings.audience,
            "sub": "x",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
            **_claims(),
        },
        dev_key.private_pem,
        algorithm="ES256",
        headers={"kid": "no-such-key"},
    )
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "inconnue")


def test_missing_exp(client: TestClient, settings: Settings, dev_key: keys.SigningKey) -> None:
    token = jwt.encode(
        {
            "iss": settings.dev_issuer,
            "aud": settings.audience,
            "sub": "x",
            "iat": int(time.time()),
            **_claims(),
        },
        dev_key.private_pem,
        algorithm="ES256",
        headers={"kid": dev_key.kid},
    )
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "exp")


def test_professional_token_without_idnat(
    client: TestClient, settings: Settings, dev_key: keys.SigningKey
) -> None:
    token = good_token(settings, dev_key, claims={"actor": "professional"})
    _assert_refused(client.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "IDNPS")


def test_dev_issuer_not_trusted_in_production(
    settings: Settings, db: Database, dev_key: keys.SigningKey
) -> None:
    from dataclasses import replace

    production = TestClient(create_app(replace(settings, env="production"), db))
    token = good_token(settings, dev_key)
    _assert_refused(
        production.get(SEARCH, headers={"Authorization": f"Bearer {token}"}), "non reconnu"
    )
    assert production.get("/idp/jwks").status_code == 404


def test_tokens_never_reach_logs(
    client: TestClient,
    settings: Settings,
    dev_key: keys.SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from parcours.logs import RedactSecrets

    token = good_token(settings, dev_key)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    caplog.handler.addFilter(RedactSecrets())
    with caplog.at_level(logging.DEBUG):
        client.get(SEARCH + f"&access_token={token}", headers={"Authorization": f"Bearer {forged}"})
        client.get(SEARCH, headers={"Authorization": f"Bearer {token}"})
        logging.getLogger("parcours.test").warning("header was Bearer %s", token)
    text = caplog.text
    assert token not in text and forged not in text
    assert token.split(".")[1] not in text
