"""The directory's FHIR API: Annuaire santé search semantics, paging, includes, errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import update

from parcours.annuaire import nomenclatures as nos
from parcours.annuaire.models import Mailbox
from tests.scenario import DUPONT, LEGALL, MARTIN, Api


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def search(api: Api, url: str) -> dict:
    response = api.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=dup", ["8" + DUPONT]),
        ("name=ELISE", ["8" + DUPONT]),  # case- and accent-insensitive
        ("given=élise", ["8" + DUPONT]),
        ("family=le gall", ["8" + LEGALL]),
        ("family:exact=dupon", []),
        ("family:exact=dupont", ["8" + DUPONT]),
        ("name:contains=gal", ["8" + LEGALL]),
        ("name=dupont,martin", ["8" + DUPONT, "8" + MARTIN]),
        (f"identifier=8{DUPONT}", ["8" + DUPONT]),
        (f"identifier=urn:oid:1.2.250.1.71.4.2.1|8{MARTIN}", ["8" + MARTIN]),
        (f"identifier={nos.SYSTEM_RPPS}|{LEGALL}", ["8" + LEGALL]),
        (f"identifier={nos.SYSTEM_FINESS}|{LEGALL}", []),
        ("qualification-code=SM54", ["8" + DUPONT]),
        ("qualification-code=60", ["8" + MARTIN]),
        ("mailbox-mss=elise.dupont@medecin.mssante.fr", ["8" + DUPONT]),
        ("mailbox-mss:exact=paul.martin@ch-rennes.mssante.fr", ["8" + MARTIN]),
        ("mailbox-mss:contains=ch-rennes", ["8" + DUPONT, "8" + MARTIN]),
        ("mailbox-mss-type=PER", ["8" + DUPONT, "8" + MARTIN]),
        ("active=true&name=dupont", ["8" + DUPONT]),
        ("active=false", []),
    ],
)
def test_practitioner_search(api: Api, query: str, expected: list[str]) -> None:
    assert sorted(ids(search(api, f"/fhir/Practitioner?{query}"))) == sorted(expected)


def test_practitioner_resource_shape(api: Api) -> None:
    body = search(api, f"/fhir/Practitioner?identifier=8{DUPONT}")
    p = body["entry"][0]["resource"]
    assert p["meta"]["versionId"] == "1"
    assert {"system": nos.SYSTEM_IDNAT_PS, "value": "8" + DUPONT}.items() <= p["identifier"][
        0
    ].items()
    assert p["identifier"][0]["type"]["coding"][0]["code"] == "IDNPS"
    assert p["name"][0] == {
        "use": "usual",
        "family": "Dupont",
        "given": ["Élise"],
        "prefix": ["M"],
        "suffix": ["DR"],
    }
    boxes = sorted(t["value"] for t in p["telecom"])
    assert boxes == ["elise.dupont@ch-rennes.mssante.fr", "elise.dupont@medecin.mssante.fr"]
    telecom = p["telecom"][0]
    assert telecom["system"] == "email"
    email_type = next(
        e for e in telecom["extension"] if e["url"] == nos.EXT_CONTACT_POINT_EMAIL_TYPE
    )
    assert email_type["valueCoding"]["code"] == "MSSANTE"
    meta = next(e for e in telecom["extension"] if e["url"] == nos.EXT_MAILBOX_MSS_METADATA)
    assert {
        "url": "type",
        "valueCodeableConcept": {
            "coding": [{"system": nos.CS_TYPE_BAL, "code": "PER", "display": nos.TYPES_BAL["PER"]}]
        },
    } in meta["extension"]
    codes = {c["code"] for q in p["qualification"] for c in q["code"]["coding"]}
    assert {"10", "SM54"} <= codes


def test_liste_rouge_mailbox_is_neither_shown_nor_searchable(api: Api) -> None:
    with api.db.session() as session:
        session.execute(
            update(Mailbox)
            .where(Mailbox.address == "elise.dupont@medecin.mssante.fr")
            .values(liste_rouge=True)
        )
    assert ids(search(api, "/fhir/Practitioner?mailbox-mss=elise.dupont@medecin.mssante.fr")) == []
    p = api.get(f"/fhir/Practitioner/8{DUPONT}").json()
    assert [t["value"] for t in p["telecom"]] == ["elise.dupont@ch-rennes.mssante.fr"]


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("mailbox-mss-type=ORG", 1),
        ("mailbox-mss-type=APP", 0),
        ("address-city=rennes", 2),
        ("address-city=saint-malo", 1),
        ("address-postalcode=354", 1),
        ("name=ch", 1),
        (f"identifier={nos.SYSTEM_FINESS}|350000014", 1),
        ("identifier=73282932000074", 1),
        ("identifier=urn:oid:1.2.250.1.71.4.2.2|1350000014", 1),
    ],
)
def test_organization_search(api: Api, query: str, count: int) -> None:
    body = search(api, f"/fhir/Organization?{query}")
    assert body["total"] == count == len(ids(body))


def test_practitioner_role_search_and_include(api: Api) -> None:
    org = search(api, "/fhir/Organization?mailbox-mss=urgences@ch-rennes.mssante.fr")
    org_id = ids(org)[0]
    body = search(
        api,
        f"/fhir/PractitionerRole?organization=Organization/{org_id}&_include=PractitionerRole:organization",
    )
    assert body["total"] == 2
    included = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "include"]
    assert [r["id"] for r in included] == [org_id]
    assert {
        e["resource"]["practitioner"]["reference"]
        for e in body["entry"]
        if e["search"]["mode"] == "match"
    } == {
        "Practitioner/8" + DUPONT,
        "Practitioner/8" + MARTIN,
    }
    assert search(api, "/fhir/PractitionerRole?role=60")["total"] == 1
    assert search(api, "/fhir/PractitionerRole?specialty=SM54")["total"] == 2
    assert (
        search(api, "/fhir/PractitionerRole?mailbox-mss=paul.martin@ch-rennes.mssante.fr")["total"]
        == 1
    )
    assert (
        search(
            api,
            f"/fhir/PractitionerRole?practitioner=8{DUPONT}&_include=PractitionerRole:practitioner",
        )["total"]
        == 2
    )


def test_paging_with_next_links_visits_everything_once(api: Api) -> None:
    url = "/fhir/PractitionerRole?_count=1"
    seen: list[str] = []
    pages = 0
    while url:
        body = search(api, url)
        assert body["total"] == 4
        seen += ids(body)
        pages += 1
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        url = "" if not nxt else (lambda u: f"{u.path}?{u.query}")(urlsplit(nxt[0]))
    assert pages == 4 and len(seen) == 4 == len(set(seen))


def test_total_none_and_count_zero(api: Api) -> None:
    assert "total" not in search(api, "/fhir/Practitioner?_total=none")
    body = search(api, "/fhir/Practitioner?_count=0")
    assert body["total"] == 3 and body["entry"] == []


def test_post_search(api: Api) -> None:
    response = api.client.post(
        "/fhir/Practitioner/_search",
        data={"family": "martin"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status_code == 200
    assert ids(response.json()) == ["8" + MARTIN]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("foo=bar", "Paramètre de recherche inconnu"),
        ("_count=abc", "_count doit être un entier"),
        ("_count=-1", "_count doit être ≥ 0"),
        ("active=maybe", "true ou false"),
        ("name:sounds=dupont", "Modificateur"),
        ("name=", "Valeur vide"),
        ("identifier=urn:oid:1.2.250.1.71.4.2.1|", "Code vide"),
        ("_include=Practitioner:organization", "_include"),
        ("_total=exact", "_total"),
        ("_sort=family", "Paramètre de recherche inconnu"),
    ],
)
def test_bad_search_parameters_give_400_operation_outcome(
    api: Api, query: str, fragment: str
) -> None:
    response = api.get(f"/fhir/Practitioner?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert fragment in body["issue"][0]["diagnostics"]


def test_lenient_handling_ignores_unknown_parameters(api: Api) -> None:
    response = api.client.get(
        "/fhir/Practitioner?foo=bar&family=martin",
        headers={"Authorization": f"Bearer {api.token}", "Prefer": "handling=lenient"},
    )
    assert response.status_code == 200 and ids(response.json()) == ["8" + MARTIN]


def test_read_and_not_found(api: Api) -> None:
    assert api.get(f"/fhir/Practitioner/8{DUPONT}").json()["id"] == "8" + DUPONT
    for url in ("/fhir/Practitioner/nope", "/fhir/Patient/1", "/fhir/Organization/x/y/z"):
        response = api.get(url)
        assert response.status_code == 404, url
        assert response.json()["resourceType"] == "OperationOutcome"


def test_capability_statement_lists_search_parameters(api: Api) -> None:
    cs = api.client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    practitioner = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Practitioner")
    names = {p["name"] for p in practitioner["searchParam"]}
    assert {
        "identifier",
        "name",
        "family",
        "given",
        "mailbox-mss",
        "mailbox-mss-type",
        "active",
    } <= names
