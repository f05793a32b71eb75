"""Filing a received XDM into the DMP (``messagerie/filing.py``).

The DMP is the real one (migrated database of the ``db`` fixture, a patient whose record was
opened by consent, the médecin traitant and an authorised professional designated by the
patient, as ``tests/dossier`` does); archives are real ``IHE_XDM.ZIP`` built by
``xdm.build_xdm``; operators A and B run as in ``tests/messagerie/conftest.py``.

Oracles: reference ``mssante.md`` §4.4 and §7.5 (MDN-1..MDN-4, the CI-SIS error MDN
``processed/Error: 902^Identifiant patient inconnu``, subject ``[KO Intégration système !]``),
``dmp-pdsm.md`` §1.1 (ITI-65 atomicity: a refusal leaves no row and no blob), the CI-SIS error
table (IG ``error-codes``) and the DMP policy (R27: only a professional in charge of the
patient files into his record).
"""

from __future__ import annotations

import email
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from parcours.annuaire import directory
from parcours.app import create_app
from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.dossier.samples import OTHER_INS, PATIENT_INS
from parcours.dossier.store import open_store
from parcours.messagerie import filing, queue, reports, service, xdm
from parcours.messagerie.mailstore import FolderNotFound
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.operator import Operator
from parcours.storage.db import Database
from tests.dossier.conftest import Dmp, _token, grant_access, open_record
from tests.messagerie.conftest import (
    CH_RENNES,
    DOMAIN_A,
    DOMAIN_B,
    DUPONT_A,
    LEGALL_A,
    MARTIN_B,
    PATIENTS_A,
    Pair,
)
from tests.messagerie.test_exchange import letter, wait_for
from tests.messagerie.test_xdm import PDF, document
from tests.messagerie.test_xdm import build as build_package
from tests.scenario import DUPONT, LEGALL, MARTIN

FILING_A = filing.filing_address(DOMAIN_A)
TRE_A03, LOINC = xdm.OID_TRE_A03_CLASSE_DOCUMENT, xdm.OID_LOINC
DUPONT_AUTHOR = xdm.XdmAuthor(
    idnps="8" + DUPONT,
    family_name="DUPONT",
    given_name="Élise",
    institution_idnst=CH_RENNES,
    institution_name="CH Rennes",
)
LEGALL_AUTHOR = xdm.XdmAuthor(idnps="8" + LEGALL, family_name="LE GALL", given_name="Yann")
SUBJECT = "XDM/1.0/DDM+Compte rendu de consultation LEFEVRE Anne 03/12/1984"


# -- documents of the DMP patient (open_record: Lefèvre Anne, female, 1984-12-03) -------------


def patient_cda(
    *,
    ins: str | None = PATIENT_INS,
    family: str = "LEFÈVRE",
    given: str = "Anne",
    gender: str = "F",
    birth: str = "19841203",
    text: str = "Examen clinique normal.",
) -> bytes:
    """A CDA R2 consultation note whose recordTarget is the DMP patient (INS + traits)."""
    identifier = f'<id root="{xdm.INS_OID_NIR}" extension="{ins}"/>' if ins else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.7.2.1"/>
  <code code="11488-4" codeSystem="{LOINC}" displayName="Note de consultation"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20240531143000+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole>{identifier}
    <patient><name><given>{given}</given><family qualifier="BR">{family}</family></name>
      <administrativeGenderCode code="{gender}" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="{birth}"/></patient></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="text/plain">{text}</text></nonXMLBody></component>
