"""ITI-65 Provide Document Bundle: reference dmp-pdsm.md §1.1 and the scenario table §8.1."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from parcours.dossier.samples import (
    OTHER_INS,
    cda,
    provide_bundle,
    sha1_b64,
)
from tests.dossier.conftest import Dmp, _token, open_record
from tests.scenario import DUPONT


def bundle_for(dmp: Dmp, **kw: Any) -> dict[str, Any]:
    return provide_bundle(subject=f"Patient/{dmp.patient_id}", author_idnps="8" + DUPONT, **kw)


def refused(dmp: Dmp, bundle: dict[str, Any], status: int, expression: str | None = None) -> dict:
    before = dmp.counts()
    response = dmp.publish(bundle)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    if expression:
        exprs = [e for i in body["issue"] for e in i.get("expression", [])]
        assert any(expression in e for e in exprs), exprs
    assert dmp.counts() == before, "a refused submission must leave no row and no blob"
    return body


def test_single_document_with_binary(dmp: Dmp) -> None:  # T65-01
    bundle = bundle_for(dmp)
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(bundle["entry"]) == 3
    kinds = [e["response"]["location"].split("/")[0] for e in body["entry"]]
    assert kinds == ["List", "DocumentReference", "Binary"]  # request order
    for entry in body["entry"]:
        assert entry["response"]["status"].startswith("201")
        location = entry["response"]["location"]
        assert location.endswith("/_history/1")
    doc_id = body["entry"][1]["response"]["location"].split("/")[1]
    list_id = body["entry"][0]["response"]["location"].split("/")[1]
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").status_code == 200
    listed = dmp.call("GET", f"/fhir/List/{list_id}").json()
    assert listed["entry"][0]["item"]["reference"] == f"DocumentReference/{doc_id}"
    assert dmp.counts() == (1, 1, 1)


def test_two_documents(dmp: Dmp) -> None:  # T65-02
    bundle = bundle_for(dmp, documents=[(cda("Premier."), {}), (cda("Second."), {})])
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created"] * 5


def _doc(bundle: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"][n][
        "resource"
    ]


def _list(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][0]["resource"]


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        (lambda b: _doc(b).pop("type"), "resource.type"),  # T65-03
        (lambda b: _doc(b)["content"][0].pop("format"), "content[0].format"),  # T65-04
        (lambda b: _doc(b)["context"].pop("facilityType"), "context.facilityType"),  # T65-05
        (lambda b: _doc(b)["context"].pop("practiceSetting"), "context.practiceSetting"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("language"), "attachment.language"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("contentType"), "contentType"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("url"), "attachment.url"),  # T65-09
        (lambda b: _doc(b).pop("masterIdentifier"), "masterIdentifier"),  # T65-10
        (lambda b: _list(b).pop("identifier"), "identifier"),  # T65-11
        (lambda b: _list(b).__setitem__("extension", _list(b)["extension"][1:]), "sourceId"),
        (lambda b: _list(b).pop("date"), "resource.date"),  # T65-13
        (lambda b: _list(b).__setitem__("extension", _list(b)["extension"][:1]), "designation"),
        (lambda b: _doc(b).pop("subject"), "subject"),  # T65-15
        (lambda b: _doc(b)["contained"][1].pop("identifier"), "sourcePatientInfo"),  # T65-16
        (
            lambda b: _doc(b)["context"].__setitem__("sourcePatientInfo", {"reference": "#x"}),
            "sourcePatientInfo",
        ),  # T65-18
        (lambda b: b.pop("meta"), "Bundle.meta.profile"),  # T65-19
        (lambda b: _doc(b).pop("date"), "resource.date"),  # T65-26
        (lambda b: _doc(b).pop("author"), "author"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("size"), "attachment.size"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("hash"), "attachment.hash"),
        (lambda b: _doc(b)["content"][0]["attachment"].pop("title"), "attachment.title"),
        (lambda b: _doc(b)["context"]["period"].pop("start"), "period.start"),
        (lambda b: _doc(b).__setitem__("status", "superseded"), "status"),  # T65-30
        (lambda b: _doc(b)["category"][0]["coding"][0].__setitem__("code", "03"), "category"),
        (
            lambda b: _doc(b)["type"]["coding"][0].__setitem__("system", "http://snomed.info/sct"),
            "type",
        ),
        (
            lambda b: _doc(b)["securityLabel"][0]["coding"][0].__setitem__("code", "X"),
            "securityLabel",
        ),
    ],
)
def test_missing_or_bad_element_is_refused(dmp: Dmp, mutate: Any, expression: str) -> None:
    bundle = bundle_for(dmp)
    mutate(bundle)
    refused(dmp, bundle, 400, expression)


def test_hash_and_size_must_match_the_bytes(dmp: Dmp) -> None:  # T65-27
    bundle = bundle_for(dmp)
    _doc(bundle)["content"][0]["attachment"]["hash"] = sha1_b64(b"autre chose")
    body = refused(dmp, bundle, 400, "attachment.hash")
    assert "SHA-1 calculé" in body["issue"][0]["diagnostics"]
    bundle = bundle_for(dmp)
    _doc(bundle)["content"][0]["attachment"]["size"] += 1
    refused(dmp, bundle, 400, "attachment.size")


def test_one_bad_document_refuses_the_whole_bundle(dmp: Dmp) -> None:  # T65-28
    bundle = bundle_for(dmp, documents=[(cda("Bon."), {}), (cda("Mauvais."), {})])
    _doc(bundle, 1).pop("type")
    refused(dmp, bundle, 400, "Bundle.entry[3].resource.type")


def test_unknown_author_is_refused(dmp: Dmp) -> None:
    bundle = provide_bundle(subject=f"Patient/{dmp.patient_id}", author_idnps="810000000033")
    body = refused(dmp, bundle, 422, "author[0]")
    assert "Annuaire" in body["issue"][0]["diagnostics"]


def test_invalid_author_identifier_is_refused(dmp: Dmp) -> None:
    bundle = provide_bundle(subject=f"Patient/{dmp.patient_id}", author_idnps="810000000034")
    refused(dmp, bundle, 400, "author[0]")


def test_patient_must_resolve_and_have_an_open_record(dmp: Dmp) -> None:  # T65-17, T65-29
    refused(dmp, provide_bundle(subject="Patient/inconnu", author_idnps="8" + DUPONT), 400)
    other = dmp.call(
        "POST",
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": OTHER_INS}],
            "name": [{"family": "Sans", "given": ["Dmp"]}],
            "gender": "male",
            "birthDate": "1990-05-01",
        },
    ).json()
    body = refused(
        dmp, provide_bundle(subject=f"Patient/{other['id']}", author_idnps="8" + DUPONT), 422
    )
    assert "règle G2" in body["issue"][0]["diagnostics"]


def test_subjects_must_agree(dmp: Dmp) -> None:
    other = open_record(dmp, OTHER_INS)
    bundle = bundle_for(dmp)
    _doc(bundle)["subject"] = {"reference": f"Patient/{other}"}
    refused(dmp, bundle, 400, "subject")


def test_conditional_patient_reference_by_ins(dmp: Dmp) -> None:
    from parcours.dossier.samples import PATIENT_INS

    ref = f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{PATIENT_INS}"
    response = dmp.publish(provide_bundle(subject=ref, author_idnps="8" + DUPONT))
    assert response.status_code == 200, response.text
    doc_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
    read = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()
    assert read["subject"]["reference"] == f"Patient/{dmp.patient_id}"


def test_duplicate_unique_id_is_refused(dmp: Dmp) -> None:  # T65-31
    bundle = bundle_for(dmp)
    assert dmp.publish(bundle).status_code == 200
    again = copy.deepcopy(bundle)
    _list(again)["identifier"][0]["value"] = "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
    body = refused(dmp, again, 409, "masterIdentifier")
    assert "XDSDuplicateUniqueIdInRegistry" in body["issue"][0]["diagnostics"]


def test_class_type_mismatch_is_a_warning(dmp: Dmp) -> None:  # defect D5
    bundle = bundle_for(dmp, documents=[(cda("Synthèse."), {"class_code": "11"})])
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    outcome = response.json()["entry"][1]["response"]["outcome"]
    assert any(
        i["severity"] == "warning" and "ASS_X04" in i["diagnostics"] for i in outcome["issue"]
    )


def test_missing_custodian_is_filled_from_the_callers_structure(dmp: Dmp) -> None:
    bundle = bundle_for(dmp)
    _doc(bundle).pop("custodian")
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    outcome = response.json()["entry"][1]["response"]["outcome"]
    assert any("custodian" in i["diagnostics"] for i in outcome["issue"])
    doc_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
    read = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()
    assert read["custodian"]["identifier"]["value"] == "1350000014"


def test_replacement_supersedes_atomically(dmp: Dmp) -> None:  # T65-20
    old = dmp.publish_one(data=cda("Version 1."))
    bundle = bundle_for(dmp, documents=[(cda("Version 2."), {"replaces": old})], patches=[old])
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[-1]["response"]["status"].startswith("200")
    new = entries[1]["response"]["location"].split("/")[1]
    assert dmp.call("GET", f"/fhir/DocumentReference/{old}").json()["status"] == "superseded"
    assert dmp.call("GET", f"/fhir/DocumentReference/{new}").json()["status"] == "current"
    # Replacing it again is refused, and nothing of the refused bundle stays.
    again = bundle_for(dmp, documents=[(cda("Version 3."), {"replaces": old})])
    refused(dmp, again, 422, "relatesTo")


def test_appends_keeps_the_original_current(dmp: Dmp) -> None:  # T65-21
    old = dmp.publish_one()
    bundle = bundle_for(dmp, documents=[(cda("Addendum."), {})])
    _doc(bundle)["relatesTo"] = [
        {"code": "appends", "target": {"reference": f"DocumentReference/{old}"}}
    ]
    assert dmp.publish(bundle).status_code == 200
    assert dmp.call("GET", f"/fhir/DocumentReference/{old}").json()["status"] == "current"


def test_replacing_another_patients_document_is_refused(dmp: Dmp) -> None:
    other = open_record(dmp, OTHER_INS)
    dmp.tokens["other"] = _token(dmp.settings, "other", {"actor": "patient", "ins": OTHER_INS})
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": "designate-mt"},
            {"name": "target", "valueString": "8" + DUPONT},
        ],
    }
    assert (
        dmp.call("POST", f"/fhir/Patient/{other}/$dmp-droits", "other", json=body).status_code
        == 200
    )
    theirs = provide_bundle(subject=f"Patient/{other}", author_idnps="8" + DUPONT)
    response = dmp.publish(theirs)
    assert response.status_code == 200, response.text
    their_doc = response.json()["entry"][1]["response"]["location"].split("/")[1]
    bundle = bundle_for(dmp, documents=[(cda("X."), {"replaces": their_doc})])
    refused(dmp, bundle, 422, "relatesTo")


def test_fhir_document_and_folder(dmp: Dmp) -> None:  # T65-24, T65-25
    bundle = bundle_for(dmp)
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:1b7d5c1e-8f4a-4a7b-9a51-3f1e0b6d2c11",
            "resource": {"resourceType": "Bundle", "type": "document"},
            "request": {"method": "POST", "url": "Bundle"},
        }
    )
    body = refused(dmp, bundle, 400)
    assert "FHIRDocumentNotSupported" in body["issue"][0]["diagnostics"]
    bundle = bundle_for(dmp)
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:2b7d5c1e-8f4a-4a7b-9a51-3f1e0b6d2c12",
            "resource": {
                "resourceType": "List",
                "code": {"coding": [{"code": "folder"}]},
                "status": "current",
                "mode": "working",
            },
            "request": {"method": "POST", "url": "List"},
        }
    )
    response = dmp.publish(bundle)
    assert response.status_code == 200
    outcome = response.json()["entry"][-1]["response"]["outcome"]
    assert "PartialFolderContentNotProcessed" in outcome["issue"][0]["diagnostics"]


def test_bad_payloads(dmp: Dmp) -> None:
    before = dmp.counts()
    response = dmp.call(
        "POST", "/fhir", content=b"{not json", headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 400
    response = dmp.call(
        "POST", "/fhir", content=b"<Bundle/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 415
    response = dmp.call("POST", "/fhir", json={"resourceType": "Bundle", "type": "batch"})
    assert response.status_code == 400
    assert dmp.counts() == before


def test_oversized_document(dmp: Dmp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dmp.store, "max_document_bytes", 1000)
    body = refused(
        dmp, bundle_for(dmp, documents=[(b"x" * 1001, {"content_type": "text/plain"})]), 413
    )
    assert "1000 octets" in body["issue"][0]["diagnostics"]


def test_unauthenticated_and_patient_of_another_record(dmp: Dmp) -> None:
    response = dmp.client.post("/fhir", json=bundle_for(dmp))
    assert response.status_code == 401
    other = open_record(dmp, OTHER_INS)
    bundle = provide_bundle(subject=f"Patient/{other}", author_idnps="8" + DUPONT)
    response = dmp.publish(bundle, who="patient")
    assert response.status_code == 403
    assert "règle R19" in response.json()["issue"][0]["diagnostics"]
