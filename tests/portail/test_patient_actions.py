"""The patient's gestures from the portal, and their effect seen from the API side (the same
policy decides both): mask, block, oppose, médecin traitant, close; the notifications inbox.
Rules from dmp-access.md: R21 (mask: author and MT keep it), G4 (blocked PS), R17/R35
(opposition to bris de glace), R37 (MT), closure."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from parcours.dossier.samples import PATIENT_INS
from parcours.notify.channels import configured_channels
from parcours.notify.worker import run_once
from tests.portail.conftest import Portal, _hidden_fields, break_the_glass, login
from tests.scenario import LEGALL, MARTIN


@pytest.fixture
def patient(portal: Portal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal.base) as client:
        login(client, PATIENT_INS)
        yield client


def _csrf(client: httpx.Client, path: str = "/portail/patient/parametres") -> str:
    return _hidden_fields(client.get(path).text)["csrf"]


def _api_read(portal: Portal, who: str, doc: str) -> int:
    return portal.dmp.call("GET", f"/fhir/DocumentReference/{doc}", who).status_code


def test_masking_hides_a_document_from_professionals_but_not_its_author(
    portal: Portal, patient: httpx.Client
) -> None:
    doc = portal.documents["compte_rendu"]
    portal.dmp.tokens["martin"] = _martin(portal)
    assert _api_read(portal, "martin", doc) == 200
    confirm = patient.get(f"/portail/patient/documents/{doc}/masquage")
    assert confirm.status_code == 200 and "Ce que cela change" in confirm.text
    # Without the CSRF token: refused, nothing changed.
    forged = patient.post(f"/portail/patient/documents/{doc}/masquage", data={"masquer": "oui"})
    assert forged.status_code == 403 and _api_read(portal, "martin", doc) == 200
    done = patient.post(
        f"/portail/patient/documents/{doc}/masquage",
        data={"masquer": "oui", "csrf": _hidden_fields(confirm.text)["csrf"]},
    )
    assert done.status_code == 303
    page = patient.get(done.headers["location"])
    assert "Masqué aux professionnels de santé" in page.text
    assert _api_read(portal, "martin", doc) == 403  # authorised PS, not author nor MT (R21)
    assert _api_read(portal, "dupont", doc) == 200  # the author and médecin traitant
    again = patient.post(
        f"/portail/patient/documents/{doc}/masquage",
        data={"masquer": "non", "csrf": _hidden_fields(page.text)["csrf"]},
    )
    assert again.status_code == 303 and _api_read(portal, "martin", doc) == 200


def _martin(portal: Portal) -> str:
    from tests.dossier.conftest import _token

    return _token(
        portal.dmp.settings,
        "8" + MARTIN,
        {"actor": "professional", "idnat_ps": "8" + MARTIN, "profession": "10"},
    )


def test_blocking_a_professional_by_rpps(portal: Portal, patient: httpx.Client) -> None:
    doc = portal.documents["compte_rendu"]
    portal.dmp.tokens["martin"] = _martin(portal)
    url = "/portail/patient/parametres"
    # A wrong key and an unknown number: a sentence, the typed value kept, nothing changed.
    bad = MARTIN[:-1] + str((int(MARTIN[-1]) + 1) % 10)
    refused = patient.post(url, data={"action": "block", "rpps": bad, "csrf": _csrf(patient)})
    assert refused.status_code == 400 and "invalide" in refused.text
    assert f'value="{bad}"' in refused.text
    unknown = "10000000033"
    refused = patient.post(url, data={"action": "block", "rpps": unknown, "csrf": _csrf(patient)})
    assert refused.status_code == 400 and "Aucun professionnel" in refused.text
    assert _api_read(portal, "martin", doc) == 200
    done = patient.post(url, data={"action": "block", "rpps": MARTIN, "csrf": _csrf(patient)})
    assert done.status_code == 303
    page = patient.get(done.headers["location"])
    assert "ne peut plus accéder" in page.text and "Paul Martin" in page.text
    assert _api_read(portal, "martin", doc) == 403  # G4
    patient.post(url, data={"action": "unblock", "rpps": MARTIN, "csrf": _csrf(patient)})
    assert _api_read(portal, "martin", doc) == 200


def test_opposing_bris_de_glace(portal: Portal, patient: httpx.Client) -> None:
    doc = portal.documents["compte_rendu"]
    url = "/portail/patient/parametres"
    done = patient.post(
        url, data={"action": "oppose-bris-de-glace", "valeur": "oui", "csrf": _csrf(patient)}
    )
    assert done.status_code == 303
    assert "Autoriser de nouveau l'accès en urgence" in patient.get(url).text
    emergency = portal.dmp.call(
        "GET",
        f"/fhir/DocumentReference/{doc}",
        "urgentiste",
        headers={"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "inconscient"},
    )
    assert emergency.status_code == 403 and "R17" in emergency.text


def test_designating_the_medecin_traitant(portal: Portal, patient: httpx.Client) -> None:
    url = "/portail/patient/parametres"
    assert "Élise Dupont" in patient.get(url).text  # designated by the fixture
    # A pharmacist cannot be médecin traitant: the policy's reason is shown (R37).
    refused = patient.post(
        url, data={"action": "designate-mt", "rpps": LEGALL, "csrf": _csrf(patient)}
    )
    assert refused.status_code == 400 and "R37" in refused.text
    assert "Élise Dupont" in patient.get(url).text


def test_notifications_inbox_after_an_emergency_access(
    portal: Portal, patient: httpx.Client
) -> None:
    break_the_glass(portal, portal.documents["compte_rendu"])
    run_once(portal.db, configured_channels(portal.dmp.settings))
    inbox = patient.get("/portail/patient/notifications")
    assert inbox.status_code == 200
    before = _unread(inbox.text)
    emergency = inbox.text.split("urgence", 1)[0].rsplit('href="/portail/patient/notifications/', 1)
    link = emergency[1].split('"', 1)[0]
    message = patient.get(f"/portail/patient/notifications/{link}")
    assert message.status_code == 200 and "urgence" in message.text.lower()
    assert _unread(patient.get("/portail/patient/notifications").text) == before - 1
    # Someone else's message id answers like an unknown one.
    assert patient.get("/portail/patient/notifications/inconnu").status_code == 404


def _unread(html: str) -> int:
    import re

    found = re.search(r"(\d+) non lus?</strong>", html)
    return int(found.group(1)) if found else 0


def test_closing_the_record_needs_an_explicit_confirmation(
    portal: Portal, patient: httpx.Client
) -> None:
    doc = portal.documents["compte_rendu"]
    csrf = _csrf(patient, "/portail/patient/fermeture")
    unconfirmed = patient.post("/portail/patient/fermeture", data={"csrf": csrf, "motif": "essai"})
    assert unconfirmed.status_code == 400 and "Cochez la case" in unconfirmed.text
    assert "essai" in unconfirmed.text  # what was typed is kept
    assert _api_read(portal, "dupont", doc) == 200
    closed = patient.post(
        "/portail/patient/fermeture", data={"csrf": csrf, "motif": "essai", "confirme": "oui"}
    )
    assert closed.status_code == 303
    assert "Votre dossier est fermé" in patient.get(closed.headers["location"]).text
    assert "Votre dossier est fermé" in patient.get("/portail/patient/parametres").text
    assert _api_read(portal, "dupont", doc) in (403, 404)


def test_a_patient_only_ever_reaches_his_own_record(portal: Portal) -> None:
    """Another patient, logged in: the first patient's document ids answer 403/404."""
    other = "279035121518989"  # a valid INS with no record here
    with httpx.Client(base_url=portal.base) as client:
        login(client, other)
        assert "pas encore de dossier" in client.get("/portail/patient").text
        doc = portal.documents["compte_rendu"]
        assert client.get(f"/portail/patient/documents/{doc}").status_code in (403, 404)
        assert client.get(f"/portail/patient/documents/{doc}/contenu").status_code in (403, 404)