</ClinicalDocument>
""".encode()


def new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def cda_doc(content: bytes | None = None, **overrides: Any) -> xdm.XdmDocument:
    overrides.setdefault("author", DUPONT_AUTHOR)
    return document(content or patient_cda(), "text/xml", new_oid(), **overrides)


def pdf_doc(**overrides: Any) -> xdm.XdmDocument:
    overrides.setdefault("author", DUPONT_AUTHOR)
    overrides.setdefault("title", "Version PDF")
    return document(PDF, "application/pdf", new_oid(), **overrides)


def archive(
    documents: list[xdm.XdmDocument] | None = None,
    *,
    ins: str = PATIENT_INS,
    author: xdm.XdmAuthor = DUPONT_AUTHOR,
) -> bytes:
    return build_package(
        documents or [cda_doc(), pdf_doc()],
        patient_ins=ins,
        author=author,
        submission_set_unique_id=new_oid(),
    )


def message(
    sender: str,
    package: bytes | None,
    *,
    notification: bool = True,
    to: str = FILING_A,
) -> EmailMessage:
    extra = {"Disposition_Notification_To": sender} if notification else {}
    msg = letter(sender, to, subject=SUBJECT, X_MSS_NIL="DEV000001", **extra)
    if package is not None:
        msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return msg


def wire(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=policy.SMTP)


# -- fixture ------------------------------------------------------------------------------------


@dataclass
class Filing:
    pair: Pair
    dmp: Dmp

    @property
    def op(self) -> Operator:
        return self.pair.a

    def file(self, msg: EmailMessage, sender: str) -> filing.FilingOutcome:
        return filing.file_message(
            self.op.ctx, self.dmp.store, wire(msg), sender=sender, recipient=FILING_A
        )

    def inbox(self, address: str, op: Operator | None = None) -> list[bytes]:
        store = (op or self.op).ctx.mailstore
        try:
            infos = store.messages(address, "INBOX")
        except FolderNotFound:
            return []
        return [store.fetch_raw(address, "INBOX", info.uid) for info in infos]

    def documents(self, who: str = "martin") -> list[dict[str, Any]]:
        """ITI-67 for an authorised reader (the patient's authorisation, R12)."""
        response = self.dmp.call(
            "GET", f"/fhir/DocumentReference?patient={self.dmp.patient_id}&status=current", who
        )
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    def traces(self, action: str = "create") -> list[AuditEvent]:
        with self.dmp.db.session() as session:
            rows = list(
                session.execute(
                    select(AuditEvent)
                    .where(
                        AuditEvent.patient_id == self.dmp.patient_id,
                        AuditEvent.action == action,
                        AuditEvent.resource_type == "DocumentReference",
                    )
                    .order_by(AuditEvent.seq)
                ).scalars()
            )
            session.expunge_all()
        return rows


@pytest.fixture
def env(operators: Pair, db: Database) -> Iterator[Filing]:
    settings = operators.settings
    store = open_store(settings)
    dmp = Dmp(TestClient(create_app(settings, db, store)), db, settings, store)
    dmp.tokens = {
        "martin": _token(
            settings,
            "8" + MARTIN,
            {"actor": "professional", "idnat_ps": "8" + MARTIN, "profession": "10"},
        ),
        "patient": _token(settings, "patient", {"actor": "patient", "ins": PATIENT_INS}),
        "agent": _token(settings, "CPAM35-A001", {"actor": "agent", "agent_id": "CPAM35-A001"}),
    }
    dmp.patient_id = open_record(dmp)
    grant_access(dmp, "designate-mt", "8" + DUPONT)  # R10: Dr Dupont is his médecin traitant
    grant_access(dmp, "grant", "8" + MARTIN)  # R12: Dr Martin holds his authorisation
    service.create_mailbox(
        db,
        address=FILING_A,
        kind="APP",
        owner=CH_RENNES,
        hosted_domains=(DOMAIN_A, PATIENTS_A),
        cert_der=operators.certs["dpi"].der,
        description="Dépôt dans le DMP",
    )
    filing.register_store(operators.a.ctx, store)
    try:
        yield Filing(operators, dmp)
    finally:
        filing.unregister_store(operators.a.ctx)


def filing_events(env: Filing) -> list[AuditEvent]:
    """The message events of the filing mailbox's chain (its creation aside)."""
    return [e for e in service.events_of(env.op.db, FILING_A) if e.action == filing.FILING_EVENT]


# -- success ------------------------------------------------------------------------------------


def test_filed_document_is_in_the_dmp_traced_and_acknowledged(env: Filing) -> None:
    """MDN-1: processed, Original-Message-ID = the original's; the documents are readable by an
    authorised professional; the trace in the record's chain names the sender."""
    content = patient_cda(text="Souffle systolique 2/6, pas d'insuffisance cardiaque.")
    msg = message(DUPONT_A, archive([cda_doc(content), pdf_doc()]))

    outcome = env.file(msg, DUPONT_A)

    assert outcome.status == "filed", outcome
    assert outcome.error is None and len(outcome.document_ids) == 2
    assert outcome.actor == "8" + DUPONT and outcome.patient_id == env.dmp.patient_id
    assert (outcome.report, outcome.report_to) == ("mdn", DUPONT_A)

    found = {d["id"]: d for d in env.documents()}
    assert set(found) == set(outcome.document_ids)
    cda_ref = next(
        d for d in found.values() if d["content"][0]["attachment"]["contentType"] == "text/xml"
    )
    assert cda_ref["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "11488-4",
        "display": "Note de consultation",
    }
    assert cda_ref["category"][0]["coding"][0]["code"] == "10"
    assert cda_ref["subject"]["reference"] == f"Patient/{env.dmp.patient_id}"
    binary = cda_ref["content"][0]["attachment"]["url"]
    got = env.dmp.call("GET", "/fhir/Binary/" + binary.rsplit("Binary/", 1)[1], "martin")
    assert got.status_code == 200 and got.content == content

    traces = env.traces()
    assert {t.resource_id for t in traces} == set(outcome.document_ids)
    for trace in traces:
        assert (trace.actor_kind, trace.actor_id, trace.outcome) == (
            "professional",
            "8" + DUPONT,
            201,
        )
        assert trace.chain == env.dmp.patient_id and trace.rule  # the record's chain, R27's basis
    assert verify(env.dmp.db).ok

    [raw] = env.inbox(DUPONT_A)
    mdn = reports.parse_mdn(raw)
    assert mdn.disposition_type == "processed" and not mdn.is_error
    assert mdn.original_message_id == msg["Message-ID"]
    assert mdn.final_recipient == FILING_A
    assert (mdn.subject or "").startswith("XDM/1.0/DDM")
    assert mdn.attachments == ()  # nothing sent back on success

    events = filing_events(env)
    assert [e.outcome for e in events] == [201]
    assert "Compte rendu" not in (events[0].query or "")  # never a subject in a trace


def test_success_without_notification_request_answers_nothing(env: Filing) -> None:
    outcome = env.file(message(DUPONT_A, archive(), notification=False), DUPONT_A)

    assert outcome.status == "filed" and outcome.report is None
    assert len(env.documents()) == 2
    assert env.inbox(DUPONT_A) == []


def test_type_class_mismatch_is_filed_with_the_dmp_warning(env: Filing) -> None:
    """The document service accepts a type/class pair outside ASS_X04 with a warning (defect D5
    of the official examples; docs/dossier.md): the mail channel applies the same rule."""
    synthesis = xdm.class_code("11", "Synthèse")  # 11488-4 is a Compte rendu (10)
    outcome = env.file(message(DUPONT_A, archive([cda_doc(class_code=synthesis)])), DUPONT_A)

    assert outcome.status == "filed"
    assert any("ASS_X04" in w for w in outcome.warnings)


def test_same_message_twice_is_filed_once(env: Filing) -> None:
    """A client retrying after a lost 250 sends the same Message-ID: one filing, one MDN."""
    msg = message(DUPONT_A, archive())
    assert env.file(msg, DUPONT_A).status == "filed"

    again = env.file(msg, DUPONT_A)

    assert again.status == "duplicate"
    assert len(env.documents()) == 2
    assert len(env.inbox(DUPONT_A)) == 1
    assert [e.outcome for e in filing_events(env)] == [208, 201]  # newest first


# -- refusals -----------------------------------------------------------------------------------


def counts(env: Filing) -> tuple[int, int, int]:
    return env.dmp.counts()  # (documents, submissions, blobs)


def error_mdn(env: Filing, address: str = DUPONT_A) -> reports.Mdn:
    [raw] = env.inbox(address)
    return reports.parse_mdn(raw)


def test_unknown_patient_gets_mdn_902_with_the_attachments_back(env: Filing) -> None:
    """MDN-2: processed/Error: 902^Identifiant patient inconnu, KO subject, attachments."""
    before = counts(env)
    msg = message(DUPONT_A, archive([cda_doc(patient_cda(ins=OTHER_INS))], ins=OTHER_INS))

    outcome = env.file(msg, DUPONT_A)

    assert outcome.status == "refused"
    assert outcome.error == ("902", "Identifiant patient inconnu")
    assert counts(env) == before
    mdn = error_mdn(env)
    assert mdn.disposition == (
        "automatic-action/MDN-sent-automatically; processed/Error: 902^Identifiant patient inconnu"
    )
    assert (mdn.error_code, mdn.error_label) == ("902", "Identifiant patient inconnu")
    assert mdn.subject == f"[KO Intégration système !][902] {SUBJECT}"
    assert "IHE_XDM.ZIP" in mdn.attachments
    assert mdn.original_message_id == msg["Message-ID"]


def test_patient_without_an_open_record_is_unknown_to_the_sender(env: Filing) -> None:
    """G2: whether a person has a DMP is never revealed; a known INS without a record is 902,
    the policy's refusal traced in that patient's chain."""
    env.dmp.tokens["dupont"] = _token(
        env.dmp.settings,
        "8" + DUPONT,
        {"actor": "professional", "idnat_ps": "8" + DUPONT, "profession": "10"},
    )
    created = env.dmp.call(
        "POST",
        "/fhir/Patient",
        "agent",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:" + xdm.INS_OID_NIR, "value": OTHER_INS}],
            "name": [{"family": "Martin", "given": ["Léa"]}],
            "gender": "female",
            "birthDate": "1990-05-05",
        },
    )
    assert created.status_code in (200, 201), created.text
    other = created.json()["id"]
    content = patient_cda(ins=OTHER_INS, family="MARTIN", given="Léa", birth="19900505")
    outcome = env.file(message(DUPONT_A, archive([cda_doc(content)], ins=OTHER_INS)), DUPONT_A)

    assert outcome.error == ("902", "Identifiant patient inconnu")
    with env.dmp.db.session() as session:
        refused = session.execute(
            select(AuditEvent.outcome, AuditEvent.rule).where(
                AuditEvent.patient_id == other,
                AuditEvent.action == "create",
                AuditEvent.resource_type == "DocumentReference",
            )
        ).all()
    assert refused and all(code >= 400 and rule for code, rule in refused)


