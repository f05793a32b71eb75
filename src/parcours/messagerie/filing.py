"""Filing a received XDM into the DMP: the operator's applicative address ``dmp@<domain>``.

A professional sends an ``IHE_XDM.ZIP`` (reference ``mssante.md`` §4.1, §4.3; IHE ITI TF-1
§16, ITI TF-2b §3.32 "ZIP over e-mail") to the filing address of one of our domains. Instead of
landing in a mailbox, the message is opened here and each submission set of the archive is
published into the patient's DMP through the document service, exactly as an ITI-65 Provide
Document Bundle would be (reference ``dmp-pdsm.md`` §1.1, PDSm comprehensive profiles §2):

1. the **sender** is resolved to a health professional: a PER/CAB mailbox of ours (the
   submission server authenticated him strongly, SUB-5), or, for a message relayed by another
   operator of the liste blanche, the Annuaire santé mailbox that carries his RPPS. Without a
   professional behind the address (ORG/APP mailbox, unknown address) nothing is filed;
2. the **patient** is the INS of the XDM metadata (``patientId``); the DMP must know it, and
   every CDA document must carry the same INS with identity traits matching the DMP's (the
   CI-SIS error codes 903–905 exist for exactly these checks);
3. each DocumentEntry becomes a ``DocumentReference`` + ``Binary`` of one ITI-65 bundle
   (:func:`bundle_for`), published by :func:`parcours.dossier.documents.publish`: PDSm
   validation, the policy decision (R27: only a professional who takes care of the patient
   files into his DMP), atomic write of encrypted blobs and rows — none of it is bypassed;
4. the publication is **traced** in the record's hash chain like an HTTP publish (the HTTP
   audit middleware never sees a message, so this module writes the trace itself through
   :func:`parcours.audit.service.record`), and the message event in the filing mailbox's
   chain (:func:`parcours.messagerie.service.trace`);
5. the sender gets the **answer** the CI-SIS volet prescribes (IG
   "IG-hl7v2-volet-trans-lps-doc-cda-courriel-mss", pages ``struct-msg-mdn``,
   ``struct-email-standard``, ``error-codes``; reference §4.4 and §7.5 MDN-1..MDN-4): an MDN
   ``processed`` or ``processed/Error: <code>^<label>`` when he asked for one (RFC 8098 §2.1
   rules in :func:`reports.mdn_requested`), otherwise a plain error mail on failure and nothing
   on success.

Where the filing address comes from (decision): it is an **APP mailbox row** like any
applicative mailbox (``service.create_mailbox(..., kind="APP", owner=<idNat_Struct>,
cert_der=...)``), so the SMTP servers accept ``RCPT TO:<dmp@domain>`` with their ordinary
checks (IN-8: unknown mailbox 550) and nothing in ``smtp.py`` changes. An address is filed
only when its local part is :data:`FILING_LOCAL_PART`, the row is an APP mailbox and a
:class:`~parcours.dossier.store.DocumentStore` was registered for the operator
(:func:`register_store`); otherwise the message is delivered to the mailbox as usual (an
external PFI could then read it over IMAP).

Other decisions:

* the DMP's rules are the ones of the API, not stricter: a type/class pair outside the
  ASS_X04 table is a *warning* of the document service (defect D5 of the official examples,
  ``docs/dossier.md``), so it is filed here too, the warning kept in :class:`FilingOutcome`;
  a class outside TRE_A03 or any other PDSm error refuses the whole submission set (906);
* a record that is not open (no DMP, opposed, closed) answers 902 like an unknown INS: the
  sender must not learn whether a person has a DMP (G2), as the API answers 404 there;
* filing runs inside ``queue.accept``, before the SMTP 250: the publication is durable when the
  client hears "accepted"; a message already processed (same Message-ID, found through the
  filing mailbox's trace) is not filed nor answered twice;
* each ``SUBSETnn`` of the archive is one ITI-65 transaction: atomic on its own, and the first
  refusal stops the message (sets already filed stay; the report says how many).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Final, Literal

import defusedxml
from defusedxml import ElementTree as SafeET
from sqlalchemy import select
from sqlalchemy.orm import Session

from parcours.annuaire import directory
from parcours.annuaire.models import Mailbox as DirectoryMailbox
from parcours.audit import context as audit_context
from parcours.audit.models import AuditEvent
from parcours.audit.service import AuditEntry, record
from parcours.auth.principal import Principal
from parcours.dossier import documents, records
from parcours.dossier import terminology as term
from parcours.dossier.store import DocumentStore
from parcours.dossier.validation import sha1_b64
from parcours.fhir.errors import FHIRError
from parcours.fhir.search import fold
from parcours.identity import INS, INS_OIDS, IdentifierError
from parcours.messagerie import queue, reports, service, xdm
from parcours.messagerie.context import OperatorContext
from parcours.storage.db import Database

log = logging.getLogger("parcours.messagerie.filing")

#: Local part of the DMP filing address of each hosted (non-patient) domain.
FILING_LOCAL_PART: Final = "dmp"
#: The message event written in the filing mailbox's chain for every message processed.
FILING_EVENT: Final = "mss-depot-dmp"
#: Reporting-UA of our MDNs (RFC 8098 §3.2.1): the software that integrated the message.
REPORTING_UA: Final = "parcours, dépôt DMP par messagerie sécurisée"

PDSM: Final = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
MHD_EXT: Final = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
RFC3986: Final = "urn:ietf:rfc:3986"
IDNPS_SYSTEM: Final = "urn:oid:" + xdm.OID_IDNPS
IDNST_SYSTEM: Final = "urn:oid:" + xdm.OID_IDNST
NOS: Final = "https://mos.esante.gouv.fr/NOS/"

#: ebRIM ``codingScheme`` OIDs (ITI TF-3 §4.2.3.1) -> the FHIR system the DMP validation
#: expects (reference dmp-pdsm.md §3.2); any other OID travels as ``urn:oid:<oid>``.
CODE_SYSTEMS: Final[dict[str, str]] = {
    xdm.OID_LOINC: term.LOINC,
    xdm.OID_TRE_A05_TYPE_DOC: term.TRE_A05_SYSTEM,
    xdm.OID_TRE_A03_CLASSE_DOCUMENT: term.CLASS_SYSTEM,
    xdm.OID_HL7_CONFIDENTIALITY: term.CONFIDENTIALITY_SYSTEM,
    xdm.OID_TRE_A07_VISIBILITE: term.VISIBILITY_SYSTEM,
    xdm.OID_IHE_FORMAT_CODE: "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
    xdm.OID_TRE_R02_SECTEUR_ACTIVITE: NOS + "TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
    xdm.OID_TRE_A01_CADRE_EXERCICE: NOS + "TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
    "1.2.250.1.213.1.1.4.6": NOS + "TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS",
    xdm.OID_TRE_R209_TYPE_ACTIVITE: NOS + "TRE_R209-TypeActivite/FHIR/TRE-R209-TypeActivite",
}

Status = Literal["filed", "refused", "ignored", "duplicate"]
ReportKind = Literal["mdn", "error-mail"]


# -- the filing address and where the documents go ----------------------------------------------


def filing_address(domain: str) -> str:
    """``dmp@<domain>``: the DMP filing address of a domain we host."""
    return f"{FILING_LOCAL_PART}@{domain.strip().lower()}"


@dataclass(frozen=True)
class FilingTarget:
    """The DMP an operator files into: its document store and its database (the operator's
    own database when the DMP and the operator share one, as in the demo and the tests)."""

    store: DocumentStore
    database: Database | None = None


# OperatorContext is a non-frozen dataclass (unhashable): key by id() and keep a weak reference
# to tell a live context from a recycled id.
_targets: dict[int, tuple[weakref.ref[OperatorContext], FilingTarget]] = {}
_targets_lock = threading.Lock()


def register_store(
    ctx: OperatorContext, store: DocumentStore, *, database: Database | None = None
) -> None:
    """Enable DMP filing on this operator instance: whoever assembles the operator (operator.py,
    the demo, a test) calls this with the platform's document store, since the operator's
    context has none. Filing addresses of an operator without a store are ordinary mailboxes."""
    with _targets_lock:
        _targets[id(ctx)] = (weakref.ref(ctx), FilingTarget(store, database))


def unregister_store(ctx: OperatorContext) -> None:
    with _targets_lock:
        _targets.pop(id(ctx), None)


def target_for(ctx: OperatorContext) -> FilingTarget | None:
    """The registered target; a ``document_store`` attribute on the context, should one be added
    to :class:`OperatorContext` later, takes precedence."""
    store = getattr(ctx, "document_store", None)
    if isinstance(store, DocumentStore):
        return FilingTarget(store)
    with _targets_lock:
        found = _targets.get(id(ctx))
    if found is None or found[0]() is not ctx:
        return None
    return found[1]


def handles(ctx: OperatorContext, address: str) -> bool:
    """Whether a message for ``address`` is to be filed rather than delivered: the filing local
    part on one of our professional domains, an APP mailbox row, and a registered store."""
    local, _, domain = address.strip().lower().rpartition("@")
    if local != FILING_LOCAL_PART or not ctx.hosts(domain) or ctx.is_patient_domain(domain):
        return False
    if target_for(ctx) is None:
        return False
    with ctx.db.session() as session:
        row = service.get_mailbox(session, address)
        return row is not None and row.kind == "APP"


# -- outcome ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilingOutcome:
    """What became of one message sent to the filing address.

    ``status``: ``filed`` (every document published), ``refused`` (``error`` holds the CI-SIS
    ``(code, label)`` sent back), ``ignored`` (a report or a null reverse-path: never answered,
    RFC 3834 §2 / RFC 8098 §3), ``duplicate`` (same Message-ID already processed here: a client
    retrying after a lost 250). ``detail`` is the French explanation for the caller (the
    traces never carry it: it may name the patient's traits); ``warnings`` are the PDSm warnings
    of the accepted bundles (e.g. a type/class pair outside ASS_X04), which the document service
    reports but does not refuse.
    """

    status: Status
    error: tuple[str, str] | None = None
    detail: str = ""
    sender: str | None = None
    actor: str | None = None
    patient_id: str | None = None
    document_ids: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    rule: str | None = None
    report: ReportKind | None = None
    report_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "filed"


class FilingRefused(Exception):
    """A refusal with its CI-SIS error code (reference §4.4; ``reports.MDN_ERROR_CODES``).

    ``status`` is the HTTP-like outcome written in the DMP trace (what the same refusal would
    have answered over ITI-65), ``patient_id`` the record concerned once it is known (the
    refusal is then traced in that record's chain), ``rule`` the policy rule that refused.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int = 422,
        patient_id: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.patient_id = patient_id
        self.rule = rule

    @property
    def error(self) -> tuple[str, str]:
        """``(code, label)`` for the MDN. The IG labels are kept as published, except 906
        ("Erreur 'Autre'"), useless to the sender without the reason, which is appended."""
        code, label = reports.mdn_error(self.code)
        if code == "906":
            return code, f"{label} : {_shorten(self.detail, 300)}"
        return code, label


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the sender ---------------------------------------------------------------------------------


def sender_principal(ctx: OperatorContext, sender: str) -> Principal:
    """The professional who sent ``sender``'s message, as the DMP policy sees a caller.

    Ours: the PER/CAB mailbox's holder (the submission server made him authenticate with a
    CPS/e-CPS-level token, reference §3.2 SUB-5, and enforced MAIL FROM = his mailbox, SUB-2).
    Another operator's: the Annuaire santé mailbox that carries his RPPS (the relay checked the
    peer's certificate against the liste blanche for the sender's domain, IN-5). Either way
    he must be an active professional of the directory. ``auth_level="cps"`` records that
    strong authentication, which the DMP rules require of a professional (G1).
    """
    try:
        address = service.normalise(sender)
    except service.MailboxError as exc:
        raise FilingRefused("906", f"adresse d'expéditeur invalide ({exc})") from None
    domain = address.rpartition("@")[2]
    with ctx.db.session() as session:
        structure: str | None = None
        if ctx.hosts(domain):
            row = service.get_mailbox(session, address)
            if row is None:
                raise FilingRefused("906", f"BAL expéditrice {address} inconnue de l'opérateur")
            if row.kind not in ("PER", "CAB"):
                raise FilingRefused(
                    "906",
                    f"l'expéditeur {address} n'est pas une BAL personnelle : seul un "
                    "professionnel de santé identifié (RPPS) alimente un DMP",
                )
            idnps, structure = row.owner, row.structure
        else:
            idnps = _directory_holder(session, address)
            if idnps is None:
                raise FilingRefused(
                    "906",
                    f"l'expéditeur {address} n'est pas une BAL personnelle de l'Annuaire santé "
                    "rattachée à un professionnel (RPPS)",
                )
        summary = directory.find_professional(session, idnps)
    if summary is None:
        raise FilingRefused("906", f"professionnel {idnps} inconnu de l'Annuaire santé ou inactif")
    return Principal(
        kind="professional",
        subject=idnps,
        issuer=f"mssante:{ctx.hostname}",
        idnat_ps=idnps,
        profession=summary.profession_code,
        structure=structure or summary.structure,
        auth_level="cps",
        name=summary.display_name,
    )


def _directory_holder(session: Session, address: str) -> str | None:
    """IDNPS of the professional carrying a PER/CAB mailbox in the Annuaire santé.

    Read from the directory's mailbox table: ``annuaire.directory`` has no look-up by address
    and the FHIR search (``Practitioner?mailbox-mss=``) hides liste rouge mailboxes, which still
    send mail (reference §2.3) — their holders must be able to file too.
    """
    box = session.get(DirectoryMailbox, address)
    if box is None or not box.active or box.type not in ("PER", "CAB"):
        return None
    return box.practitioner_id or None


# -- reading the message ------------------------------------------------------------------------


def _parts(msg: Message) -> Iterator[Message]:
    """Leaf parts of ``msg``, without descending into attached messages (a forwarded message's
    XDM is not the sender's submission)."""
    if msg.is_multipart():
        for part in msg.get_payload():  # type: ignore[union-attr]
            if isinstance(part, Message) and part.get_content_maintype() != "message":
                yield from _parts(part)
    else:
        yield msg


def xdm_attachments(msg: Message) -> list[bytes]:
    """The bytes of every ``IHE_XDM.ZIP`` attachment (reference §4.1: name fixed by the volet)."""
    found: list[bytes] = []
    for part in _parts(msg):
        name = part.get_filename()
        if name and name.strip().upper() == xdm.ARCHIVE_NAME:
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                found.append(data)
    return found


def _submission_sets(msg: Message) -> list[xdm.XdmSubmissionSet]:
    archives = xdm_attachments(msg)
    if not archives:
        raise FilingRefused(
            "906", f"aucune pièce jointe {xdm.ARCHIVE_NAME} : rien à intégrer au DMP", status=400
        )
    sets: list[xdm.XdmSubmissionSet] = []
    for data in archives:
        try:
            sets.extend(xdm.read_xdm(data).submission_sets)
        except xdm.XdmError as exc:
            raise FilingRefused(
                "906", f"archive {xdm.ARCHIVE_NAME} refusée : {exc.message}", status=400
            ) from None
    return sets


# -- patient identity (CI-SIS codes 902–905) ----------------------------------------------------


@dataclass(frozen=True)
class _PatientView:
    id: str
    family: str
    given: str
    birth_date: date
    gender: str
    record_status: str


def _patient_ins(subset: xdm.XdmSubmissionSet) -> INS:
    value, oid = xdm.parse_patient_id(subset.patient_id)
    if oid not in INS_OIDS:
        raise FilingRefused(
            "903", "l'identifiant patient des métadonnées XDM n'est pas un INS", status=400
        )
    try:
        return INS(value, oid)
    except IdentifierError as exc:
        raise FilingRefused("902", f"INS des métadonnées invalide ({exc})", status=400) from None


def _patient_reference(ins: INS) -> str:
    return f"Patient?identifier=urn:oid:{ins.oid}|{ins.value}"


def _find_patient(db: Database, ins: INS) -> _PatientView:
    with db.session() as session:
        try:
            patient = records.resolve_reference(session, _patient_reference(ins))
        except FHIRError:
            raise FilingRefused(
                "902", "aucun patient de cet INS n'est connu du DMP", status=404
            ) from None
        state = records.load(session, patient).state
        return _PatientView(
            patient.id,
            patient.family,
            patient.given,
            patient.birth_date,
            patient.gender,
            state.status,
        )


@dataclass(frozen=True)
class CdaIdentity:
    """The patient of a CDA R2 header (``recordTarget/patientRole``): INS and identity traits."""

    ins: tuple[str, str] | None
    family: str | None
    given: str | None
    gender: str | None
    birth_date: str | None  # YYYYMMDD


def _cda(tag: str) -> str:
    return f"{{{xdm.NS_CDA}}}{tag}"


def cda_identity(content: bytes) -> CdaIdentity | None:
    """The patient identity of a CDA R2 document, ``None`` when ``content`` is not one (parsed
    with defusedxml: no DTD, no entities)."""
    try:
        root = SafeET.fromstring(content, forbid_dtd=True)
    except (defusedxml.DefusedXmlException, ET.ParseError, ValueError):
        return None
    if root.tag != _cda("ClinicalDocument"):
        return None
    role = root.find(f"{_cda('recordTarget')}/{_cda('patientRole')}")
    if role is None:
        return CdaIdentity(None, None, None, None, None)
    ins = next(
        (
            (i.get("extension", ""), i.get("root", ""))
            for i in role.findall(_cda("id"))
            if i.get("root") in INS_OIDS and i.get("extension")
        ),
        None,
    )
    patient = role.find(_cda("patient"))
    if patient is None:
        return CdaIdentity(ins, None, None, None, None)
    name = patient.find(_cda("name"))
    families = name.findall(_cda("family")) if name is not None else []
    # CI-SIS: the birth name carries qualifier="BR"; a used name may come before it.
    birth_name = next((f for f in families if f.get("qualifier") == "BR"), None)
    if birth_name is None and families:
        birth_name = families[0]
    return CdaIdentity(
        ins,
        family=_text(birth_name),
        given=_text(name.find(_cda("given")) if name is not None else None),
        gender=_attribute(patient.find(_cda("administrativeGenderCode")), "code"),
        birth_date=(_attribute(patient.find(_cda("birthTime")), "value") or "")[:8] or None,
    )


def _text(element: ET.Element | None) -> str | None:
    return (element.text or "").strip() or None if element is not None else None


def _attribute(element: ET.Element | None, name: str) -> str | None:
    return (element.get(name) or "").strip() or None if element is not None else None


_GENDERS: Final = {"M": ("male",), "F": ("female",), "U": ("unknown", "other")}


def check_identity(entries: tuple[xdm.XdmEntry, ...], ins: INS, patient: _PatientView) -> None:
    """CI-SIS 903/904/905 for every CDA document of a submission set (IG ``error-codes``).

    A CDA may only carry the INS once the identity is qualified, with the traits that go with
    it; an integration that files into a record must check them against the record's identity,
    not only trust the metadata (903: no INS in the CDA, 904: INS or traits differ from the
    record's, 905: INS without all its traits). Other documents (PDF…) carry no identity of
    their own: the metadata INS stands for them.
    """
    for entry in entries:
        document = entry.document
        if document.mime_type.lower() not in xdm.CDA_MIME_TYPES:
            continue
        identity = cda_identity(document.content)
        if identity is None:
            continue
        where = f"document « {document.title or entry.uri} »"
        if identity.ins is None:
            raise FilingRefused(
                "903", f"{where} : pas d'INS dans l'en-tête CDA", patient_id=patient.id
            )
        if identity.ins != (ins.value, ins.oid):
            raise FilingRefused(
                "904",
                f"{where} : l'INS du CDA diffère de celui des métadonnées",
                patient_id=patient.id,
            )
        missing = [
            label
            for label, value in (
                ("nom de naissance", identity.family),
                ("prénom", identity.given),
                ("sexe", identity.gender),
                ("date de naissance", identity.birth_date),
            )
            if not value
        ]
        if missing:
            raise FilingRefused(
                "905", f"{where} : traits INS absents ({', '.join(missing)})", patient_id=patient.id
            )
        assert identity.family and identity.given and identity.gender and identity.birth_date
        differs = []
        if fold(identity.family) != fold(patient.family):
            differs.append("nom de naissance")
        given_names = fold(patient.given).split()
        if not given_names or fold(identity.given).split()[0] != given_names[0]:
            differs.append("prénom")
        if patient.gender not in _GENDERS.get(identity.gender.upper(), ()):
            differs.append("sexe")
        if identity.birth_date != patient.birth_date.strftime("%Y%m%d"):
            differs.append("date de naissance")
        if differs:
            raise FilingRefused(
                "904",
                f"{where} : traits différents de l'identité du DMP ({', '.join(differs)})",
                patient_id=patient.id,
            )


# -- XDM -> ITI-65 ------------------------------------------------------------------------------


def fhir_system(scheme: str) -> str:
    """The FHIR code system of an ebRIM ``codingScheme`` (an OID, or already a URI)."""
    scheme = scheme.strip()
    if scheme in CODE_SYSTEMS:
        return CODE_SYSTEMS[scheme]
    if scheme.startswith(("urn:", "http://", "https://")):
        return scheme
    return f"urn:oid:{scheme}"


def _concept(code: xdm.Code) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": fhir_system(code.scheme), "code": code.code}
    if code.display:
        coding["display"] = code.display
    return {"coding": [coding]}


def _unique_id(value: str) -> str:
    """An XDS uniqueId as a FHIR identifier value (``urn:ietf:rfc:3986`` system): ``urn:oid:``
    + the OID. An ``OID^extension`` (ITI TF-3 §4.2.3.2, uniqueId) keeps its extension after
    the OID, so two documents of one CDA root never collide."""
    return f"urn:oid:{value}"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _author_resources(author: xdm.XdmAuthor, prefix: str) -> list[dict[str, Any]]:
    """Contained Practitioner + PractitionerRole (+ Organization) for an XDS author: the
    authorPerson / authorInstitution / authorSpecialty sub-attributes (ITI TF-3 §4.2.3.1,
    author) travel inside the contained author (reference dmp-pdsm.md §2: no extension
    exists for them)."""
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": f"{prefix}-ps",
        "identifier": [{"system": IDNPS_SYSTEM, "value": author.idnps}],
    }
    name: dict[str, Any] = {}
    if author.family_name:
        name["family"] = author.family_name
    if author.given_name:
        name["given"] = [author.given_name]
    if name:
        practitioner["name"] = [name]
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": prefix,
        "identifier": [{"system": IDNPS_SYSTEM, "value": author.idnps}],
        "practitioner": {"reference": f"#{prefix}-ps"},
    }
    if author.specialty is not None:
        role["specialty"] = [_concept(author.specialty)]
    out = [role, practitioner]
    if author.institution_idnst or author.institution_name:
        org: dict[str, Any] = {"resourceType": "Organization", "id": f"{prefix}-org"}
        if author.institution_idnst:
            org["identifier"] = [{"system": IDNST_SYSTEM, "value": author.institution_idnst}]
        if author.institution_name:
            org["name"] = author.institution_name
        role["organization"] = {"reference": f"#{prefix}-org"}
        out.append(org)
    return out


