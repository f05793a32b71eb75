"""IHE XDM archives (``IHE_XDM.ZIP``): building them for outgoing mail, reading them safely.

Clinical documents travel in MSSanté as an IHE XDM "ZIP over e-mail" attachment (reference
``shared/reference/mssante.md`` §4.1 and §4.3; IHE ITI TF-1 §16, ITI TF-2b §3.32 "Distribute
Document Set on Media"). The archive holds::

    README.TXT                  who made it (ITI TF-2b §3.32: sender/vendor information)
    INDEX.HTM                   a human index linking to the documents
    IHE_XDM/SUBSET01/METADATA.XML   ebRIM 3.0 lcm:SubmitObjectsRequest (ITI TF-3 §4.2)
    IHE_XDM/SUBSET01/DOC0001.XML    the documents, ISO 9660 level 1 ("8.3", upper-case) names

The metadata vocabulary (slot names, classification schemes, external identifiers and their
UUIDs) is ITI TF-3 §4.2.3 (attributes) and §4.2.5 (UUIDs); the French codings (INS as patient
identifier, IDNPS/IDNST authors, TRE_A03 class codes) follow the CI-SIS as summarised in
``shared/reference/dmp-pdsm.md`` §3.

Reading is where the risk is: the archive comes from another operator's user and is opened
by an automatic integration (PFI). :func:`read_xdm` therefore refuses, with a precise French
message and a stable machine code (:class:`XdmError`), anything it cannot vouch for: a broken
or encrypted ZIP, path tricks (``..``, absolute paths, backslashes), names outside the 8.3
rule inside ``IHE_XDM``, a zip bomb (sizes and ratios are checked from the ZIP headers *and*
counted again while inflating), an unparseable METADATA.XML or one declaring a DTD/entities
(parsed with ``defusedxml``), a document whose URI, size or SHA-1 does not match the archive.
"""

from __future__ import annotations

import hashlib
import html
import io
import posixpath
import re
import stat
import uuid
import xml.etree.ElementTree as ET  # building only; parsing always goes through defusedxml
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

import defusedxml
from defusedxml import ElementTree as SafeET

from parcours.identity.errors import IdentifierError
from parcours.identity.ins import INS, INS_OID_NIR, INS_OIDS
from parcours.messagerie.headers import (
    HEADER_CODECDA,
    HEADER_INS,
    INS_NOT_QUALIFIED,
    INS_QUALIFIED,
    format_codecda,
)

# -- vocabulary --------------------------------------------------------------------------------

NS_LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS_RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS_CDA: Final = "urn:hl7-org:v3"

# ITI TF-3 §4.2.5: object types and classification nodes.
UUID_DOCUMENT_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
UUID_SUBMISSION_SET: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
# ITI TF-3 §4.2.5: DocumentEntry classification schemes and external identifiers.
DE_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT_CODE: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HEALTHCARE_FACILITY_TYPE_CODE: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
# ITI TF-3 §4.2.5: SubmissionSet classification schemes and external identifiers.
SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
# ebRIM 3.0 association type (ITI TF-3 §4.2.2) and the ebRIM object type of an identifier.
ASSOCIATION_HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
OBJECT_TYPE_EXTERNAL_IDENTIFIER: Final = (
    "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
)
OBJECT_TYPE_CLASSIFICATION: Final = (
    "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
)

# Coding schemes (OIDs of the ebRIM ``codingScheme`` slot; dmp-pdsm.md §3.2).
OID_LOINC: Final = "2.16.840.1.113883.6.1"
OID_TRE_A03_CLASSE_DOCUMENT: Final = "1.2.250.1.213.1.1.4.1"
OID_TRE_A05_TYPE_DOC: Final = "1.2.250.1.213.1.1.4.12"
OID_HL7_CONFIDENTIALITY: Final = "2.16.840.1.113883.5.25"
OID_TRE_A07_VISIBILITE: Final = "1.2.250.1.213.1.1.4.13"
OID_IHE_FORMAT_CODE: Final = "1.3.6.1.4.1.19376.1.2.3"
OID_TRE_R02_SECTEUR_ACTIVITE: Final = "1.2.250.1.71.4.2.4"
OID_TRE_A01_CADRE_EXERCICE: Final = "1.2.250.1.213.1.1.4.9"
OID_TRE_R209_TYPE_ACTIVITE: Final = "1.2.250.1.213.2.2"
OID_IDNPS: Final = "1.2.250.1.71.4.2.1"
OID_IDNST: Final = "1.2.250.1.71.4.2.2"

ARCHIVE_NAME: Final = "IHE_XDM.ZIP"
XDM_DIR: Final = "IHE_XDM"
METADATA_NAME: Final = "METADATA.XML"
README_NAME: Final = "README.TXT"
INDEX_NAME: Final = "INDEX.HTM"
FIRST_SUBSET: Final = "SUBSET01"

#: Limits of :func:`read_xdm`. MSSanté messages are around 10 MB (reference §4.5); a package
#: inflating to more than 64 MiB or holding more than 200 files is not a real exchange.
DEFAULT_MAX_TOTAL_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_FILES: Final = 200
#: Inflated/compressed ratio above which a member is a bomb. Text (CDA, XML) compresses 5–20×;
#: the ratio is only looked at above :data:`RATIO_FLOOR_BYTES`, where it cannot be innocent.
DEFAULT_MAX_RATIO: Final = 100
RATIO_FLOOR_BYTES: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024

_SUPPORTED_COMPRESSION: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_NAME_8_3 = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
# XDS uniqueId: an OID, or "OID^extension" when the CDA id has an extension (ITI TF-3 §4.2.3.2).
_UNIQUE_ID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+(\^[A-Za-z0-9._-]{1,16})?$")
# Metadata values hold on one line: C0 controls and DEL are refused along with what XML 1.0
# cannot carry at all. (A CR in element text would come back as LF: XML §2.11.)
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_DTM = re.compile(r"^([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")

#: MIME type -> 3-letter extension of the DOCnnnn file (ISO 9660 level 1); others get ``BIN``.
_EXTENSIONS: Final[dict[str, str]] = {
    "text/xml": "XML",
    "application/xml": "XML",
    "application/hl7-cda+xml": "XML",
    "application/pdf": "PDF",
    "text/plain": "TXT",
    "text/rtf": "RTF",
    "image/jpeg": "JPG",
    "image/png": "PNG",
    "image/tiff": "TIF",
    "application/dicom": "DCM",
    "application/fhir+json": "JSN",
    "application/fhir+xml": "XML",
}
CDA_MIME_TYPES: Final = frozenset({"text/xml", "application/xml", "application/hl7-cda+xml"})