def test_invalid_metadata_refused_atomically(env: Filing) -> None:
    """A class outside TRE_A03 is an error of the PDSm validation (constr-bind-category): 906,
    nothing published, no blob left, the refusal traced in the record's chain."""
    before = counts(env)
    bad = cda_doc(class_code=xdm.Code("99", "Inexistante", TRE_A03))
    msg = message(DUPONT_A, archive([pdf_doc(), bad]))

    outcome = env.file(msg, DUPONT_A)

    assert outcome.status == "refused" and outcome.error is not None
    assert outcome.error[0] == "906"
    assert "TRE_A03" in outcome.error[1]
    assert counts(env) == before
    assert env.dmp.store.blobs.keys() == []
    assert env.documents() == []
    mdn = error_mdn(env)
    assert mdn.error_code == "906" and "IHE_XDM.ZIP" in mdn.attachments
    traces = env.traces()
    assert len(traces) == 2 and {t.outcome for t in traces} == {400}
    assert all(t.actor_id == "8" + DUPONT for t in traces)


def test_policy_refusal_is_traced_as_refused(env: Filing) -> None:
    """R27: a pharmacist with no care relationship, consent or authorisation may not file."""
    before = counts(env)
    package = archive([cda_doc(author=LEGALL_AUTHOR)], author=LEGALL_AUTHOR)

    outcome = env.file(message(LEGALL_A, package), LEGALL_A)

    assert outcome.status == "refused" and outcome.error is not None
    assert outcome.error[0] == "906" and "R27" in outcome.error[1]
    assert outcome.rule == "R27" and outcome.patient_id == env.dmp.patient_id
    assert counts(env) == before
    [trace] = env.traces()
    assert (trace.actor_id, trace.outcome, trace.rule) == ("8" + LEGALL, 403, "R27")
    assert trace.chain == env.dmp.patient_id
    assert error_mdn(env, LEGALL_A).error_code == "906"
    assert verify(env.dmp.db).ok


