"""The demo's records make issue #5's "done" visible: one record seen four ways (médecin
traitant, an authorised kiné under the habilitation matrix, an insurer's doctor, the patient),
and a bris de glace that reaches the patient's traces and inbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from parcours.app import create_app
from parcours.config import Settings
from parcours.demo.dmp import ensure_demo_records
from parcours.dossier.store import open_store
from parcours.notify.channels import InboxChannel
from parcours.notify.worker import run_once
from parcours.storage.db import Database
from tests.dossier.conftest import _token
from tests.scenario import DUPONT, MARTIN, load_scenario

KINE = "810000009992"
URGENTISTE = "810000008887"
MANIFEST: dict[str, Any] = {
    "demo_logins": [
        {"role": "medecin_generaliste", "idnat_ps": "8" + DUPONT},
        {"role": "masseur_kinesitherapeute", "idnat_ps": KINE},
        {"role": "medecin_hospitalier", "idnat_ps": "8" + MARTIN},
    ],
    "cpam_accueils": [{"agents": ["CPAM35-A001"]}],
}


def test_one_demo_record_four_ways_and_a_bris_de_glace(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    load_scenario(db, tmp_path)
    store = open_store(settings)
    patients = ensure_demo_records(db, store, MANIFEST, count=2)
    first = patients[0]
    client = TestClient(create_app(settings, db, store))

    def ps(idnps: str, profession: str, **extra: Any) -> str:
        claims = {"actor": "professional", "idnat_ps": idnps, "profession": profession}
        return _token(settings, idnps, {**claims, **extra})

    tokens = {
        "gp": ps("8" + DUPONT, "10"),
        "kine": ps(KINE, "70"),
        "insurer": _token(settings, "MUTUELLE-MC-1", {"actor": "insurer"}),
        "patient": _token(settings, first["ins"], {"actor": "patient", "ins": first["ins"]}),
        "urgentiste": ps(URGENTISTE, "10", name="Dr Urgence"),
    }

    def get(who: str, url: str, **headers: str) -> Any:
        return client.get(url, headers={"Authorization": f"Bearer {tokens[who]}", **headers})

    search = f"/fhir/DocumentReference?patient={first['id']}&status=current"

    def types(who: str) -> set[str]:
        response = get(who, search)
        assert response.status_code == 200, response.text
        return {e["resource"]["type"]["coding"][0]["code"] for e in response.json()["entry"]}

    everything = {"11488-4", "60591-5", "11502-2"}
    assert types("gp") == everything  # médecin traitant (R10)
    assert types("patient") == everything  # the holder (L1111-19)
    assert types("kine") == {"11488-4", "60591-5"}  # authorised, biology ✗ (R12, R20)
    refused = get("insurer", search)
    assert refused.status_code == 403 and "règle G3" in refused.text

    doc = get("gp", search).json()["entry"][0]["resource"]["id"]
    assert get("urgentiste", f"/fhir/DocumentReference/{doc}").status_code == 403
    urgent = get(
        "urgentiste",
        f"/fhir/DocumentReference/{doc}",
        **{"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "Patient inconscient"},
    )
    assert urgent.status_code == 200
    traces = get("patient", f"/fhir/AuditEvent?patient={first['id']}").json()["entry"]
    assert any("R17" in (t["resource"].get("outcomeDesc") or "") for t in traces)
    run_once(db, [InboxChannel()])
    inbox = get("patient", "/fhir/Communication").json()["entry"]
    assert any(m["resource"]["category"][0]["coding"][0]["code"] == "bris-de-glace" for m in inbox)