def _sender_author(principal: Principal) -> xdm.XdmAuthor:
    return xdm.XdmAuthor(
        idnps=principal.idnat_ps or principal.subject,
        family_name="",
        institution_idnst=principal.structure,
    )


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def bundle_for(
    subset: xdm.XdmSubmissionSet, *, subject: str, principal: Principal
) -> dict[str, Any]:
    """The PDSm comprehensive ITI-65 bundle (reference dmp-pdsm.md §1.1, §2.1–2.2) of one XDM
    submission set: a SubmissionSet List, then one DocumentReference + Binary per document.

    XDS → FHIR follows MHD's metadata mapping (ITI TF-3 Table 4.3.1-3 "XDS DS" column):
    uniqueId → masterIdentifier, typeCode → type, classCode → category, confidentialityCode →
    securityLabel, formatCode → content.format, healthcareFacilityTypeCode → facilityType,
    practiceSettingCode → practiceSetting, creationTime → attachment.creation, hash (hex) →
    attachment.hash (base64), author → contained PractitionerRole; the SubmissionSet's
    uniqueId, sourceId, contentTypeCode and submissionTime → List.identifier, ihe-sourceId,
    ihe-designationType and date. XDM carries no serviceStartTime here: ``context.period.start``
    (required by PDSm) is the creation time. A document without author is the SubmissionSet
    author's, failing that the sender's; ``custodian`` is the author's institution or the
    sender's structure. ``subject`` is the conditional reference by INS.
    """
    submitted = subset.submission_time or datetime.now(UTC)
    list_url = _urn()
    entries: list[dict[str, Any]] = []
    doc_urls: list[str] = []
    fallback = subset.author or _sender_author(principal)
    for entry in subset.entries:
        document = entry.document
        binary_url, doc_url = _urn(), _urn()
        doc_urls.append(doc_url)
        author = document.author or fallback
        ins_value, ins_oid = xdm.parse_patient_id(entry.patient_id)
        contained = [
            *_author_resources(author, "auteur"),
            {
                "resourceType": "Patient",
                "id": "patient-source",
                "identifier": [{"system": f"urn:oid:{ins_oid}", "value": ins_value}],
            },
        ]
        title = document.title or document.type_code.display or document.type_code.code
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "meta": {"profile": [PDSM + "pdsm-comprehensive-document-reference"]},
            "contained": contained,
            "masterIdentifier": {"system": RFC3986, "value": _unique_id(document.unique_id)},
            "status": "current",
            "type": _concept(document.type_code),
            "category": [_concept(document.class_code)],
            "subject": {"reference": subject},
            "date": _instant(submitted),
            "author": [{"reference": "#auteur"}],
            "securityLabel": [_concept(code) for code in document.confidentiality],
            "content": [
                {
                    "attachment": {
                        "contentType": document.mime_type,
                        "language": document.language_code,
                        "url": binary_url,
                        "size": len(document.content),
                        "hash": sha1_b64(document.content),
                        "title": title,
                        "creation": _instant(document.creation_time),
                    },
                    "format": _concept(document.format_code)["coding"][0],
                }
            ],
            "context": {
                "period": {"start": _instant(document.creation_time)},
                "facilityType": _concept(document.healthcare_facility_type),
                "practiceSetting": _concept(document.practice_setting),
                "sourcePatientInfo": {"reference": "#patient-source"},
            },
        }
        custodian = author.institution_idnst or principal.structure
        if custodian:
            resource["custodian"] = {"identifier": {"system": IDNST_SYSTEM, "value": custodian}}
        entries.append(
            {
                "fullUrl": doc_url,
                "resource": resource,
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
        entries.append(
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": document.mime_type,
                    "data": base64.b64encode(document.content).decode("ascii"),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        )
    extensions: list[dict[str, Any]] = [
        {
            "url": MHD_EXT + "ihe-sourceId",
            "valueIdentifier": {"system": RFC3986, "value": f"urn:oid:{subset.source_id}"},
        }
    ]
    if subset.content_type is not None:  # absent: the validation refuses it (1..1)
        extensions.append(
            {
                "url": MHD_EXT + "ihe-designationType",
                "valueCodeableConcept": _concept(subset.content_type),
            }
        )
    submission: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [PDSM + "pdsm-submissionset-comprehensive"]},
        "contained": _author_resources(fallback, "source"),
        "extension": extensions,
        "identifier": [{"system": RFC3986, "value": _unique_id(subset.unique_id)}],
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "subject": {"reference": subject},
        "date": _instant(submitted),
        "source": {"reference": "#source"},
        "entry": [{"item": {"reference": url}} for url in doc_urls],
    }
    if subset.title:
        submission["title"] = subset.title
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [PDSM + "pdsm-comprehensive-provide-document-bundle"]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": list_url,
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            *entries,
        ],
    }


