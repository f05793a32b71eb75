from tests.dossier.conftest import Dmp


def test_publish_search_read(dmp: Dmp) -> None:
    doc_id = dmp.publish_one()
    found = dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current")
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 1
    read = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}")
    assert read.status_code == 200
    url = read.json()["content"][0]["attachment"]["url"]
    got = dmp.call("GET", url)
    assert got.status_code == 200, got.text
    assert b"Examen normal" in got.content