ET.register_namespace("lcm", NS_LCM)
ET.register_namespace("rim", NS_RIM)


# -- errors ------------------------------------------------------------------------------------


class XdmError(ValueError):
    """An XDM archive refused by :func:`read_xdm` (:func:`build_xdm` raises ``ValueError``).

    ``code`` is stable and meant for counting or mapping to a CI-SIS error; ``message`` is the
    French sentence (also ``str(error)``) for the sender's mailbox or the PFI operator;
    ``member`` names the ZIP entry concerned, when there is one.

    Codes: ``not_zip``, ``corrupt``, ``encrypted``, ``unsupported_compression``,
    ``too_many_files``, ``too_large``, ``compression_ratio``, ``duplicate_entry``,
    ``path_traversal``, ``absolute_path``, ``backslash``, ``invalid_path``, ``symlink``,
    ``not_8_3``, ``metadata_missing``, ``metadata_unparseable``, ``metadata_forbidden``,
    ``metadata_invalid``, ``patient_mismatch``, ``document_missing``, ``size_mismatch``,
    ``hash_mismatch``.
    """

    def __init__(self, code: str, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.member = member

    def __repr__(self) -> str:
        return f"XdmError(code={self.code!r}, message={self.message!r}, member={self.member!r})"

    def __reduce__(self) -> tuple[type[XdmError], tuple[str, str, str | None]]:
        return (type(self), (self.code, self.message, self.member))


# -- model -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value of the metadata: code, display name and coding-scheme OID.

    ebRIM carries it as a Classification (``nodeRepresentation``, ``Name``, slot
    ``codingScheme``; ITI TF-3 §4.2.3.1).
    """

    code: str
    display: str
    scheme: str


CONFIDENTIALITY_NORMAL: Final = Code("N", "Normal", OID_HL7_CONFIDENTIALITY)
FORMAT_MIME_SUFFICIENT: Final = Code(
    "urn:ihe:iti:xds:2017:mimeTypeSufficient", "mimeType Sufficient", OID_IHE_FORMAT_CODE
)


def loinc(code: str, display: str) -> Code:
    """A LOINC document type (typeCode)."""
    return Code(code, display, OID_LOINC)


def class_code(code: str, display: str) -> Code:
    """A TRE_A03-ClasseDocument class (classCode), e.g. ``class_code("10", "Compte rendu")``."""
    return Code(code, display, OID_TRE_A03_CLASSE_DOCUMENT)


@dataclass(frozen=True, slots=True)
class XdmAuthor:
    """A document or submission-set author: a health professional and their structure.

    Written as the ``authorPerson`` XCN ``<IDNPS>^<NOM>^<Prénom>^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^
    IDNPS`` and, when known, ``authorInstitution`` XON ``<nom>^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^
    <IDNST>`` and ``authorSpecialty`` CE (ITI TF-3 §4.2.3.1, author attributes; CI-SIS conventions).
    """

    idnps: str
    family_name: str
    given_name: str = ""
    institution_idnst: str | None = None
    institution_name: str | None = None
    specialty: Code | None = None


@dataclass(frozen=True, slots=True)
class XdmDocument:
    """One document and the DocumentEntry metadata that describes it (ITI TF-3 §4.2.3.2).

    ``hash`` and ``size`` are not fields: they are computed from ``content`` when writing and
    checked against it when reading, so they can never disagree with the bytes.
    ``creation_time`` must be timezone-aware; XDS keeps it in UTC to the second.
    """

    content: bytes = field(repr=False)  # health data: never in logs or tracebacks
    mime_type: str
    unique_id: str
    title: str
    type_code: Code
    class_code: Code
    creation_time: datetime
    author: XdmAuthor | None
    healthcare_facility_type: Code
    practice_setting: Code
    format_code: Code = FORMAT_MIME_SUFFICIENT
    confidentiality: tuple[Code, ...] = (CONFIDENTIALITY_NORMAL,)
    language_code: str = "fr-FR"

    @property
    def sha1(self) -> str:
        """SHA-1 of the content, lower-case hex (the XDS ``hash`` slot is hex, not base64)."""
        return hashlib.sha1(self.content, usedforsecurity=False).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class XdmEntry:
    """A document read from an archive, with what only the archive knows about it."""

    document: XdmDocument
    entry_uuid: str
    path: str
    uri: str
    patient_id: str
    source_patient_id: str | None


@dataclass(frozen=True, slots=True)
class XdmSubmissionSet:
    """One ``IHE_XDM/SUBSETnn`` folder: its SubmissionSet metadata and its documents."""

    directory: str
    entry_uuid: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: datetime | None
    content_type: Code | None
    author: XdmAuthor | None
    title: str | None
    entries: tuple[XdmEntry, ...]

    @property
    def patient_ins(self) -> tuple[str, str] | None:
        """``(matricule, OID)`` when the patientId is an INS (CX ``…^^^&<INS OID>&ISO^NH``)."""
        value, oid = parse_patient_id(self.patient_id)
        return (value, oid) if oid in INS_OIDS else None


@dataclass(frozen=True, slots=True)
class XdmPackage:
    """What :func:`read_xdm` returns: every submission set of the archive, in folder order."""

    submission_sets: tuple[XdmSubmissionSet, ...]
    readme: str | None

    @property
    def submission_set(self) -> XdmSubmissionSet:
        return self.submission_sets[0]

    @property
    def entries(self) -> tuple[XdmEntry, ...]:
        return tuple(e for s in self.submission_sets for e in s.entries)

    @property
    def documents(self) -> tuple[XdmDocument, ...]:
        return tuple(e.document for e in self.entries)


# -- HL7 v2 data types (the values of author and patient slots) -------------------------------

_HL7_ESCAPES: Final = (
    ("\\", "\\E\\"),
    ("|", "\\F\\"),
    ("^", "\\S\\"),
    ("&", "\\T\\"),
    ("~", "\\R\\"),
)


def _hl7_escape(text: str) -> str:
    """HL7 v2.5 §2.7 escape sequences, so a name with ``^`` or ``&`` keeps its components."""
    for raw, escaped in _HL7_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _hl7_unescape(text: str) -> str:
    return re.sub(
        r"\\([EFSTR])\\",
        lambda m: {"E": "\\", "F": "|", "S": "^", "T": "&", "R": "~"}[m.group(1)],
        text,
    )


def _components(value: str, count: int) -> list[str]:
    parts = value.split("^")
    return parts + [""] * (count - len(parts))


def format_patient_id(ins: str, oid: str = INS_OID_NIR) -> str:
    """The CX value of an INS: ``<matricule>^^^&<OID>&ISO^NH`` (CI-SIS, patientId)."""
    return f"{ins}^^^&{oid}&ISO^NH"


def parse_patient_id(cx: str) -> tuple[str, str]:
    """``(identifier, assigning-authority OID)`` of a CX value (``""`` when absent)."""
    parts = _components(cx, 4)
    authority = parts[3].split("&")
    oid = authority[1] if len(authority) > 1 else ""
    return _hl7_unescape(parts[0]), oid


def _format_author_person(author: XdmAuthor) -> str:
    return (
        f"{_hl7_escape(author.idnps)}^{_hl7_escape(author.family_name)}^"
        f"{_hl7_escape(author.given_name)}^^^^^^&{OID_IDNPS}&ISO^D^^^IDNPS"
    )


def _format_author_institution(author: XdmAuthor) -> str | None:
    if author.institution_idnst is None and author.institution_name is None:
        return None
    name = _hl7_escape(author.institution_name or "")
    if author.institution_idnst is None:
        return name
    return f"{name}^^^^^&{OID_IDNST}&ISO^IDNST^^^{_hl7_escape(author.institution_idnst)}"


def _format_ce(code: Code) -> str:
    return f"{_hl7_escape(code.code)}^{_hl7_escape(code.display)}^{_hl7_escape(code.scheme)}"


def _parse_author(slots: dict[str, list[str]]) -> XdmAuthor | None:
    persons = slots.get("authorPerson", [])
    institutions = slots.get("authorInstitution", [])
    specialties = slots.get("authorSpecialty", [])
    if not persons and not institutions:
        return None
    xcn = _components(persons[0] if persons else "", 3)
    institution_name: str | None = None
    institution_id: str | None = None
    if institutions:
        xon = _components(institutions[0], 10)
        institution_name = _hl7_unescape(xon[0]) or None
        institution_id = _hl7_unescape(xon[9]) or None
    specialty: Code | None = None
    if specialties:
        ce = _components(specialties[0], 3)
        specialty = Code(_hl7_unescape(ce[0]), _hl7_unescape(ce[1]), _hl7_unescape(ce[2]))
    return XdmAuthor(
        idnps=_hl7_unescape(xcn[0]),
        family_name=_hl7_unescape(xcn[1]),
        given_name=_hl7_unescape(xcn[2]),
        institution_idnst=institution_id,
        institution_name=institution_name,
        specialty=specialty,
    )


def _format_dtm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _parse_dtm(value: str) -> datetime | None:
    """An XDS DTM (``YYYY[MM[DD[hh[mm[ss]]]]]``, UTC; ITI TF-3 §4.2.3.1, DTM data type)."""
    match = _DTM.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else None for g in match.groups())
    try:
        return datetime(
            year or 1, month or 1, day or 1, hour or 0, minute or 0, second or 0, tzinfo=UTC
        )
    except ValueError:
        return None


# -- building ----------------------------------------------------------------------------------


def _rim(tag: str) -> str:
    return f"{{{NS_RIM}}}{tag}"


def _new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _slot(parent: ET.Element, name: str, values: Iterable[str]) -> None:
    slot = ET.SubElement(parent, _rim("Slot"), name=name)
    value_list = ET.SubElement(slot, _rim("ValueList"))
    for value in values:
        ET.SubElement(value_list, _rim("Value")).text = value


def _localized(parent: ET.Element, tag: str, text: str) -> None:
    holder = ET.SubElement(parent, _rim(tag))
    ET.SubElement(holder, _rim("LocalizedString"), value=text)


def _classification(parent: ET.Element, scheme: str, owner: str, code: Code) -> None:
    element = ET.SubElement(
        parent,
        _rim("Classification"),
        id=_new_id(),
        objectType=OBJECT_TYPE_CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=code.code,
    )
    _slot(element, "codingScheme", [code.scheme])
    _localized(element, "Name", code.display)


def _author_classification(parent: ET.Element, scheme: str, owner: str, author: XdmAuthor) -> None:
    # Author classifications have an empty nodeRepresentation (ITI TF-3 §4.2.3.1, author).
    element = ET.SubElement(
        parent,
        _rim("Classification"),
        id=_new_id(),
        objectType=OBJECT_TYPE_CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation="",
    )
    _slot(element, "authorPerson", [_format_author_person(author)])
    institution = _format_author_institution(author)
    if institution is not None:
        _slot(element, "authorInstitution", [institution])
    if author.specialty is not None:
        _slot(element, "authorSpecialty", [_format_ce(author.specialty)])


def _external_identifier(
    parent: ET.Element, scheme: str, owner: str, value: str, name: str
) -> None:
    element = ET.SubElement(
        parent,
        _rim("ExternalIdentifier"),
        id=_new_id(),
        objectType=OBJECT_TYPE_EXTERNAL_IDENTIFIER,
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _localized(element, "Name", name)


def _check_text(label: str, value: str) -> None:
    if _FORBIDDEN_CHARS.search(value):
        raise ValueError(f"{label} contient un caractère de contrôle ou interdit en XML 1.0")


def _check_code(label: str, code: Code) -> None:
    if not code.code:
        raise ValueError(f"{label} : code vide")
    for part in (code.code, code.display, code.scheme):
        _check_text(label, part)


def _check_author(author: XdmAuthor) -> None:
    for text in (
        author.idnps,
        author.family_name,
        author.given_name,
        author.institution_idnst or "",
        author.institution_name or "",
    ):
        _check_text("auteur", text)
    if author.specialty is not None:
        _check_code("spécialité de l'auteur", author.specialty)


def _check_document(index: int, document: XdmDocument) -> None:
    where = f"document {index}"
    if not _UNIQUE_ID.match(document.unique_id) or len(document.unique_id) > 128:
        raise ValueError(
            f"{where} : identifiant unique « {document.unique_id} » invalide (OID ou OID^extension)"
        )
    if not _MIME.match(document.mime_type.lower()):
        raise ValueError(f"{where} : type MIME « {document.mime_type} » invalide")
    if document.creation_time.tzinfo is None:
        raise ValueError(f"{where} : date de création sans fuseau horaire")
    _check_text(f"{where}, titre", document.title)
    _check_text(f"{where}, langue", document.language_code)
    for label, code in (
        ("typeCode", document.type_code),
        ("classCode", document.class_code),
        ("formatCode", document.format_code),
        ("healthcareFacilityTypeCode", document.healthcare_facility_type),
        ("practiceSettingCode", document.practice_setting),
        *(("confidentialityCode", c) for c in document.confidentiality),
    ):
        _check_code(f"{where}, {label}", code)
    if not document.confidentiality:
        raise ValueError(f"{where} : au moins un code de confidentialité est requis")
    if document.author is not None:
        _check_author(document.author)


def _document_entry(
    parent: ET.Element, entry_id: str, document: XdmDocument, uri: str, patient_id: str
) -> None:
    extrinsic = ET.SubElement(
        parent,
        _rim("ExtrinsicObject"),
        id=entry_id,
        mimeType=document.mime_type,
        objectType=UUID_DOCUMENT_ENTRY,
    )
    # Slots, then Name, Classifications and ExternalIdentifiers: the ebRIM 3.0 schema order.
    _slot(extrinsic, "creationTime", [_format_dtm(document.creation_time)])
    _slot(extrinsic, "hash", [document.sha1])
    _slot(extrinsic, "languageCode", [document.language_code])
    _slot(extrinsic, "size", [str(document.size)])
    _slot(extrinsic, "sourcePatientId", [patient_id])
    _slot(extrinsic, "URI", [uri])
    _localized(extrinsic, "Name", document.title)
    if document.author is not None:
        _author_classification(extrinsic, DE_AUTHOR, entry_id, document.author)
    _classification(extrinsic, DE_CLASS_CODE, entry_id, document.class_code)
    for code in document.confidentiality:
        _classification(extrinsic, DE_CONFIDENTIALITY_CODE, entry_id, code)
    _classification(extrinsic, DE_FORMAT_CODE, entry_id, document.format_code)
    _classification(
        extrinsic, DE_HEALTHCARE_FACILITY_TYPE_CODE, entry_id, document.healthcare_facility_type
    )
    _classification(extrinsic, DE_PRACTICE_SETTING_CODE, entry_id, document.practice_setting)
    _classification(extrinsic, DE_TYPE_CODE, entry_id, document.type_code)
    _external_identifier(
        extrinsic, DE_PATIENT_ID, entry_id, patient_id, "XDSDocumentEntry.patientId"
    )
    _external_identifier(
        extrinsic, DE_UNIQUE_ID, entry_id, document.unique_id, "XDSDocumentEntry.uniqueId"
    )


def document_file_name(index: int, mime_type: str) -> str:
    """``DOC0001.XML``, ``DOC0002.PDF``…: the 8.3 upper-case name of the ``index``-th document."""
    if not 1 <= index <= 9999:
        raise ValueError("une archive XDM contient au plus 9999 documents")
    return f"DOC{index:04d}.{_EXTENSIONS.get(mime_type.lower(), 'BIN')}"


def build_metadata(
    documents: Sequence[XdmDocument],
    file_names: Sequence[str],
    *,
    patient_id: str,
    source_id: str,
    submission_set_unique_id: str,
    submission_time: datetime,
    author: XdmAuthor | None,
    content_type: Code,
    title: str | None = None,
) -> bytes:
    """METADATA.XML: an ebRIM 3.0 ``lcm:SubmitObjectsRequest`` for one submission set.

    One RegistryPackage classified as SubmissionSet (ITI TF-3 §4.2.3.3), one ExtrinsicObject
    per document (§4.2.3.2) and one HasMember association from the set to each document, with
    ``SubmissionSetStatus`` = ``Original`` (§4.2.2.1, HasMember).
    """
    root = ET.Element(f"{{{NS_LCM}}}SubmitObjectsRequest")
    objects = ET.SubElement(root, _rim("RegistryObjectList"))
    set_id = _new_id()
    package = ET.SubElement(objects, _rim("RegistryPackage"), id=set_id)
    _slot(package, "submissionTime", [_format_dtm(submission_time)])
    if title:
        _localized(package, "Name", title)
    if author is not None:
        _author_classification(package, SS_AUTHOR, set_id, author)
    _classification(package, SS_CONTENT_TYPE_CODE, set_id, content_type)
    _external_identifier(
        package, SS_UNIQUE_ID, set_id, submission_set_unique_id, "XDSSubmissionSet.uniqueId"
    )
    _external_identifier(package, SS_SOURCE_ID, set_id, source_id, "XDSSubmissionSet.sourceId")
    _external_identifier(package, SS_PATIENT_ID, set_id, patient_id, "XDSSubmissionSet.patientId")
    ET.SubElement(
        objects,
        _rim("Classification"),
        id=_new_id(),
        objectType=OBJECT_TYPE_CLASSIFICATION,
        classifiedObject=set_id,
        classificationNode=UUID_SUBMISSION_SET,
    )
    entry_ids: list[str] = []
    for document, name in zip(documents, file_names, strict=True):
        entry_id = _new_id()
        entry_ids.append(entry_id)
        _document_entry(objects, entry_id, document, name, patient_id)
    for entry_id in entry_ids:
        association = ET.SubElement(
            objects,
            _rim("Association"),
            id=_new_id(),
            associationType=ASSOCIATION_HAS_MEMBER,
            sourceObject=set_id,
            targetObject=entry_id,
        )
        _slot(association, "SubmissionSetStatus", ["Original"])
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _readme(sender: str, created: datetime, count: int) -> bytes:
    lines = [
        "Archive IHE XDM (IHE ITI TF-1 §16, échange de documents de santé par messagerie)",
        "",
        f"Émetteur : {sender}",
        "Logiciel : parcours (opérateur MSSanté)",
        f"Créée le : {created.astimezone(UTC).strftime('%d/%m/%Y %H:%M:%S')} UTC",
        f"Contenu : {count} document(s) dans {XDM_DIR}/{FIRST_SUBSET}, décrits par "
        f"{XDM_DIR}/{FIRST_SUBSET}/{METADATA_NAME}.",
        f"Ouvrir {INDEX_NAME} pour consulter les documents.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _index(sender: str, documents: Sequence[XdmDocument], paths: Sequence[str]) -> bytes:
    items = "\n".join(
        f'<li><a href="{html.escape(path)}">{html.escape(doc.title or path)}</a> '
        f"({html.escape(doc.type_code.display or doc.type_code.code)}, "
        f"{doc.creation_time.astimezone(UTC).strftime('%d/%m/%Y')})</li>"
        for doc, path in zip(documents, paths, strict=True)
    )
    page = (
        '<!DOCTYPE html>\n<html lang="fr">\n<head><meta charset="utf-8">'
        "<title>Documents de santé (IHE XDM)</title></head>\n<body>\n"
        "<h1>Documents de santé</h1>\n"
        f"<p>Émetteur : {html.escape(sender)}</p>\n<ul>\n{items}\n</ul>\n"
        f'<p><a href="{README_NAME}">{README_NAME}</a></p>\n</body>\n</html>\n'
    )
    return page.encode("utf-8")


def _zip_info(name: str, moment: datetime, *, directory: bool = False) -> zipfile.ZipInfo:
    utc = moment.astimezone(UTC)
    stamp = (max(utc.year, 1980), utc.month, utc.day, utc.hour, utc.minute, utc.second)
    info = zipfile.ZipInfo(name, date_time=stamp)
    if directory:
        info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_xdm(
    documents: Sequence[XdmDocument],
    *,
    patient_ins: str,
    patient_ins_oid: str = INS_OID_NIR,
    source_id: str,
    author: XdmAuthor | None,
    content_type: Code,
    sender: str,
    submission_set_unique_id: str | None = None,
    submission_time: datetime | None = None,
    title: str | None = None,
) -> bytes:
    """The bytes of an ``IHE_XDM.ZIP`` holding ``documents`` for one patient.

    ``patient_ins``/``patient_ins_oid`` is the patient's INS (checked: key and OID), written as
    the patientId of the set and of every document. ``source_id`` is the OID of the sending
    system (sourceId); ``submission_set_unique_id`` defaults to a fresh ``2.25.<UUID>`` OID
    (ITU-T X.667), unique without any registry. ``content_type`` is the SubmissionSet
    contentTypeCode (JDV_J03: e.g. TRE_R209-TypeActivite). ``sender`` describes who sends, for
    README.TXT and INDEX.HTM (no patient data there: the README is read by anyone who opens the
    media). Raises ``ValueError`` (``IdentifierError`` for the INS) on unusable input.
    """
    if not documents:
        raise ValueError("une archive XDM contient au moins un document")
    ins = INS(patient_ins, patient_ins_oid)
    for label, oid in (("sourceId", source_id), ("uniqueId du lot", submission_set_unique_id)):
        if oid is not None and (not _OID.match(oid) or len(oid) > 64):
            raise ValueError(f"{label} « {oid} » n'est pas un OID valide")
    for index, document in enumerate(documents, start=1):
        _check_document(index, document)
    unique_ids = [d.unique_id for d in documents]
    if len(set(unique_ids)) != len(unique_ids):
        raise ValueError("deux documents portent le même identifiant unique")
    _check_code("contentTypeCode", content_type)
    if author is not None:
        _check_author(author)
    _check_text("émetteur", sender)
    if title is not None:
        _check_text("titre du lot", title)
    created = submission_time or datetime.now(UTC)
    if created.tzinfo is None:
        raise ValueError("date de soumission sans fuseau horaire")
    set_unique_id = submission_set_unique_id or f"2.25.{uuid.uuid4().int}"
    names = [document_file_name(i, d.mime_type) for i, d in enumerate(documents, start=1)]
    subset = f"{XDM_DIR}/{FIRST_SUBSET}"
    metadata = build_metadata(
        documents,
        names,
        patient_id=format_patient_id(ins.value, ins.oid),
        source_id=source_id,
        submission_set_unique_id=set_unique_id,
        submission_time=created,
        author=author,
        content_type=content_type,
        title=title,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_zip_info(README_NAME, created), _readme(sender, created, len(documents)))
        archive.writestr(
            _zip_info(INDEX_NAME, created),
            _index(sender, documents, [f"{subset}/{n}" for n in names]),
        )
        archive.writestr(_zip_info(f"{XDM_DIR}/", created, directory=True), b"")
        archive.writestr(_zip_info(f"{subset}/", created, directory=True), b"")
        archive.writestr(_zip_info(f"{subset}/{METADATA_NAME}", created), metadata)
        for name, document in zip(names, documents, strict=True):
            archive.writestr(_zip_info(f"{subset}/{name}", created), document.content)
    return buffer.getvalue()


# -- reading: the archive ----------------------------------------------------------------------


def _check_path(name: str, *, what: str = "entrée") -> list[str]:
    """The components of a ZIP entry (or URI) path, refusing every way to leave the archive."""
    if "\\" in name:
        raise XdmError(
            "backslash",
            f"{what} « {name} » refusée : barre oblique inverse (\\) interdite dans un chemin",
            name,
        )
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise XdmError("absolute_path", f"{what} « {name} » refusée : chemin absolu", name)
    components = name.rstrip("/").split("/")
    if ".." in components:
        raise XdmError(
            "path_traversal",
            f"{what} « {name} » refusée : remontée de répertoire (..) interdite",
            name,
        )
    if (
        not name
        or any(c in ("", ".") for c in components)
        or any(ord(ch) < 0x20 or ch == "\x7f" for ch in name)
    ):
        raise XdmError("invalid_path", f"{what} « {name} » refusée : chemin invalide", name)
    return components


def _check_8_3(name: str, components: list[str]) -> None:
    for component in components[1:]:
        if not _NAME_8_3.match(component):
            raise XdmError(
                "not_8_3",
                f"entrée « {name} » refusée : « {component} » n'est pas un nom 8.3 en "
                "majuscules (ITI TF-2b §3.32, ISO 9660 niveau 1)",
                name,
            )
    if components[0] != XDM_DIR:
        raise XdmError(
            "not_8_3",
            f"entrée « {name} » refusée : le répertoire doit s'appeler {XDM_DIR} (majuscules)",
            name,
        )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


class _Budget:
    """Counts the bytes actually inflated, whatever the ZIP headers claim."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        chunks: list[bytes] = []
        count = 0
        try:
            with archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    count += len(chunk)
                    self.used += len(chunk)
                    if count > info.file_size or self.used > self.limit:
                        raise XdmError(
                            "too_large",
                            f"entrée « {info.filename} » refusée : le contenu décompressé "
                            "dépasse la taille annoncée ou la limite de l'archive",
                            info.filename,
                        )
                    chunks.append(chunk)
        except XdmError:
            raise
        except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
            raise XdmError(
                "encrypted", f"entrée « {info.filename} » chiffrée : refusée", info.filename
            ) from exc
        except NotImplementedError as exc:
            raise XdmError(
                "unsupported_compression",
                f"entrée « {info.filename} » : méthode de compression non prise en charge",
                info.filename,
            ) from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise XdmError(
                "corrupt",
                f"entrée « {info.filename} » illisible (archive corrompue) : {exc}",
                info.filename,
            ) from exc
        return b"".join(chunks)


def _open_archive(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise XdmError(
            "not_zip", f"la pièce jointe n'est pas une archive ZIP lisible : {exc}"
        ) from exc


def _screen_entries(
    infos: list[zipfile.ZipInfo],
    data_size: int,
    max_total_bytes: int,
    max_files: int,
    max_ratio: int,
) -> None:
    """Every check that the central directory alone allows, before inflating anything."""
    if len(infos) > max_files:
        raise XdmError(
            "too_many_files",
            f"archive refusée : {len(infos)} entrées, au plus {max_files} admises",
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        components = _check_path(name)
        if name in seen:
            raise XdmError(
                "duplicate_entry", f"archive refusée : entrée « {name} » en double", name
            )
        seen.add(name)
        if info.flag_bits & 0x1:
            raise XdmError("encrypted", f"entrée « {name} » chiffrée : refusée", name)
        if _is_symlink(info):
            raise XdmError("symlink", f"entrée « {name} » refusée : lien symbolique", name)
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            raise XdmError(
                "unsupported_compression",
                f"entrée « {name} » : méthode de compression {info.compress_type} non prise "
                "en charge",
                name,
            )
        if components[0].upper() == XDM_DIR:
            _check_8_3(name, components)
        total += info.file_size
        if total > max_total_bytes:
            raise XdmError(
                "too_large",
                f"archive refusée : plus de {max_total_bytes} octets une fois décompressée",
                name,
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(
            info.compress_size, 1
        ):
            raise XdmError(
                "compression_ratio",
                f"entrée « {name} » refusée : taux de compression supérieur à {max_ratio} "
                "(bombe de décompression probable)",
                name,
            )
    if total > RATIO_FLOOR_BYTES and total > max_ratio * max(data_size, 1):
        raise XdmError(
            "compression_ratio",
            f"archive refusée : taux de compression global supérieur à {max_ratio} "
            "(bombe de décompression probable)",
        )


# -- reading: the metadata ---------------------------------------------------------------------


def _parse_xml(content: bytes, name: str) -> ET.Element:
    try:
        return SafeET.fromstring(
            content, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as exc:
        raise XdmError(
            "metadata_forbidden",
            f"{name} refusé : DTD ou déclaration d'entité interdite ({type(exc).__name__})",
            name,
        ) from exc
    except (ET.ParseError, ValueError) as exc:
        raise XdmError(
            "metadata_unparseable", f"{name} n'est pas un XML lisible : {exc}", name
        ) from exc


def _slots(element: ET.Element) -> dict[str, list[str]]:
    slots: dict[str, list[str]] = {}
    for slot in element.findall(_rim("Slot")):
        name = slot.get("name", "")
        slots[name] = [
            (v.text or "") for v in slot.iterfind(f"{_rim('ValueList')}/{_rim('Value')}")
        ]
    return slots


def _localized_value(element: ET.Element, tag: str) -> str | None:
    found = element.find(f"{_rim(tag)}/{_rim('LocalizedString')}")
    return None if found is None else found.get("value", "")


def _classifications(element: ET.Element) -> dict[str, list[ET.Element]]:
    by_scheme: dict[str, list[ET.Element]] = {}
    for classification in element.findall(_rim("Classification")):
        by_scheme.setdefault(classification.get("classificationScheme", ""), []).append(
            classification
        )
    return by_scheme


def _external_ids(element: ET.Element) -> dict[str, str]:
    return {
        e.get("identificationScheme", ""): e.get("value", "")
        for e in element.findall(_rim("ExternalIdentifier"))
    }


def _code_of(classification: ET.Element) -> Code:
    scheme = _slots(classification).get("codingScheme", [""])
    return Code(
        classification.get("nodeRepresentation", ""),
        _localized_value(classification, "Name") or "",
        scheme[0] if scheme else "",
    )


def _uri_of(slots: dict[str, list[str]]) -> str | None:
    """The URI slot; long URIs are split in ``n|part`` values (ITI TF-3 §4.2.3.2, URI)."""
    values = slots.get("URI")
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    parts: list[tuple[int, str]] = []
    for value in values:
        index, sep, part = value.partition("|")
        if not sep or not index.isdigit():
            return None
        parts.append((int(index), part))
    return "".join(part for _, part in sorted(parts))


def _invalid(name: str, message: str) -> XdmError:
    return XdmError("metadata_invalid", f"{name} : {message}", name)


def _one_code(
    classes: dict[str, list[ET.Element]], scheme: str, label: str, name: str, doc_id: str
) -> Code:
    found = classes.get(scheme)
    if not found:
        raise _invalid(name, f"{label} absent du document {doc_id}")
    return _code_of(found[0])


@dataclass(frozen=True, slots=True)
class _EntryMetadata:
    entry_id: str
    mime_type: str
    uri: str
    hash: str
    size: int
    patient_id: str
    source_patient_id: str | None
    document: XdmDocument  # content left empty until the file is read


def _read_entry(extrinsic: ET.Element, name: str) -> _EntryMetadata:
    entry_id = extrinsic.get("id", "")
    mime_type = extrinsic.get("mimeType", "")
    if not entry_id or not mime_type:
        raise _invalid(name, "ExtrinsicObject sans id ou sans mimeType")
    slots = _slots(extrinsic)
    uri = _uri_of(slots)
    if not uri:
        raise _invalid(name, f"slot URI absent du document {entry_id} (requis en XDM)")
    hashes, sizes = slots.get("hash", []), slots.get("size", [])
    if not hashes or not re.fullmatch(r"[0-9A-Fa-f]{40}", hashes[0].strip()):
        raise _invalid(name, f"slot hash (SHA-1 hexadécimal) absent ou invalide ({entry_id})")
    if not sizes or not sizes[0].strip().isdigit():
        raise _invalid(name, f"slot size absent ou invalide ({entry_id})")
    created_values = slots.get("creationTime", [])
    created = _parse_dtm(created_values[0]) if created_values else None
    if created is None:
        raise _invalid(name, f"slot creationTime absent ou invalide ({entry_id})")
    languages = slots.get("languageCode", [])
    if not languages:
        raise _invalid(name, f"slot languageCode absent ({entry_id})")
    classes = _classifications(extrinsic)
    ids = _external_ids(extrinsic)
    unique_id = ids.get(DE_UNIQUE_ID)
    patient_id = ids.get(DE_PATIENT_ID)
    if not unique_id or not patient_id:
        raise _invalid(name, f"uniqueId ou patientId absent du document {entry_id}")
    authors = classes.get(DE_AUTHOR, [])
    confidentiality = tuple(_code_of(c) for c in classes.get(DE_CONFIDENTIALITY_CODE, []))
    if not confidentiality:
        raise _invalid(name, f"confidentialityCode absent du document {entry_id}")
    document = XdmDocument(
        content=b"",
        mime_type=mime_type,
        unique_id=unique_id,
        title=_localized_value(extrinsic, "Name") or "",
        type_code=_one_code(classes, DE_TYPE_CODE, "typeCode", name, entry_id),
        class_code=_one_code(classes, DE_CLASS_CODE, "classCode", name, entry_id),
        creation_time=created,
        author=_parse_author(_slots(authors[0])) if authors else None,
        healthcare_facility_type=_one_code(
            classes, DE_HEALTHCARE_FACILITY_TYPE_CODE, "healthcareFacilityTypeCode", name, entry_id
        ),
        practice_setting=_one_code(
            classes, DE_PRACTICE_SETTING_CODE, "practiceSettingCode", name, entry_id
        ),
        format_code=_one_code(classes, DE_FORMAT_CODE, "formatCode", name, entry_id),
        confidentiality=confidentiality,
        language_code=languages[0],
    )
    source_patient = slots.get("sourcePatientId", [])
    return _EntryMetadata(
        entry_id=entry_id,
        mime_type=mime_type,
        uri=uri,
        hash=hashes[0].strip().lower(),
        size=int(sizes[0].strip()),
        patient_id=patient_id,
        source_patient_id=source_patient[0] if source_patient else None,
        document=document,
    )


@dataclass(frozen=True, slots=True)
class _SetMetadata:
    entry_uuid: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: datetime | None
    content_type: Code | None
    author: XdmAuthor | None
    title: str | None


def _read_metadata(content: bytes, name: str) -> tuple[_SetMetadata, list[_EntryMetadata]]:
    root = _parse_xml(content, name)
    if root.tag != f"{{{NS_LCM}}}SubmitObjectsRequest":
        raise _invalid(name, "la racine doit être lcm:SubmitObjectsRequest (ebRIM 3.0)")
    objects = root.find(_rim("RegistryObjectList"))
    if objects is None:
        raise _invalid(name, "rim:RegistryObjectList absent")
    set_ids = {
        c.get("classifiedObject", "")
        for c in objects.iter(_rim("Classification"))
        if c.get("classificationNode") == UUID_SUBMISSION_SET
    }
    packages = [p for p in objects.findall(_rim("RegistryPackage")) if p.get("id") in set_ids]
    if len(packages) != 1:
        raise _invalid(
            name,
            f"un et un seul lot de soumission (SubmissionSet) attendu, {len(packages)} trouvé(s)",
        )
    package = packages[0]
    ids = _external_ids(package)
    for scheme, label in (
        (SS_UNIQUE_ID, "uniqueId"),
        (SS_SOURCE_ID, "sourceId"),
        (SS_PATIENT_ID, "patientId"),
    ):
        if not ids.get(scheme):
            raise _invalid(name, f"{label} du lot de soumission absent")
    classes = _classifications(package)
    content_types = classes.get(SS_CONTENT_TYPE_CODE, [])
    authors = classes.get(SS_AUTHOR, [])
    submission = _slots(package).get("submissionTime", [])
    info = _SetMetadata(
        entry_uuid=package.get("id", ""),
        unique_id=ids[SS_UNIQUE_ID],
        source_id=ids[SS_SOURCE_ID],
        patient_id=ids[SS_PATIENT_ID],
        submission_time=_parse_dtm(submission[0]) if submission else None,
        content_type=_code_of(content_types[0]) if content_types else None,
        author=_parse_author(_slots(authors[0])) if authors else None,
        title=_localized_value(package, "Name"),
    )
    entries = [
        _read_entry(e, name)
        for e in objects.findall(_rim("ExtrinsicObject"))
        if e.get("objectType") == UUID_DOCUMENT_ENTRY
    ]
    if not entries:
        raise _invalid(name, "aucun document (ExtrinsicObject DocumentEntry) dans le lot")
    uris = [e.uri for e in entries]
    if len(set(uris)) != len(uris):
        raise _invalid(name, "deux documents déclarent le même URI")
    for entry in entries:
        if entry.patient_id != ids[SS_PATIENT_ID]:
            raise XdmError(
                "patient_mismatch",
                f"{name} : le document {entry.entry_id} concerne un autre patient que le lot",
                name,
            )
    return info, entries


def read_xdm(
    data: bytes,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> XdmPackage:
    """Open an ``IHE_XDM.ZIP`` and return its submission sets with verified documents.

    Every ``IHE_XDM/<SUBSET>/METADATA.XML`` is read; each DocumentEntry's ``URI`` (relative
    to its folder) must name a file of the archive whose size and SHA-1 match the ``size`` and
    ``hash`` slots. Raises :class:`XdmError` on the first problem; nothing is written to disk.
    """
    archive = _open_archive(data)
    with archive:
        infos = archive.infolist()
        _screen_entries(infos, len(data), max_total_bytes, max_files, max_ratio)
        by_name = {i.filename: i for i in infos if not i.is_dir()}
        budget = _Budget(max_total_bytes)
        metadata_names = sorted(
            n
            for n in by_name
            if n.startswith(f"{XDM_DIR}/") and n.count("/") == 2 and n.endswith(f"/{METADATA_NAME}")
        )
        if not metadata_names:
            raise XdmError(
                "metadata_missing",
                f"archive XDM sans {XDM_DIR}/{FIRST_SUBSET}/{METADATA_NAME} (ITI TF-2b §3.32)",
            )
        sets: list[XdmSubmissionSet] = []
        for metadata_name in metadata_names:
            directory = posixpath.dirname(metadata_name)
            info, entries = _read_metadata(
                budget.read(archive, by_name[metadata_name]), metadata_name
            )
            read_entries: list[XdmEntry] = []
            for entry in entries:
                path = f"{directory}/{entry.uri}"
                _check_path(entry.uri, what="URI")
                _check_8_3(path, path.split("/"))
                member = by_name.get(path)
                if member is None:
                    raise XdmError(
                        "document_missing",
                        f"le document {entry.entry_id} désigne « {entry.uri} », absent de "
                        "l'archive",
                        path,
                    )
                content = budget.read(archive, member)
                if len(content) != entry.size:
                    raise XdmError(
                        "size_mismatch",
                        f"« {path} » : {len(content)} octets, la métadonnée size annonce "
                        f"{entry.size}",
                        path,
                    )
                digest = hashlib.sha1(content, usedforsecurity=False).hexdigest()
                if digest != entry.hash:
                    raise XdmError(
                        "hash_mismatch",
                        f"« {path} » : empreinte SHA-1 {digest} différente de la métadonnée "
                        f"hash {entry.hash}",
                        path,
                    )
                document = replace(entry.document, content=content)
                read_entries.append(
                    XdmEntry(
                        document=document,
                        entry_uuid=entry.entry_id,
                        path=path,
                        uri=entry.uri,
                        patient_id=entry.patient_id,
                        source_patient_id=entry.source_patient_id,
                    )
                )
            sets.append(
                XdmSubmissionSet(
                    directory=directory,
                    entry_uuid=info.entry_uuid,
                    unique_id=info.unique_id,
                    source_id=info.source_id,
                    patient_id=info.patient_id,
                    submission_time=info.submission_time,
                    content_type=info.content_type,
                    author=info.author,
                    title=info.title,
                    entries=tuple(read_entries),
                )
            )
        readme_info = by_name.get(README_NAME)
        readme = (
            budget.read(archive, readme_info).decode("utf-8", errors="replace")
            if readme_info is not None
            else None
        )
    return XdmPackage(submission_sets=tuple(sets), readme=readme)


# -- CDA and the X-MSS headers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdaHeader:
    """What the X-MSS headers need from a CDA R2 header."""

    code: str
    code_system: str | None
    ins: tuple[str, str] | None  # (matricule, OID) of recordTarget/patientRole/id
    qualified_ins: bool


def _cda(tag: str) -> str:
    return f"{{{NS_CDA}}}{tag}"


def read_cda_header(content: bytes) -> CdaHeader | None:
    """The header of a CDA R2 document, or ``None`` when ``content`` is not one.

    ``qualified_ins`` is true when ``recordTarget/patientRole/id`` carries an INS under one of
    the INS OIDs (1.2.250.1.213.1.4.8/.9/.10/.11) whose matricule and key are valid, *and* the
    patient has the identity traits that go with a qualified INS (birth name, first name,
    administrative gender, birth date). A CDA may only carry the INS once the identity is
    qualified, so the traits are a consistency check, not a second source of truth.
    """
    try:
        root = SafeET.fromstring(content, forbid_dtd=True)
    except (defusedxml.DefusedXmlException, ET.ParseError, ValueError):
        return None
    if root.tag != _cda("ClinicalDocument"):
        return None
    code = root.find(_cda("code"))
    if code is None or not code.get("code"):
        return None
    ins: tuple[str, str] | None = None
    qualified = False
    role = root.find(f"{_cda('recordTarget')}/{_cda('patientRole')}")
    if role is not None:
        for identifier in role.findall(_cda("id")):
            oid, value = identifier.get("root", ""), identifier.get("extension", "")
            if oid in INS_OIDS and value:
                ins = (value, oid)
                try:
                    INS(value, oid)
                except IdentifierError:
                    continue
                qualified = _has_identity_traits(role.find(_cda("patient")))
                if qualified:
                    break
    return CdaHeader(
        code=code.get("code", ""),
        code_system=code.get("codeSystem"),
        ins=ins,
        qualified_ins=qualified,
    )


def _has_identity_traits(patient: ET.Element | None) -> bool:
    if patient is None:
        return False
    name = patient.find(_cda("name"))
    family = None if name is None else name.find(_cda("family"))
    given = None if name is None else name.find(_cda("given"))
    gender = patient.find(_cda("administrativeGenderCode"))
    birth = patient.find(_cda("birthTime"))
    return bool(
        family is not None
        and (family.text or "").strip()
        and given is not None
        and (given.text or "").strip()
        and gender is not None
        and gender.get("code")
        and birth is not None
        and birth.get("value")
    )


def x_mss_headers_for(package: XdmPackage | Iterable[XdmDocument]) -> dict[str, str]:
    """The ``X-MSS-CODECDA`` and ``X-MSS-INS`` values for a message carrying ``package``.

    Empty when the package holds no CDA document (Ref#2 ECO.2.4.1/2.4.2: the headers are then
    absent). A CDA is an XML document whose root is ``ClinicalDocument`` in the HL7 v3
    namespace. Codes come in document order, without duplicates. ``X-MSS-INS`` is ``O`` only
    when *every* CDA carries a qualified INS: one document without it is enough for the
    receiver to need a manual identity check.
    """
    documents = package.documents if isinstance(package, XdmPackage) else tuple(package)
    codes: list[str] = []
    all_qualified = True
    for document in documents:
        if document.mime_type.lower() not in CDA_MIME_TYPES:
            continue
        header = read_cda_header(document.content)
        if header is None:
            continue
        codes.append(header.code)
        all_qualified = all_qualified and header.qualified_ins
    if not codes:
        return {}
    return {
        HEADER_CODECDA: format_codecda(codes),
        HEADER_INS: INS_QUALIFIED if all_qualified else INS_NOT_QUALIFIED,
    }
