"""A real FHIR client (fhirpy) against parcours served over real HTTP by uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from fhirpy import SyncFHIRClient

from parcours.app import create_app
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.auth.tokens import RemoteJwks, TokenVerifier
from parcours.config import Settings
from parcours.storage.db import Database
from tests.scenario import DUPONT, MARTIN, load_scenario


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db: Database, settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    port = _free_port()
    live = replace(settings, base_url=f"http://127.0.0.1:{port}")
    load_scenario(db, tmp_path)
    config = uvicorn.Config(create_app(live, db), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    yield live
    srv.should_exit = True
    thread.join(5)


def _token(settings: Settings) -> str:
    return mint_token(
        keys.load_or_create(settings.keys_dir),
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject="8" + DUPONT,
        claims={"actor": "professional", "idnat_ps": "8" + DUPONT},
        ttl_seconds=600,
    )


def test_fhirpy_searches_pages_and_reads(server: Settings) -> None:
    client = SyncFHIRClient(f"{server.base_url}/fhir", authorization=f"Bearer {_token(server)}")
    found = client.resources("Practitioner").search(name="dupont").fetch()
    assert [p["id"] for p in found] == ["8" + DUPONT]
    # fetch_all follows the Bundle's next links page by page.
    roles = client.resources("PractitionerRole").limit(1).fetch_all()
    assert len(roles) == 4
    ch_roles = (
        client.resources("PractitionerRole")
        .search(role="60")
        .include("PractitionerRole", "organization")
        .fetch_raw()
    )
    assert {e["search"]["mode"] for e in ch_roles["entry"]} == {"match", "include"}
    martin = client.reference("Practitioner", "8" + MARTIN).to_resource()
    assert martin["name"][0]["family"] == "Martin"
    assert client.resources("Practitioner").search(name="dupont").count() == 1


def test_remote_jwks_discovery_over_http(server: Settings) -> None:
    """The verifier fetches the issuer's discovery document and JWKS like it would PSC's."""
    verifier = TokenVerifier(
        {server.dev_issuer: RemoteJwks(server.dev_issuer)}, audience=server.audience
    )
    principal = verifier.verify(_token(server))
    assert principal.kind == "professional" and principal.idnat_ps == "8" + DUPONT
    discovery = httpx.get(f"{server.dev_issuer}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == server.dev_issuer
    assert discovery["jwks_uri"] == f"{server.dev_issuer}/jwks"


def test_health(server: Settings) -> None:
    body = httpx.get(f"{server.base_url}/health").json()
    assert body["status"] == "ok"
