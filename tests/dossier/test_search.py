"""ITI-67 / ITI-66 search: reference dmp-pdsm.md §1.3, §1.4 and §8.3."""

from __future__ import annotations

from typing import Any

import pytest

from parcours.dossier.samples import PATIENT_INS, cda
from tests.dossier.conftest import Dmp

INS_PARAM = f"urn:oid:1.2.250.1.213.1.4.8|{PATIENT_INS}"
V3 = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
A07 = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
    "TRE-A07-StatutVisibiliteDocument"
)


@pytest.fixture
def corpus(dmp: Dmp) -> dict[str, str]:
    """Four documents with distinct metadata, published by Dr Dupont."""
    return {
        "cr": dmp.publish_one(
            data=cda("Insuffisance cardiaque décompensée, traitement adapté."),
            date="2024-03-10T09:00:00+01:00",
        ),
        "bio": dmp.publish_one(
            data=cda("Hémoglobine normale."),
            type_code="11502-2",
            title="Compte rendu de biologie",
            date="2025-01-15T08:00:00+01:00",
        ),
        "vsm": dmp.publish_one(
            data=cda("Volet de synthèse médicale."),
            type_code="60591-5",
            class_code="11",
            title="VSM",
            date="2025-06-01T08:00:00+02:00",
        ),
        "masque": dmp.publish_one(
            data=cda("Consultation de psychiatrie."),
            date="2025-07-01T08:00:00+02:00",
            security=[(V3, "R"), (A07, "MASQUE_PS")],
        ),
    }


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json()["entry"]}


def find(dmp: Dmp, query: str, who: str = "dupont") -> Any:
    return dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&{query}", who)


def test_patient_identifier_and_status(dmp: Dmp, corpus: dict[str, str]) -> None:
    by_ins = dmp.call(
        "GET", f"/fhir/DocumentReference?patient.identifier={INS_PARAM}&status=current"
    )
    assert ids(by_ins) == set(corpus.values())
    assert ids(find(dmp, "status=superseded")) == set()
    assert ids(find(dmp, "status=current,superseded")) == set(corpus.values())
    lenient = find(dmp, "status=http://hl7.org/fhir/document-reference-status|current")
    assert ids(lenient) == set(corpus.values())


def test_post_search_equals_get(dmp: Dmp, corpus: dict[str, str]) -> None:
    get = find(dmp, "status=current&type=http://loinc.org|11502-2")
    post = dmp.call(
        "POST",
        "/fhir/DocumentReference/_search",
        data={"patient": dmp.patient_id, "status": "current", "type": "http://loinc.org|11502-2"},
    )
    assert ids(get) == ids(post) == {corpus["bio"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=http://loinc.org|60591-5", {"vsm"}),
        ("type=11488-4", {"cr", "masque"}),
        ("category=11", {"vsm"}),
        ("category:not=11", {"cr", "bio", "masque"}),
        ("security-label=R", {"masque"}),
        ("security-label=MASQUE_PS", {"masque"}),
        ("security-label=N", {"cr", "bio", "vsm"}),
        ("date=ge2025-01-01", {"bio", "vsm", "masque"}),
        ("date=lt2025", {"cr"}),
        ("date=2025-06", {"vsm"}),
        ("period=2024-03-10", {"cr"}),
        ("period-start=ge2025-06-01", {"vsm", "masque"}),
        ("creation=2025-01-15", {"bio"}),
        ("author.family=dup", {"cr", "bio", "vsm", "masque"}),
        ("author.family=martin", set()),
        ("author.given=elise", {"cr", "bio", "vsm", "masque"}),
        ("facility=SA07", {"cr", "bio", "vsm", "masque"}),
        ("setting=AMBULATOIRE", {"cr", "bio", "vsm", "masque"}),
        ("format=urn:ihe:iti:xds:2017:mimeTypeSufficient", {"cr", "bio", "vsm", "masque"}),
        ("isArchived=false", {"cr", "bio", "vsm", "masque"}),
        ("isArchived=true", set()),
        ("space=synthese", {"vsm"}),
        ("space=analyses", {"bio"}),
        ("space=comptes-rendus", {"cr", "masque"}),
        ("_content=cardiaques", {"cr"}),
        ("_content=HEMOGLOBINE", {"bio"}),
        ("_content=insuffisance traitement", {"cr"}),
        ("_content=insuffisance hémoglobine", set()),
        ("_content=insuffisance,hémoglobine", {"cr", "bio"}),
    ],
)
def test_search_parameters(
    dmp: Dmp, corpus: dict[str, str], query: str, expected: set[str]
) -> None:
    assert ids(find(dmp, f"status=current&{query}")) == {corpus[k] for k in expected}


