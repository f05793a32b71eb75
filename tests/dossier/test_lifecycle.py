"""Retrieve (ITI-68), metadata update, deletion, history, records and traces:
reference dmp-pdsm.md §1.5–1.7, §8.4–8.5; issue 4 items 1, 5 and 7."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.dossier.documents import rewrap_keys
from parcours.dossier.models import Document
from parcours.dossier.samples import OTHER_INS, cda
from parcours.storage.crypto import KeyRing
from tests.dossier.conftest import CHANNEL_EXT, Dmp, open_record
from tests.scenario import MARTIN

A07 = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
    "TRE-A07-StatutVisibiliteDocument"
)
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def attachment_url(dmp: Dmp, doc_id: str) -> str:
    return dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()["content"][0]["attachment"][
        "url"
    ]


def test_retrieve_bytes_hash_and_content_negotiation(dmp: Dmp) -> None:
    data = cda("Contenu à relire.")
    doc_id = dmp.publish_one(data=data)
    doc = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()
    url = doc["content"][0]["attachment"]["url"]
    assert url.startswith("http")  # an absolute attachment URL
    got = dmp.call("GET", url)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"].startswith("text/xml")
    sha1 = base64.b64encode(hashlib.sha1(got.content).digest()).decode()
    assert sha1 == doc["content"][0]["attachment"]["hash"]
    as_fhir = dmp.call("GET", url, headers={"Accept": "application/fhir+json"})
    assert as_fhir.json()["resourceType"] == "Binary"
    assert base64.b64decode(as_fhir.json()["data"]) == data
    assert dmp.call("GET", url, headers={"Accept": "image/png"}).status_code == 406
    assert dmp.call("GET", "/fhir/Binary/inconnu").status_code == 404


def test_superseded_and_deleted_documents_are_gone(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    url = attachment_url(dmp, doc_id)
    response = dmp.call("DELETE", f"/fhir/DocumentReference/{doc_id}", "martin")
    assert response.status_code == 403  # not the author
    assert "règle R29" in response.json()["issue"][0]["diagnostics"]
    assert dmp.call("DELETE", f"/fhir/DocumentReference/{doc_id}").status_code == 204
    assert dmp.call("GET", url).status_code == 410
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").status_code == 410
    found = dmp.call(
        "GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current,superseded"
    ).json()
    assert found["total"] == 0


def test_json_patch_mask_unmask_archive(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    mask = [
        {
            "op": "add",
            "path": "/securityLabel/-",
            "value": {"coding": [{"system": A07, "code": "MASQUE_PS"}]},
        }
    ]
    response = dmp.call("PATCH", f"/fhir/DocumentReference/{doc_id}", json=mask, headers=JSON_PATCH)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    labels = {c["code"] for lab in response.json()["securityLabel"] for c in lab["coding"]}
    assert labels == {"N", "MASQUE_PS"}  # the v3 code is kept
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc_id}", "martin").status_code == 403
    unmask = [{"op": "remove", "path": "/securityLabel/1"}]
    response = dmp.call(
        "PATCH", f"/fhir/DocumentReference/{doc_id}", json=unmask, headers=JSON_PATCH
    )
    assert response.status_code == 200
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc_id}", "martin").status_code == 200
    archive = [
        {"op": "add", "path": "/extension", "value": [{"url": ARCHIVED, "valueBoolean": True}]}
    ]
    response = dmp.call(
        "PATCH", f"/fhir/DocumentReference/{doc_id}", json=archive, headers=JSON_PATCH
    )
    assert response.status_code == 200, response.text
    search = f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current&isArchived=true"
    assert dmp.call("GET", search).json()["total"] == 1
    history = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["4", "3", "2", "1"]
    v1 = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}/_history/1").json()
    assert len(v1["securityLabel"]) == 1


def test_conditional_fhirpath_patch_status(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    master = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()["masterIdentifier"][
        "value"
    ]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.status"},
                    {"name": "value", "valueCode": "superseded"},
                ],
            }
        ],
    }
    response = dmp.call(
        "PATCH", f"/fhir/DocumentReference?identifier=urn:ietf:rfc:3986|{master}", json=body
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "superseded"
    missing = dmp.call(
        "PATCH", "/fhir/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:9", json=body
    )
    assert missing.status_code == 404


def test_patch_of_other_elements_is_405(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    for ops in (
        [{"op": "replace", "path": "/type/coding/0/code", "value": "60591-5"}],
        [{"op": "replace", "path": "/subject/reference", "value": "Patient/x"}],
        [{"op": "remove", "path": "/meta"}],
    ):
        response = dmp.call(
            "PATCH", f"/fhir/DocumentReference/{doc_id}", json=ops, headers=JSON_PATCH
        )
        assert response.status_code == 405, response.text
    doc = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").json()
    assert doc["meta"]["versionId"] == "1"
    bad = dmp.call(
        "PATCH",
        f"/fhir/DocumentReference/{doc_id}",
        json=[{"op": "remove", "path": "/nope"}],
        headers=JSON_PATCH,
    )
    assert bad.status_code == 422


def test_entered_in_error_is_a_logical_deletion(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    ops = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
    assert (
        dmp.call(
            "PATCH", f"/fhir/DocumentReference/{doc_id}", json=ops, headers=JSON_PATCH
        ).status_code
        == 200
    )
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc_id}").status_code == 410


def test_documents_are_encrypted_at_rest(dmp: Dmp) -> None:
    phrase = "Phrase témoin zygomatique introuvable"
    doc_id = dmp.publish_one(data=cda(phrase), title="Compte rendu")
    needles = [phrase.encode(), b"zygomatique", "zygomatique".encode("utf-16-le")]
    files = [p for p in Path(dmp.settings.data_dir).rglob("*") if p.is_file()]
    assert any("blobs" in p.parts for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"clear text found in {path}"
    if dmp.db.dialect == "postgresql":
        with dmp.db.engine.connect() as conn:
            dump = str(conn.exec_driver_sql("SELECT d::text FROM dmp_document d").all())
            dump += str(conn.exec_driver_sql("SELECT t::text FROM dmp_document_term t").all())
        assert "zygomatique" not in dump
    # ...and yet the document is found by its words and read back.
    found = dmp.call(
        "GET",
        f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current&_content=zygomatique",
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [doc_id]


def test_tampered_blob_is_refused(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    with dmp.db.session() as session:
        key = session.get(Document, doc_id).blob_key  # type: ignore[union-attr]
    sealed = bytearray(dmp.store.blobs.get(key))
    sealed[-1] ^= 1
    dmp.store.blobs.put(key, bytes(sealed))
    response = dmp.call("GET", attachment_url(dmp, doc_id))
    assert response.status_code == 500
    assert "intégrité" in response.json()["issue"][0]["diagnostics"]


def test_key_rotation_rewraps_without_reencrypting(dmp: Dmp) -> None:
    doc_id = dmp.publish_one(data=cda("Avant rotation."))
    directory = dmp.settings.keys_dir / "dossier"
    with dmp.db.session() as session:
        before = session.get(Document, doc_id)
        old_key, blob_key = before.key_id, before.blob_key  # type: ignore[union-attr]
    blob_before = dmp.store.blobs.get(blob_key)
    new_id = KeyRing.rotate(directory)
    ring = KeyRing.load_or_create(directory)
    dmp.store.keys = ring
    assert rewrap_keys(dmp.db, ring) == 1
    with dmp.db.session() as session:
        assert session.get(Document, doc_id).key_id == new_id != old_key  # type: ignore[union-attr]
    assert dmp.store.blobs.get(blob_key) == blob_before
    assert b"Avant rotation" in dmp.call("GET", attachment_url(dmp, doc_id)).content


def test_every_access_is_traced_with_patient_and_rule(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    dmp.call("GET", f"/fhir/DocumentReference/{doc_id}")
    dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current")
    dmp.call("GET", f"/fhir/DocumentReference/{doc_id}", "agent")  # refused
    with dmp.db.session() as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    mine = [e for e in events if e.patient_id == dmp.patient_id]
    actions = [(e.action, e.outcome, e.rule) for e in mine]
    assert ("transaction", 200, "R27") in actions
    assert ("read", 200, "R10") in actions
    assert ("search", 200, "R10") in actions
    assert ("read", 403, "R42") in actions
    assert verify(dmp.db).ok
    # The patient reads who accessed his record, through the API.
    traces = dmp.call("GET", f"/fhir/AuditEvent?patient={dmp.patient_id}", "patient")
    assert traces.status_code == 200, traces.text
    codes = [e["resource"]["subtype"][0]["code"] for e in traces.json()["entry"]]
    assert "read" in codes and "search-type" in codes
    refused = [e["resource"] for e in traces.json()["entry"] if e["resource"]["outcome"] != "0"]
    assert refused and "R42" in refused[0]["outcomeDesc"]
    # Another professional reads the traces of his own actions only (R39).
    dmp.call("GET", f"/fhir/DocumentReference/{doc_id}", "martin")
    own = dmp.call("GET", f"/fhir/AuditEvent?patient={dmp.patient_id}", "martin")
    assert own.status_code == 200, own.text
    who = {e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in own.json()["entry"]}
    assert who == {"8" + MARTIN}


def test_record_lifecycle_and_retention(dmp: Dmp) -> None:
    patient = dmp.call("GET", f"/fhir/Patient/{dmp.patient_id}").json()
    assert patient["active"] is True
    closed = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$close-dmp",
        "martin",
        json={"resourceType": "Parameters"},
    )
    assert closed.status_code == 403  # only the patient closes his record
    closed = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$close-dmp",
        "patient",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "reason", "valueString": "Choix personnel"}],
        },
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["active"] is False
    response = dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current")
    assert response.status_code == 403
    assert "règle G2" in response.json()["issue"][0]["diagnostics"]
    from parcours.dossier.models import Record

    with dmp.db.session() as session:
        record = session.get(Record, dmp.patient_id)
        assert record.retention_until.year - record.closed_at.year == 10  # type: ignore[union-attr]


def test_consent_channels_and_identity_errors(dmp: Dmp) -> None:
    bad_key = OTHER_INS[:-2] + ("00" if OTHER_INS[-2:] != "00" else "01")
    response = dmp.call(
        "POST",
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": bad_key}],
            "name": [{"family": "X", "given": ["Y"]}],
            "gender": "male",
            "birthDate": "1990-05-01",
        },
    )
    assert response.status_code == 400
    assert "clé" in response.json()["issue"][0]["diagnostics"]
    other = open_record(dmp, OTHER_INS, who="dupont")
    assert dmp.call("GET", f"/fhir/Patient/{other}").json()["active"] is True
    again = dmp.call(
        "POST",
        "/fhir/Consent",
        "agent",
        json={
            "resourceType": "Consent",
            "status": "active",
            "patient": {"reference": f"Patient/{other}"},
            "extension": [{"url": CHANNEL_EXT, "valueCode": "guichet-cpam"}],
        },
    )
    assert again.status_code == 409
    wrong_channel = dmp.call(
        "POST",
        "/fhir/Consent",
        "dupont",
        json={
            "resourceType": "Consent",
            "status": "active",
            "patient": {"reference": f"Patient/{other}"},
            "extension": [{"url": CHANNEL_EXT, "valueCode": "guichet-cpam"}],
        },
    )
    assert wrong_channel.status_code == 403
