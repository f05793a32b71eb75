"""A real FHIR client (fhirpy) drives the DMP over real HTTP (uvicorn): publish → search →
retrieve → replace → search, on SQLite and PostgreSQL (issue 4, conformance section)."""

from __future__ import annotations

import httpx
from fhirpy import SyncFHIRClient

from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.config import Settings
from parcours.dossier.samples import INS_NIR, PATIENT_INS, cda, provide_bundle
from tests.dossier.conftest import CHANNEL_EXT
from tests.scenario import DUPONT


def _token(settings: Settings, claims: dict[str, str], subject: str) -> str:
    return mint_token(
        keys.load_or_create(settings.keys_dir),
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject=subject,
        claims=claims,
        ttl_seconds=600,
    )


def test_publish_search_retrieve_replace(server: Settings) -> None:
    pro = _token(
        server,
        {"actor": "professional", "idnat_ps": "8" + DUPONT, "profession": "10"},
        "8" + DUPONT,
    )
    client = SyncFHIRClient(f"{server.base_url}/fhir", authorization=f"Bearer {pro}")
    patient = client.resource(
        "Patient",
        identifier=[{"system": INS_NIR, "value": PATIENT_INS}],
        name=[{"family": "Lefèvre", "given": ["Anne"]}],
        gender="female",
        birthDate="1984-12-03",
    )
    patient.save()
    consent = client.resource(
        "Consent",
        status="active",
        patient={"reference": f"Patient/{patient.id}"},
        extension=[{"url": CHANNEL_EXT, "valueCode": "professionnel"}],
    )
    consent.save()
    assert client.reference("Patient", patient.id).to_resource()["active"] is True

    subject = f"Patient/{patient.id}"
    first = client.execute(
        "",
        method="post",
        data=provide_bundle(
            subject=subject, author_idnps="8" + DUPONT, documents=[(cda("Première version."), {})]
        ),
    )
    assert first["type"] == "transaction-response"
    old_id = first["entry"][1]["response"]["location"].split("/")[1]

    found = (
        client.resources("DocumentReference")
        .search(**{"patient.identifier": f"{INS_NIR}|{PATIENT_INS}"}, status="current")
        .fetch_all()
    )
    assert [d.id for d in found] == [old_id]
    url = found[0]["content"][0]["attachment"]["url"]
    raw = httpx.get(url, headers={"Authorization": f"Bearer {pro}"})
    assert raw.status_code == 200 and b"Premi" in raw.content

    replacement = provide_bundle(
        subject=subject,
        author_idnps="8" + DUPONT,
        documents=[(cda("Version corrigée."), {"replaces": old_id})],
        patches=[old_id],
    )
    second = client.execute("", method="post", data=replacement)
    new_id = second["entry"][1]["response"]["location"].split("/")[1]
    current = (
        client.resources("DocumentReference").search(patient=subject, status="current").fetch()
    )
    assert [d.id for d in current] == [new_id]
    old = client.reference("DocumentReference", old_id).to_resource()
    assert old["status"] == "superseded"
    assert (
        client.resources("DocumentReference").search(patient=subject, status="superseded").count()
        == 1
    )