def test_error_without_notification_request_is_a_plain_mail(env: Filing) -> None:
    """MDN-3: a "courriel standard" with the code in the subject, not a report."""
    msg = message(
        DUPONT_A, archive([cda_doc(patient_cda(ins=OTHER_INS))], ins=OTHER_INS), notification=False
    )

    outcome = env.file(msg, DUPONT_A)

    assert (outcome.status, outcome.report) == ("refused", "error-mail")
    [raw] = env.inbox(DUPONT_A)
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail.get_content_type() == "multipart/mixed"
    assert mail["Subject"] == f"[KO Intégration système !][902] {SUBJECT}"
    assert mail["From"] == FILING_A and mail["To"] == DUPONT_A
    names = [p.get_filename() for p in mail.iter_attachments()]
    assert "IHE_XDM.ZIP" in names
    with pytest.raises(reports.ReportError):
        reports.parse_mdn(raw)


def test_no_automatic_mdn_to_another_address_than_the_return_path(env: Filing) -> None:
    """MDN-4 (RFC 8098 §2.1): Disposition-Notification-To ≠ Return-Path, no automatic MDN; the
    failure is still reported to the envelope sender, as a plain mail."""
    msg = message(DUPONT_A, archive([cda_doc(patient_cda(ins=OTHER_INS))], ins=OTHER_INS))
    msg.replace_header("Disposition-Notification-To", LEGALL_A)

    outcome = env.file(msg, DUPONT_A)

    assert (outcome.report, outcome.report_to) == ("error-mail", DUPONT_A)
    assert env.inbox(LEGALL_A) == []
    [raw] = env.inbox(DUPONT_A)
    assert email.message_from_bytes(raw).get_content_type() == "multipart/mixed"