# -- publishing and its trace -------------------------------------------------------------------


def _refusal(exc: FHIRError, patient: _PatientView, details: dict[str, Any]) -> FilingRefused:
    """The CI-SIS code for a refusal of the document service.

    The IG has no code for "not allowed to file" nor for "metadata refused": both are 906 with
    the reason. A policy refusal on a record that is not open (no DMP, opposed, closed) is 902,
    "patient unknown": the sender must not learn whether a record exists (G2, reference
    dmp-access.md §2.1), exactly as the API answers 404 there.
    """
    errors = [i for i in exc.issues if i.severity in ("error", "fatal")] or exc.issues
    reason = errors[0].diagnostics if errors else str(exc)
    rule = details.get("rule")
    if errors and errors[0].code == "forbidden":
        if patient.record_status != "active":
            return FilingRefused(
                "902",
                "pas de DMP ouvert pour ce patient",
                status=exc.status,
                patient_id=patient.id,
                rule=rule,
            )
        return FilingRefused(
            "906",
            f"dépôt refusé par les règles d'accès au DMP : {reason}",
            status=exc.status,
            patient_id=patient.id,
            rule=rule,
        )
    if exc.status == 409:
        what = "document déjà présent dans le DMP"
    elif exc.status == 413:
        what = "document trop volumineux pour le DMP"
    else:
        what = "métadonnées du document refusées par le DMP"
    return FilingRefused(
        "906", f"{what} : {reason}", status=exc.status, patient_id=patient.id, rule=rule
    )


