"""A real FHIR client (fhirpy) against parcours served over real HTTP by uvicorn."""

from __future__ import annotations

import httpx
from fhirpy import SyncFHIRClient

from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.auth.tokens import RemoteJwks, TokenVerifier
from parcours.config import Settings
from tests.scenario import DUPONT, MARTIN


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
