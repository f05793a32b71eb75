"""A DMP on top of the scenario directory: tokens for each actor, a patient with a record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from parcours.app import create_app
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.config import Settings
from parcours.dossier import records
from parcours.dossier.samples import INS_NIR, PATIENT_INS, provide_bundle
from parcours.dossier.store import DocumentStore, open_store
from parcours.storage.db import Database
from tests.scenario import DUPONT, MARTIN, load_scenario

CHANNEL_EXT = records.EXT_CHANNEL


@dataclass
class Dmp:
    client: TestClient
    db: Database
    settings: Settings
    store: DocumentStore
    tokens: dict[str, str] = field(default_factory=dict)
    patient_id: str = ""

    def call(self, method: str, url: str, who: str = "dupont", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kw)

    def publish(self, bundle: dict[str, Any], who: str = "dupont") -> httpx.Response:
        return self.call("POST", "/fhir", who, json=bundle)

    def publish_one(self, **overrides: Any) -> str:
        data = overrides.pop("data", None)
        docs = [(data, overrides)] if data is not None else None
        bundle = provide_bundle(
            subject=f"Patient/{self.patient_id}", author_idnps="8" + DUPONT, documents=docs
        )
        response = self.publish(bundle)
        assert response.status_code == 200, response.text
        return response.json()["entry"][1]["response"]["location"].split("/")[1]

    def counts(self) -> tuple[int, int, int]:
        """(document rows, submission rows, blobs): what an atomic failure must leave equal."""
        from sqlalchemy import func, select

        from parcours.dossier.models import Document, Submission

        with self.db.session() as session:
            docs = session.execute(select(func.count()).select_from(Document)).scalar_one()
            subs = session.execute(select(func.count()).select_from(Submission)).scalar_one()
        return docs, subs, len(self.store.blobs.keys())


def _token(settings: Settings, subject: str, claims: dict[str, Any]) -> str:
    key = keys.load_or_create(settings.keys_dir)
    return mint_token(
        key,
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject=subject,
        claims=claims,
        ttl_seconds=600,
    )


def open_record(dmp: Dmp, ins: str = PATIENT_INS, who: str = "agent") -> str:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR, "value": ins}],
        "name": [{"family": "Lefèvre", "given": ["Anne"]}],
        "gender": "female",
        "birthDate": "1984-12-03",
    }
    created = dmp.call("POST", "/fhir/Patient", who, json=patient)
    assert created.status_code in (200, 201), created.text
    pid = created.json()["id"]
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "extension": [
            {"url": CHANNEL_EXT, "valueCode": "guichet-cpam" if who == "agent" else "professionnel"}
        ],
    }
    response = dmp.call("POST", "/fhir/Consent", who, json=consent)
    assert response.status_code == 201, response.text
    return pid


@pytest.fixture
def dmp(db: Database, settings: Settings, tmp_path: Path) -> Dmp:
    load_scenario(db, tmp_path)
    store = open_store(settings)
    app = create_app(settings, db, store)
    result = Dmp(TestClient(app), db, settings, store)
    result.tokens = {
        "dupont": _token(
            settings,
            "8" + DUPONT,
            {
                "actor": "professional",
                "idnat_ps": "8" + DUPONT,
                "profession": "10",
                "structure": "1350000014",
            },
        ),
        "martin": _token(
            settings,
            "8" + MARTIN,
            {"actor": "professional", "idnat_ps": "8" + MARTIN, "profession": "10"},
        ),
        "patient": _token(settings, "patient", {"actor": "patient", "ins": PATIENT_INS}),
        "agent": _token(settings, "CPAM35-A001", {"actor": "agent", "agent_id": "CPAM35-A001"}),
    }
    result.patient_id = open_record(result)
    # The patient's choices that give the two professionals a basis (dmp-access.md R10, R12):
    # Dr Dupont is his médecin traitant, Dr Martin holds his authorisation.
    grant_access(result, "designate-mt", "8" + DUPONT)
    grant_access(result, "grant", "8" + MARTIN)
    return result


def grant_access(dmp: Dmp, action: str, idnps: str, pid: str | None = None) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": action},
            {"name": "target", "valueString": idnps},
        ],
    }
    response = dmp.call(
        "POST", f"/fhir/Patient/{pid or dmp.patient_id}/$dmp-droits", "patient", json=body
    )
    assert response.status_code == 200, response.text