def test_message_without_xdm_is_refused(env: Filing) -> None:
    outcome = env.file(message(DUPONT_A, None), DUPONT_A)

    assert outcome.status == "refused" and outcome.error is not None
    assert outcome.error[0] == "906" and "IHE_XDM.ZIP" in outcome.error[1]
    assert error_mdn(env).error_code == "906"
    assert env.traces() == []  # no record concerned: only the message event
    assert [e.outcome for e in filing_events(env)] == [906]


def test_cda_identity_must_match_the_record(env: Filing) -> None:
    """CI-SIS 904: the CDA's traits differ from the record's identity (birth date)."""
    before = counts(env)
    content = patient_cda(birth="19841204")
    outcome = env.file(message(DUPONT_A, archive([cda_doc(content)])), DUPONT_A)

    assert outcome.error == (
        "904",
        reports.MDN_ERROR_CODES["904"].label,
    )
    assert "date de naissance" in outcome.detail
    assert counts(env) == before


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (patient_cda(ins=None), "903"),
        (patient_cda(given=""), "905"),
    ],
    ids=["no-ins", "incomplete-traits"],
)
def test_cda_without_qualified_ins(env: Filing, content: bytes, code: str) -> None:
    outcome = env.file(message(DUPONT_A, archive([cda_doc(content)])), DUPONT_A)

    assert outcome.error is not None and outcome.error[0] == code
    assert env.documents() == []


def test_sender_without_professional_identity_is_refused(env: Filing) -> None:
    """An address of another operator that carries no professional in the Annuaire: 906, and
    the error report leaves through the relay queue with a null reverse-path."""
    stranger = f"secretariat@{DOMAIN_B}"

    outcome = env.file(message(stranger, archive()), stranger)

    assert outcome.status == "refused" and outcome.error is not None
    assert outcome.error[0] == "906" and outcome.report == "mdn"
    assert counts(env)[0] == 0
    with env.op.db.session() as session:
        rows = session.execute(select(QueuedMessage.mail_from, QueuedMessage.recipient)).all()
    assert rows == [("", stranger)]


def test_reports_and_null_senders_are_never_answered(env: Filing) -> None:
    mdn = reports.build_mdn(
        message(DUPONT_A, None),
        final_recipient=DUPONT_A,
        to_address=FILING_A,
        from_address=DUPONT_A,
    )
    as_report = filing.file_message(
        env.op.ctx, env.dmp.store, mdn, sender=DUPONT_A, recipient=FILING_A
    )
    null = env.file(message(DUPONT_A, archive()), "")

    assert (as_report.status, null.status) == ("ignored", "ignored")
    assert env.inbox(DUPONT_A) == [] and counts(env)[0] == 0


