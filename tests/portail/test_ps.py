"""WebPS over HTTP: login by RPPS through the IdP, the patient found by INS (key checked, never
in a URL), the record in the profession's order with the VSM first, keyword search, the bris de
glace flow (justification, banner, trace, notification), the professional's own history."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.dossier.samples import PATIENT_INS, cda
from parcours.notify.models import Notification
from tests.portail.conftest import Portal, _hidden_fields, login
from tests.scenario import DUPONT, LEGALL, MARTIN


@pytest.fixture
def ps_client(portal: Portal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal.base) as client:
        yield client


def _open(client: httpx.Client, ins: str) -> httpx.Response:
    csrf = _hidden_fields(client.get("/portail/ps").text)["csrf"]
    return client.post("/portail/ps/recherche", data={"ins": ins, "csrf": csrf})


def _sections(html: str) -> list[str]:
    return re.findall(r'<section class="espace" id="([a-z-]+)"', html)


def test_the_medecin_traitant_finds_his_patient_and_reads_the_record_vsm_first(
    portal: Portal, ps_client: httpx.Client
) -> None:
    vsm = portal.dmp.publish_one(
        data=cda("Antécédents : HTA. Traitement : amlodipine."),
        title="Volet de synthèse médicale",
        type_code="60591-5",
        class_code="11",
    )
    assert login(ps_client, DUPONT, "ps").headers["location"] == "/portail/ps"
    home = ps_client.get("/portail/ps")
    assert "authentification forte" in home.text and "Médecin" in home.text
    assert "Anne LEFÈVRE" in home.text  # his patientèle: he is her médecin traitant
    # A wrong INS key is explained, the typed value kept; nothing in any URL.
    wrong = PATIENT_INS[:-2] + ("00" if PATIENT_INS[-2:] != "00" else "01")
    refused = _open(ps_client, wrong)
    assert refused.status_code == 400 and "clé" in refused.text.lower()
    assert f'value="{wrong}"' in refused.text
    found = _open(ps_client, PATIENT_INS)
    assert found.status_code == 303 and PATIENT_INS not in found.headers["location"]
    record = ps_client.get(found.headers["location"])
    assert record.status_code == 200
    html = record.text
    # The VSM block comes before the spaces, naming the médecin traitant's synthesis.
    block = html[html.index('id="t-vsm"') : html.index("</section>", html.index('id="t-vsm"'))]
    assert f"/documents/{vsm}" in block and "médecin traitant" in block
    assert _sections(html)[0] == "synthese"  # a doctor's profile: synthesis first


def test_a_nurse_sees_the_treatments_first(portal: Portal, ps_client: httpx.Client) -> None:
    login(ps_client, MARTIN, "ps")  # the Annuaire says: infirmier (60); authorised by the patient
    record = ps_client.get(_open(ps_client, PATIENT_INS).headers["location"])
    assert record.status_code == 200
    assert _sections(record.text)[0] == "traitements"


def test_keyword_search_in_the_record(portal: Portal, ps_client: httpx.Client) -> None:
    login(ps_client, DUPONT, "ps")
    page = _open(ps_client, PATIENT_INS).headers["location"]
    csrf = _hidden_fields(ps_client.get(page).text)["csrf"]
    found = ps_client.post(page + "/recherche", data={"mots": "artérielle", "csrf": csrf})
    assert found.status_code == 200
    assert "Compte rendu de consultation du 12 juin" in found.text
    assert "Note de vaccination" not in found.text
    assert "1 document contenant « artérielle »" in found.text


def test_bris_de_glace_flow(portal: Portal, ps_client: httpx.Client) -> None:
    login(ps_client, LEGALL, "ps")  # a pharmacist of the Annuaire with no basis on this record
    page = _open(ps_client, PATIENT_INS).headers["location"]
    refusal = ps_client.get(page)
    assert refusal.status_code == 403 and "bris de glace" in refusal.text
    csrf = _hidden_fields(refusal.text)["csrf"]
    short = ps_client.post(
        page + "/bris-de-glace",
        data={"justification": "urgence", "engagement": "oui", "csrf": csrf},
    )
    assert (
        short.status_code == 400
        and "au moins" in short.text
        and ">urgence</textarea>" in short.text
    )
    unchecked = ps_client.post(
        page + "/bris-de-glace",
        data={"justification": "Patient inconscient aux urgences", "csrf": csrf},
    )
    assert unchecked.status_code == 400 and "Cochez la case" in unchecked.text
    granted = ps_client.post(
        page + "/bris-de-glace",
        data={
            "justification": "Patient inconscient aux urgences",
            "engagement": "oui",
            "csrf": csrf,
        },
    )
    assert granted.status_code == 303
    record = ps_client.get(page)
    assert record.status_code == 200
    assert "Accès en urgence (bris de glace)" in record.text
    assert "Patient inconscient aux urgences" in record.text
    with portal.db.session() as session:
        trace = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.actor_id == "8" + LEGALL, AuditEvent.outcome == 200)
                .order_by(AuditEvent.seq.desc())
            )
            .scalars()
            .first()
        )
        assert trace is not None and trace.access_mode == "bris_de_glace"
        assert trace.justification == "Patient inconscient aux urgences"
        events = set(session.execute(select(Notification.event)).scalars())
    assert "bris-de-glace" in events  # the holder and the médecin traitant are told
    history = ps_client.get("/portail/ps/historique")
    assert history.status_code == 200 and '<tr class="urgence' in history.text


def test_spaces_are_not_interchangeable(portal: Portal) -> None:
    """A patient's session does not open WebPS, a professional's does not open the patient
    space: each redirects to its own login."""
    with httpx.Client(base_url=portal.base) as client:
        login(client, PATIENT_INS)
        assert client.get("/portail/ps").headers["location"].startswith("/portail/")
        assert client.get("/portail/ps").status_code == 303
    with httpx.Client(base_url=portal.base) as client:
        login(client, DUPONT, "ps")
        assert client.get("/portail/patient").status_code == 303


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _upload(client: httpx.Client, page: str, **fields: object) -> httpx.Response:
    csrf = _hidden_fields(client.get(page + "/depot").text)["csrf"]
    data = {
        "csrf": csrf,
        "type": "11488-4",
        "titre": "CR de téléconsultation",
        "date": "2026-06-20",
    }
    data.update({k: str(v) for k, v in fields.items() if k != "fichier"})
    content = fields.get("fichier", PDF)
    return client.post(
        page + "/depot", data=data, files={"fichier": ("cr.pdf", content, "application/pdf")}
    )


def test_publishing_an_uploaded_pdf(portal: Portal, ps_client: httpx.Client) -> None:
    login(ps_client, DUPONT, "ps")
    page = _open(ps_client, PATIENT_INS).headers["location"]
    before = portal.dmp.counts()
    # Refusals keep the form and store nothing: not a PDF/CDA, no title, a date to come.
    fake = _upload(ps_client, page, fichier=b"MZ\x90\x00 not a document")
    assert fake.status_code == 400 and "Format non reconnu" in fake.text
    assert 'value="CR de téléconsultation"' in fake.text
    assert _upload(ps_client, page, titre="  ").status_code == 400
    future = _upload(ps_client, page, date="2999-01-01")
    assert future.status_code == 400 and "futur" in future.text
    assert portal.dmp.counts() == before
    done = _upload(ps_client, page, masque="oui")
    assert done.status_code == 303, done.text
    record = ps_client.get(done.headers["location"])
    assert "Document déposé" in record.text and "CR de téléconsultation" in record.text
    # The API sees the same document, with the metadata built from the Annuaire.
    found = portal.dmp.call(
        "GET", f"/fhir/DocumentReference?patient={portal.dmp.patient_id}&status=current"
    ).json()
    doc = next(
        e["resource"]
        for e in found["entry"]
        if e["resource"]["content"][0]["attachment"]["title"] == "CR de téléconsultation"
    )
    assert doc["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert doc["category"][0]["coding"][0]["code"] == "10"  # ASS_X04: 11488-4 → class 10
    labels = {c["code"] for lab in doc["securityLabel"] for c in lab["coding"]}
    assert "MASQUE_PS" in labels
    assert "TRE_R02-SecteurActivite" in doc["context"]["facilityType"]["coding"][0]["system"]
    url = doc["content"][0]["attachment"]["url"]
    assert portal.dmp.call("GET", url[url.index("/fhir/") :]).content == PDF


def test_an_oversized_upload_is_refused_before_it_is_read(
    portal: Portal, ps_client: httpx.Client
) -> None:
    login(ps_client, DUPONT, "ps")
    page = _open(ps_client, PATIENT_INS).headers["location"]
    limit = portal.dmp.store.max_document_bytes
    response = _upload(ps_client, page, fichier=PDF + b"0" * (limit + 100_000))
    assert response.status_code == 413 and "taille admise" in response.text


def test_every_proposed_type_has_its_class() -> None:
    from parcours.dossier import authoring
    from parcours.dossier import terminology as term

    kinds = authoring.document_types()
    assert len(kinds) >= 8
    for kind in kinds:
        assert term.expected_class("http://loinc.org", kind.code) == kind.class_code
