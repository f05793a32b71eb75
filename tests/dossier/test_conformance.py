import json, copy, uuid, base64, hashlib
from pathlib import Path
from tests.dossier.builders import PATIENT_INS
from tests.scenario import DUPONT

C = Path(__file__).parents[3] / "shared" / "conformance"


def sub(o, dmp, cond=True):
    s = json.dumps(o)
    s = s.replace(
        "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|123456789012345",
        f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{PATIENT_INS}",
    )
    s = s.replace("Patient/fr-patient-123", f"Patient/{dmp.patient_id}")
    s = s.replace("123456789012345", PATIENT_INS).replace("180017505600103", PATIENT_INS)
    s = s.replace("899700218896", "8" + DUPONT).replace(
        '"https://rpps.esante.gouv.fr", "value": "1011848351"',
        f'"urn:oid:1.2.250.1.71.4.2.1", "value": "8{DUPONT}"',
    )
    return json.loads(s)


def test_probe(dmp):
    out = {}
    b = sub(
        json.load(open(C / "pdsm4dmp/examples/Bundle-example-td2-iti65-lot-soumission.json")), dmp
    )
    r = dmp.publish(b)
    out["td2"] = r.json()
    b["entry"][0]["resource"]["identifier"] = [
        {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}
    ]
    r = dmp.publish(b)
    out["td2fixed"] = r.json()
    x = r.json()["entry"][1]["response"]["location"].split("/")[1]
    out["read"] = dmp.call("GET", f"/fhir/DocumentReference/{x}").json()
    b = sub(
        json.load(
            open(
                C
                / "pdsm/proposed-branch-add-exemples-iti65/Bundle-bundle-exemple-comprehensiveprovidedocument-replace.json"
            )
        ),
        dmp,
    )
    b = json.loads(json.dumps(b).replace("DocumentReference/doc-old", f"DocumentReference/{x}"))
    b["entry"][0]["resource"]["identifier"] = [
        {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}
    ]
    r = dmp.publish(b)
    out["pdsmrepl"] = r.json()
    b["entry"][1]["resource"]["content"][0]["attachment"]["hash"] = "9/+ei3uy4Jtwk1pdeF4MxdnQq/A="
    r = dmp.publish(b)
    out["pdsmrepl_fixed"] = r.json()
    for f in [
        "pdsm/examples/DocumentReference-PDSmSimplifiedExample.json",
        "pdsm4dmp/examples/DocumentReference-example-td2-iti105-publication-simplifiee.json",
    ]:
        d = sub(json.load(open(C / f)), dmp)
        d.pop("text", None)
        r = dmp.call("POST", "/fhir/DocumentReference", json=d)
        out[f] = [r.status_code, r.json()]
    Path("/tmp/probe/out.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