def _dmp_entry(
    principal: Principal,
    *,
    request_id: str,
    patient_id: str,
    resource_id: str | None,
    outcome: int,
    message_digest: str | None,
    details: dict[str, Any],
    rule: str | None = None,
) -> AuditEntry:
    """The trace of a publication by mail, shaped like the audit middleware's for ITI-65 (actor,
    structure, action, resource, outcome, record, rule, policy version) in the record's chain."""
    query = "canal=MSSanté" + (f"; message={message_digest}" if message_digest else "")
    return AuditEntry(
        request_id=request_id,
        actor_kind=principal.kind,
        actor_id=principal.actor_id,
        actor_structure=principal.structure,
        access_mode=principal.access_mode,
        action="create",
        resource_type="DocumentReference",
        resource_id=resource_id[:128] if resource_id else None,
        query=query,
        outcome=outcome,
        client_ip=None,
        patient_id=patient_id,
        rule=rule or details.get("rule"),
        policy_version=details.get("policy_version"),
    )


def _warnings(response: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for item in response.get("entry") or []:
        outcome = (item.get("response") or {}).get("outcome") or {}
        for issue in outcome.get("issue") or []:
            if issue.get("diagnostics"):
                found.append(str(issue["diagnostics"]))
    return found


@dataclass
class _Filed:
    patient_id: str
    document_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rule: str | None = None


def file_submission_set(
    db: Database,
    store: DocumentStore,
    principal: Principal,
    subset: xdm.XdmSubmissionSet,
    *,
    request_id: str,
    message_digest: str | None = None,
) -> _Filed:
    """Publish one submission set, trace it, or raise :class:`FilingRefused` (traced too once the
    record is known). Publication is atomic per set (ITI-65, MHD §2:3.65.4.1.3)."""
    ins = _patient_ins(subset)
    patient = _find_patient(db, ins)

    def traced(
        resource_id: str, outcome: int, details: dict[str, Any], rule: str | None = None
    ) -> AuditEntry:
        return _dmp_entry(
            principal,
            request_id=request_id,
            patient_id=patient.id,
            resource_id=resource_id,
            outcome=outcome,
            message_digest=message_digest,
            details=details,
            rule=rule,
        )

    def refused(refusal: FilingRefused, details: dict[str, Any]) -> None:
        # Nothing was created: each refused document is named by its XDS uniqueId.
        for entry in subset.entries:
            uid = _unique_id(entry.document.unique_id)
            record(db, traced(uid, refusal.status, details, refusal.rule))

    try:
        check_identity(subset.entries, ins, patient)
    except FilingRefused as refusal:
        refused(refusal, {})
        raise
    bundle = bundle_for(subset, subject=_patient_reference(ins), principal=principal)
    # The policy enforcement point notes the record, the deciding rule and the notifications
    # it obliges into the current request's details (audit.context), as under HTTP.
    details: dict[str, Any] = {"request_id": request_id}
    token = audit_context.current.set(details)
    try:
        result = documents.publish(db, store, principal, bundle)
    except FHIRError as exc:
        refusal = _refusal(exc, patient, details)
        refused(refusal, details)
        raise refusal from None
    finally:
        audit_context.current.reset(token)
    # Notifications follow only a success (R45), once: with the first document's trace.
    notifications = list(details.get("notifications") or [])
    for index, doc_id in enumerate(result.document_ids):
        record(db, traced(doc_id, 201, details), notifications if index == 0 else ())
    return _Filed(
        result.patient_id,
        list(result.document_ids),
        _warnings(result.response),
        details.get("rule"),
    )


# -- the answer to the sender -------------------------------------------------------------------


def _deliver_report(ctx: OperatorContext, target: str, report: bytes) -> bool:
    """Into the sender's mailbox when he is ours (``queue.deliver_local``), else queued for the
    relay with a null reverse-path (RFC 8098 §3, RFC 5321 §4.5.5: a report never answers a
    report)."""
    domain = target.rpartition("@")[2].lower()
    if ctx.hosts(domain):
        with ctx.db.session() as session:
            known = service.get_mailbox(session, target) is not None
        if not known:
            log.warning("rapport de dépôt DMP non remis : BAL %s inconnue", target)
            return False
        queue.deliver_local(ctx, service.normalise(target), report)
        return True
    queue.enqueue(ctx, "", [queue.Recipient(target, {})], report, {})
    return True


def send_report(
    ctx: OperatorContext, msg: Message, outcome: FilingOutcome, *, sender: str, recipient: str
) -> tuple[ReportKind | None, str | None]:
    """Answer the sender as the CI-SIS volet says (reference §7.5): an MDN when one was
    requested and may be sent automatically (MDN-1/MDN-2; MDN-4: not when
    Disposition-Notification-To ≠ Return-Path), else a "courriel standard" on error (MDN-3),
    else nothing. On error the original attachments go back with the report so the sender can
    correct and resubmit; on success they are not sent back again."""
    requested = reports.mdn_requested(msg, sender or None)
    try:
        if requested is not None:
            report = reports.build_mdn(
                msg,
                final_recipient=recipient,
                error=outcome.error,
                reporting_ua=f"{ctx.hostname}; {REPORTING_UA}",
                to_address=requested,
                from_address=recipient,
                reattach=outcome.error is not None,
            )
            kind: ReportKind = "mdn"
            target = requested
        elif outcome.error is not None and sender:
            report = reports.build_error_mail(
                msg, from_address=recipient, to_address=sender, error=outcome.error
            )
            kind, target = "error-mail", sender
        else:
            return None, None
    except ValueError:
        log.exception("rapport de dépôt DMP impossible à construire")
        return None, None
    if not _deliver_report(ctx, target, report):
        return None, None
    return kind, target


# -- the whole message --------------------------------------------------------------------------


def _digest(message_id: str | None) -> str | None:
    # The same digest as service.trace stores for a Message-ID (never the Message-ID itself).
    return hashlib.sha256(message_id.encode()).hexdigest()[:40] if message_id else None


def _already_processed(ctx: OperatorContext, recipient: str, digest: str | None) -> bool:
    """A message this filing address already processed (same Message-ID): the client retried
    after losing our 250, or the relay resent after a crash (queue.py's kill -9 case)."""
    if digest is None:
        return False
    with ctx.db.session() as session:
        found = session.execute(
            select(AuditEvent.seq)
            .where(
                AuditEvent.mailbox == recipient,
                AuditEvent.action == FILING_EVENT,
                AuditEvent.resource_id == digest,
            )
            .limit(1)
        ).first()
    return found is not None


def _default_recipient(ctx: OperatorContext) -> str:
    domains = sorted(d for d in ctx.domains if not ctx.is_patient_domain(d)) or sorted(ctx.domains)
    return filing_address(domains[0])


def file_message(
    ctx: OperatorContext,
    store: DocumentStore,
    raw: bytes,
    *,
    sender: str,
    recipient: str | None = None,
    database: Database | None = None,
) -> FilingOutcome:
    """File the XDM of a message received for the filing address ``recipient`` (default: the
    filing address of our first professional domain) and answer ``sender``.

    ``sender`` is the envelope sender (MAIL FROM): what the submission server authenticated or
    the relay checked against the liste blanche; it is also the Return-Path the MDN rules
    compare with Disposition-Notification-To. ``database`` is the DMP's when it is not the
    operator's. Business refusals never raise: they come back as a ``refused`` outcome, after
    the error report was delivered; only infrastructure failures (database down…) raise.
    """
    db = database or ctx.db
    recipient = service.normalise(recipient) if recipient else _default_recipient(ctx)
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    message_id = queue.message_id_of(raw)
    digest = _digest(message_id)
    sender = sender.strip().strip("<>")
    if not sender or msg.get_content_type() == "multipart/report":
        outcome = FilingOutcome(
            "ignored", detail="rapport ou chemin de retour vide : jamais traité ni répondu"
        )
        _trace_event(ctx, recipient, outcome, message_id)
        return outcome
    if _already_processed(ctx, recipient, digest):
        outcome = FilingOutcome("duplicate", detail="message déjà traité", sender=sender)
        _trace_event(ctx, recipient, outcome, message_id)
        return outcome

    request_id = uuid.uuid4().hex
    principal: Principal | None = None
    filed: list[_Filed] = []
    try:
        principal = sender_principal(ctx, sender)
        for subset in _submission_sets(msg):
            filed.append(
                file_submission_set(
                    db, store, principal, subset, request_id=request_id, message_digest=digest
                )
            )
        outcome = FilingOutcome(
            "filed",
            detail=f"{sum(len(f.document_ids) for f in filed)} document(s) intégré(s) au DMP",
            sender=sender,
            actor=principal.actor_id,
            patient_id=filed[0].patient_id if filed else None,
            document_ids=tuple(d for f in filed for d in f.document_ids),
            warnings=tuple(w for f in filed for w in f.warnings),
            rule=filed[0].rule if filed else None,
        )
    except FilingRefused as refusal:
        detail = refusal.detail
        if filed:  # an earlier submission set of the same message went in (open point)
            detail += f" (lot(s) précédent(s) déjà intégré(s) : {len(filed)})"
        outcome = FilingOutcome(
            "refused",
            error=refusal.error,
            detail=detail,
            sender=sender,
            actor=principal.actor_id if principal else None,
            patient_id=refusal.patient_id,
            document_ids=tuple(d for f in filed for d in f.document_ids),
            rule=refusal.rule,
        )
    kind, target = send_report(ctx, msg, outcome, sender=sender, recipient=recipient)
    outcome = replace(outcome, report=kind, report_to=target)
    _trace_event(ctx, recipient, outcome, message_id)
    return outcome


def _trace_event(
    ctx: OperatorContext, recipient: str, outcome: FilingOutcome, message_id: str | None
) -> None:
    """The message event in the filing mailbox's chain (reference §4.6: who, which message by
    its Message-ID digest, the outcome; never a subject, an INS or a document). The outcome is
    201 when filed, the CI-SIS code (900–906) when refused, 208 for a message already processed
    (its first processing's event says how), 204 for one ignored (a report, a null sender)."""
    if outcome.status == "filed":
        code = 201
    elif outcome.error is not None:
        code = int(outcome.error[0])
    else:
        code = 208 if outcome.status == "duplicate" else 204
    detail = (
        f"expéditeur={outcome.sender or '<>'}; statut={outcome.status}; "
        f"documents={len(outcome.document_ids)}; rapport={outcome.report or 'aucun'}"
    )
    service.trace(
        ctx.db,
        FILING_EVENT,
        recipient,
        outcome=code,
        actor=("professional", outcome.actor) if outcome.actor else ("system", None),
        message_id=message_id,
        detail=detail,
    )


def file_accepted(ctx: OperatorContext, address: str, mail_from: str, raw: bytes) -> None:
    """The entry point of ``queue.accept`` for a filing address: file, or at least keep.

    Business refusals are answered by :func:`file_message` itself. Anything unexpected (a bug,
    the DMP database unavailable) must not lose the message the client is about to get a 250
    for: it is kept in the filing mailbox for an administrator to process, and the sender is
    told (906) when possible; if even that fails, :class:`queue.AcceptError` makes the SMTP
    server answer 451 and the client retry.
    """
    target = target_for(ctx)
    if target is None:  # unregistered since handles() said yes: plain delivery
        queue.deliver_local(ctx, address, raw)
        return
    try:
        file_message(
            ctx, target.store, raw, sender=mail_from, recipient=address, database=target.database
        )
        return
    except Exception:
        log.exception("dépôt DMP en échec pour %s : message conservé dans la BAL", address)
    try:
        queue.deliver_local(ctx, address, raw)
    except Exception as exc:
        raise queue.AcceptError(str(exc)) from exc
    with contextlib.suppress(Exception):
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        if mail_from and msg.get_content_type() != "multipart/report":
            outcome = FilingOutcome(
                "refused",
                error=FilingRefused(
                    "906", "erreur technique du service de dépôt ; le message est conservé"
                ).error,
                sender=mail_from,
            )
            send_report(ctx, msg, outcome, sender=mail_from, recipient=address)
