"""Opening a DMP at the desk (issue #7 §3): identity checks, explicit consent, the minor's
legal representative, the access code handed on a letter and then used to log in; the channel
kept on the record; who may open one."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from parcours.dossier.models import AccessCode, Consent, Patient, Record
from parcours.identity import INS
from tests.portail.conftest import Portal, _hidden_fields, login
from tests.scenario import DUPONT, LEGALL


def _ins(nir13: str) -> str:
    return nir13 + INS.compute_key(nir13)


ADULT = _ins("2900535238123")  # born May 1990
CHILD = _ins("1150335238045")  # born March 2015


@pytest.fixture
def desk(portal: Portal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal.base) as client:
        assert login(client, "CPAM35-A001", "agent").headers["location"] == "/portail/guichet"
        yield client


def _open(client: httpx.Client, **fields: str) -> httpx.Response:
    csrf = _hidden_fields(client.get("/portail/guichet").text)["csrf"]
    data = {
        "csrf": csrf,
        "ins": ADULT,
        "nom": "Morel",
        "prenoms": "Claire Anne",
        "naissance": "1990-05-14",
        "sexe": "female",
        "consentement": "oui",
    }
    data.update(fields)
    return client.post("/portail/guichet", data={k: v for k, v in data.items() if v is not None})


def _code(letter: str) -> str:
    found = re.search(r'id="code-acces">([A-Z0-9-]+)<', letter)
    assert found, letter
    return found.group(1)


def _patients(portal: Portal, ins: str) -> list[Patient]:
    with portal.db.session() as session:
        return list(session.execute(select(Patient).where(Patient.ins == ins)).scalars())


def test_an_agent_opens_a_record_and_the_patient_logs_in_with_the_handed_code(
    portal: Portal, desk: httpx.Client
) -> None:
    letter = _open(desk)
    assert letter.status_code == 200, letter.text
    code = _code(letter.text)
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code)
    assert "<svg" in letter.text  # the QR of the patient space's address
    [patient] = _patients(portal, ADULT)
    with portal.db.session() as session:
        record = session.get(Record, patient.id)
        stored = session.get(AccessCode, patient.id)
        assert record is not None and record.channel == "guichet-cpam"
        assert stored is not None and code.replace("-", "") not in stored.code_hash
    # The letter is the only place the code appears: not in any URL, not stored in clear.
    with httpx.Client(base_url=portal.base) as client:
        start = client.get("/portail/connexion?profil=patient")
        form = _hidden_fields(client.get(start.headers["location"]).text)
        wrong = client.post("/idp/authorize", data={**form, "identifiant": ADULT, "code": "X"})
        assert wrong.status_code == 400 and "incorrect, expiré ou bloqué" in wrong.text
        right = client.post(
            "/idp/authorize", data={**form, "identifiant": ADULT, "code": code.lower()}
        )
        assert right.status_code == 303
        assert client.get(right.headers["location"]).headers["location"] == "/portail/patient"
        page = client.get("/portail/patient")
        assert "Mon dossier médical partagé" in page.text and "Claire Anne Morel" in page.text


def test_five_wrong_codes_block_the_code(portal: Portal, desk: httpx.Client) -> None:
    code = _code(_open(desk).text)
    with httpx.Client(base_url=portal.base) as client:
        start = client.get("/portail/connexion?profil=patient")
        form = _hidden_fields(client.get(start.headers["location"]).text)
        for _ in range(5):
            client.post("/idp/authorize", data={**form, "identifiant": ADULT, "code": "FAUX"})
        blocked = client.post("/idp/authorize", data={**form, "identifiant": ADULT, "code": code})
        assert blocked.status_code == 400 and "bloqué" in blocked.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"naissance": "1991-05-14"}, "ne correspond pas à l'INS"),
        ({"ins": ADULT[:-2] + "00"}, "clé"),
        ({"consentement": None}, "consentement exprès"),
        ({"ins": CHILD, "naissance": "2015-03-02", "sexe": "male"}, "représentant légal"),
        ({"naissance": ""}, "date de naissance"),
    ],
)
def test_what_the_desk_must_check_before_opening(
    portal: Portal, desk: httpx.Client, fields: dict[str, str | None], message: str
) -> None:
    refused = _open(desk, **fields)  # type: ignore[arg-type]
    assert refused.status_code == 400 and message.replace("'", "&#39;") in refused.text
    assert 'value="Morel"' in refused.text  # what was typed is kept
    assert _patients(portal, fields.get("ins") or ADULT) == []  # nothing created


def test_a_minor_with_the_legal_representative(portal: Portal, desk: httpx.Client) -> None:
    letter = _open(
        desk,
        ins=CHILD,
        naissance="2015-03-02",
        sexe="male",
        prenoms="Hugo",
        representant="Claire Morel",
        qualite="mère",
    )
    assert letter.status_code == 200 and "représenté(e) par Claire Morel (mère)" in letter.text
    [patient] = _patients(portal, CHILD)
    with portal.db.session() as session:
        consent = session.execute(
            select(Consent).where(Consent.patient_id == patient.id)
        ).scalar_one()
    assert consent.resource["performer"] == [{"display": "Claire Morel (mère)"}]


def test_pharmacists_open_records_doctors_do_not(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        login(client, LEGALL, "ps")
        letter = _open(client)
        assert letter.status_code == 200
    [patient] = _patients(portal, ADULT)
    with portal.db.session() as session:
        record = session.get(Record, patient.id)
        assert record is not None and record.channel == "pharmacie"
    with httpx.Client(base_url=portal.base) as client:
        login(client, DUPONT, "ps")
        assert client.get("/portail/guichet").status_code == 403