def test_identifier_finds_master_and_entry_uuid(dmp: Dmp, corpus: dict[str, str]) -> None:
    doc = dmp.call("GET", f"/fhir/DocumentReference/{corpus['vsm']}").json()
    master = doc["masterIdentifier"]["value"]
    # TD3.1b: identifier without status is accepted.
    assert ids(find(dmp, f"identifier=urn:ietf:rfc:3986|{master}")) == {corpus["vsm"]}
    assert ids(find(dmp, f"identifier=urn:uuid:{corpus['vsm']}")) == {corpus["vsm"]}


@pytest.mark.parametrize(
    "query",
    [
        "status=current&inconnu=1",
        "status=current&date=2025-13-01",
        "status=current&date=hier",
        "status=deleted",
        "status=current&space=cuisine",
        "status=current&isArchived=peut-etre",
        "status=current&_content=le la les",
        "",  # status missing
    ],
)
def test_bad_queries_are_400(dmp: Dmp, corpus: dict[str, str], query: str) -> None:
    response = find(dmp, query)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_patient_is_required(dmp: Dmp) -> None:
    response = dmp.call("GET", "/fhir/DocumentReference?status=current")
    assert response.status_code == 400
    assert "patient" in response.json()["issue"][0]["diagnostics"]


def test_paging(dmp: Dmp, corpus: dict[str, str]) -> None:
    first = find(dmp, "status=current&_count=3").json()
    assert first["total"] == 4 and len(first["entry"]) == 3
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    path = nxt.split("/fhir", 1)[1]
    second = dmp.call("GET", "/fhir" + path).json()
    assert len(second["entry"]) == 1
    seen = {e["resource"]["id"] for e in first["entry"] + second["entry"]}
    assert seen == set(corpus.values())
    newest_first = [e["resource"]["id"] for e in first["entry"]]
    assert newest_first[0] == corpus["masque"]


def test_masked_document_hidden_from_other_professionals(dmp: Dmp, corpus: dict[str, str]) -> None:
    assert corpus["masque"] in ids(find(dmp, "status=current"))  # the author sees it
    seen_by_martin = ids(find(dmp, "status=current", who="martin"))
    assert seen_by_martin == {corpus["cr"], corpus["bio"], corpus["vsm"]}
    read = dmp.call("GET", f"/fhir/DocumentReference/{corpus['masque']}", "martin")
    assert read.status_code == 403
    assert "règle R21" in read.json()["issue"][0]["diagnostics"]
    # The patient sees his masked document.
    assert corpus["masque"] in ids(find(dmp, "status=current", who="patient"))


def test_invisible_patient_hidden_from_the_patient(dmp: Dmp) -> None:
    hidden = dmp.publish_one(
        data=cda("Annonce à faire."), security=[(V3, "N"), (A07, "INVISIBLE_PATIENT")]
    )
    assert hidden not in ids(find(dmp, "status=current", who="patient"))
    assert hidden in ids(find(dmp, "status=current", who="martin"))
    response = dmp.call("GET", f"/fhir/DocumentReference/{hidden}", "patient")
    assert response.status_code == 403


def test_agent_cannot_search_content(dmp: Dmp, corpus: dict[str, str]) -> None:
    response = find(dmp, "status=current", who="agent")
    assert response.status_code == 403


def test_find_document_lists(dmp: Dmp, corpus: dict[str, str]) -> None:  # ITI-66
    code = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset"
    response = dmp.call(
        "GET", f"/fhir/List?patient.identifier={INS_PARAM}&code={code}&status=current"
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 4
    folders = dmp.call(
        "GET", f"/fhir/List?patient={dmp.patient_id}&code=folder&status=current"
    ).json()
    assert folders["total"] == 0
    missing_code = dmp.call("GET", f"/fhir/List?patient={dmp.patient_id}&status=current")
    assert missing_code.status_code == 400
    by_source = dmp.call(
        "GET",
        f"/fhir/List?patient={dmp.patient_id}&code=submissionset&status=current"
        "&sourceId=urn:oid:1.2.250.1.999.1&date=ge2026-01-01",
    ).json()
    assert by_source["total"] == 4