# -- through the SMTP servers (the queue.accept hook) --------------------------------------------


def test_end_to_end_submission_to_the_filing_address(env: Filing) -> None:
    """Dr Dupont's mail client submits to dmp@ over A's submission port; the document is in the
    DMP and the MDN in his INBOX when the 250 comes back."""
    pair = env.pair
    msg = message(DUPONT_A, archive())
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        assert client.send_message(msg) == {}

    assert len(env.documents()) == 2
    [raw] = env.inbox(DUPONT_A)
    assert reports.parse_mdn(raw).original_message_id == msg["Message-ID"]
    assert env.inbox(FILING_A) == []  # filed, not delivered


def send_from_b(env: Filing) -> EmailMessage:
    """Dr Martin at operator B (the patient's authorised professional) writes to A's filing
    address; the national directory lists his B mailbox (on liste rouge: hidden from searches,
    still a professional's mailbox)."""
    pair = env.pair
    with pair.a.db.session() as session:
        directory.publish_mailbox(
            session,
            address=MARTIN_B,
            kind="PER",
            practitioner_id="8" + MARTIN,
            organization_id=None,
            liste_rouge=True,
        )
    author = xdm.XdmAuthor(idnps="8" + MARTIN, family_name="MARTIN", given_name="Paul")
    msg = message(MARTIN_B, archive([cda_doc(author=author)], author=author))
    with pair.smtp(pair.b, MARTIN_B, pair.token("8" + MARTIN)) as client:
        assert client.send_message(msg) == {}
    return msg


def test_end_to_end_from_another_operator(env: Filing) -> None:
    """A's relay receives, the Annuaire gives the sender's RPPS, the document is filed and the
    MDN leaves A's queue with a null reverse-path (RFC 8098 §3) for B."""
    msg = send_from_b(env)

    wait_for(lambda: filing_events(env))  # written last, once the MDN is queued
    assert len(env.documents()) == 1
    [trace] = env.traces()
    assert trace.actor_id == "8" + MARTIN and trace.outcome == 201
    with env.op.db.session() as session:
        [row] = session.execute(select(QueuedMessage)).scalars()
        session.expunge(row)
    assert (row.mail_from, row.recipient) == ("", MARTIN_B)
    # Relayed to B: the queue's copy is gone once sent (release_copies); read it where it went.
    [raw] = wait_for(lambda: env.inbox(MARTIN_B, env.pair.b), timeout=5.0)
    mdn = reports.parse_mdn(raw)
    assert not mdn.is_error and mdn.original_message_id == msg["Message-ID"]


def test_the_mdn_reaches_the_sender_at_another_operator(env: Filing) -> None:
    msg = send_from_b(env)

    [raw] = wait_for(lambda: env.inbox(MARTIN_B, env.pair.b), timeout=5.0)
    assert reports.parse_mdn(raw).original_message_id == msg["Message-ID"]


def test_a_crash_of_the_filing_keeps_the_message(
    env: Filing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything unexpected: the message stays in the filing mailbox and the sender is told."""

    def broken(*args: object, **kwargs: object) -> filing.FilingOutcome:
        raise RuntimeError("base du DMP indisponible")

    monkeypatch.setattr(filing, "file_message", broken)
    msg = message(DUPONT_A, archive())
    queue.accept(env.op.ctx, DUPONT_A, [queue.Recipient(FILING_A, {})], wire(msg))

    [kept] = env.inbox(FILING_A)
    assert email.message_from_bytes(kept)["Message-ID"] == msg["Message-ID"]
    assert error_mdn(env).error_code == "906"


def test_filing_address_needs_a_registered_store(env: Filing) -> None:
    filing.unregister_store(env.op.ctx)
    assert not filing.handles(env.op.ctx, FILING_A)
    filing.register_store(env.op.ctx, env.dmp.store)
    assert filing.handles(env.op.ctx, FILING_A)
    assert not filing.handles(env.op.ctx, DUPONT_A)
    assert not filing.handles(env.op.ctx, f"dmp@{PATIENTS_A}")
