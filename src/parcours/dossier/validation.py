"""ITI-65 Provide Document Bundle validation against the PDSm comprehensive profiles.

Pure functions over the parsed JSON: no database, no I/O, so the whole bundle is judged before
anything is written. Every problem is collected (not just the first) with a FHIRPath-like
``expression`` naming the entry and the element, e.g.
``Bundle.entry[1].resource.content[0].attachment.hash``.

The PDSm invariants have no FHIRPath in the published profiles (reference §2, defect D21), so
they are implemented here from the profiles' prose and the reference tables. Decisions on the
documented defects of the official examples (docs/dossier.md):

- errors (400): anything the profiles make mandatory and we cannot derive, a class outside
  TRE_A03, a type outside LOINC/TRE_A05, a hash or size that does not match the bytes (T65-27),
  an unresolvable reference, a status other than ``current``;
- warnings (accepted, reported in the transaction-response ``outcome``): type/class mismatch
  with the ASS_X04 table (D5, D17's class aside), a type absent from the table, the misspelt
  TRE_A07 system (D16, normalised, never re-emitted), a TRE_A03 code used as a SubmissionSet
  designationType (D6), a missing ``custodian`` (D7: filled from the caller's structure as XDS
  did from the VIHF token), non-French facility/practice codes (D7), a plain Practitioner as
  SubmissionSet source (D12).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parcours.dossier import terminology as term
from parcours.fhir.dates import DateError, parse_instant
from parcours.fhir.errors import FHIRError, Issue
from parcours.identity import IdentifierError, IdNatPS

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
BUNDLE_PROFILES = frozenset(
    {
        PDSM + "pdsm-comprehensive-provide-document-bundle",
        "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle",
    }
)
DOCREF_PROFILE = PDSM + "pdsm-comprehensive-document-reference"
SIMPLIFIED_PROFILE = PDSM + "pdsm-simplified-publish"
_ATTACHMENT_REQUIRED = ("contentType", "language", "url", "title", "hash")
SUBMISSIONSET_PROFILE = PDSM + "pdsm-submissionset-comprehensive"
MHD_EXT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
EXT_SOURCE_ID = MHD_EXT + "ihe-sourceId"
EXT_DESIGNATION = MHD_EXT + "ihe-designationType"
EXT_IS_ARCHIVED = PDSM + "pdsm-ext-is-archived"
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
RFC3986 = "urn:ietf:rfc:3986"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
FRENCH_PRODUCER_SYSTEMS = ("https://mos.esante.gouv.fr/NOS/", "urn:oid:1.2.250.1.")
RELATES_CODES = frozenset({"replaces", "transforms", "signs", "appends"})


@dataclass
class AuthorInfo:
    kind: str  # professional | patient | device | organization
    idnps: str | None = None
    family: str | None = None
    given: list[str] = field(default_factory=list)


@dataclass
class BinaryDraft:
    index: int
    full_url: str
    content_type: str
    data: bytes


@dataclass
class DocumentDraft:
    index: int
    full_url: str
    resource: dict[str, Any]
    master_identifier: str
    class_code: str
    type_system: str
    type_code: str
    date: datetime
    creation: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    confidentiality: str
    visibility: set[str]
    archived: bool
    authors: list[AuthorInfo]
    title: str
    content_type: str
    binary_url: str
    declared_size: int
    declared_sha1: str
    patient_ref: str
    replaces: str | None
    has_custodian: bool
    tokens: list[tuple[str, str | None, str]] = field(default_factory=list)


@dataclass
class SubmissionDraft:
    index: int
    full_url: str
    resource: dict[str, Any]
    unique_id: str
    source_id: str
    designation: str
    date: datetime
    patient_ref: str
    item_refs: list[str]
    source_family: str | None
    source_given: str | None


@dataclass
class PatchDraft:
    index: int
    target: str  # DocumentReference id
    status: str


@dataclass
class ParsedSubmission:
    submission: SubmissionDraft
    documents: list[DocumentDraft]
    binaries: dict[str, BinaryDraft]
    patches: list[PatchDraft]
    request_order: list[tuple[str, str]]  # (kind, full_url or target) per entry
    warnings: list[Issue]


class _Collector:
    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, path: str, message: str, code: str = "required") -> None:
        self.errors.append(Issue(code, message, expression=[path]))

    def warn(self, path: str, message: str, code: str = "business-rule") -> None:
        self.warnings.append(Issue(code, message, severity="warning", expression=[path]))


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def _first_coding(concept: Any) -> dict[str, Any] | None:
    codings = _codings(concept)
    return codings[0] if codings else None


def _contained(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        c["id"]: c
        for c in resource.get("contained") or []
        if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


def _instant(c: _Collector, path: str, raw: Any, *, required: bool = True) -> datetime | None:
    if raw is None:
        if required:
            c.error(path, f"Élément obligatoire absent : {path.rsplit('.', 1)[-1]}.")
        return None
    if not isinstance(raw, str):
        c.error(path, "Date attendue sous forme de chaîne FHIR.", "structure")
        return None
    try:
        return parse_instant(raw)
    except DateError as exc:
        c.error(path, str(exc), "value")
        return None


def _idnps_from_identifiers(identifiers: Any) -> str | None:
    for ident in identifiers or []:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), str(ident.get("value") or "")
        if system == IDNPS_SYSTEM:
            return value
        if system == RPPS_SYSTEM:
            return "8" + value
    return None


def _author(
    c: _Collector, path: str, ref: Any, contained: dict[str, dict[str, Any]]
) -> AuthorInfo | None:
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(reference, str) or not reference.startswith("#"):
        c.error(path, "L'auteur doit être une ressource contenue (référence « #id »).", "structure")
        return None
    target = contained.get(reference[1:])
    if target is None:
        c.error(path, f"Référence interne « {reference} » sans ressource contenue.", "not-found")
        return None
    rtype = target.get("resourceType")
    if rtype == "PractitionerRole":
        idnps = _idnps_from_identifiers(target.get("identifier"))
        practitioner_ref = (target.get("practitioner") or {}).get("reference", "")
        practitioner = (
            contained.get(practitioner_ref[1:]) if practitioner_ref.startswith("#") else None
        )
        if practitioner is not None:
            idnps = _idnps_from_identifiers(practitioner.get("identifier")) or idnps
        target = practitioner or target
    elif rtype == "Practitioner":
        idnps = _idnps_from_identifiers(target.get("identifier"))
    elif rtype in ("Patient", "RelatedPerson"):
        return AuthorInfo("patient")
    elif rtype == "Device":
        return AuthorInfo("device")
    elif rtype == "Organization":
        return AuthorInfo("organization")
    else:
        c.error(path, f"Type d'auteur non admis : {rtype}.", "structure")
        return None
    if idnps is None:
        c.error(
            path,
            "Auteur professionnel sans identifiant national (IDNPS urn:oid:1.2.250.1.71.4.2.1 "
            "ou RPPS https://rpps.esante.gouv.fr).",
        )
        return None
    try:
        idnps = IdNatPS.parse(idnps).value
    except IdentifierError as exc:
        c.error(path, f"Identifiant de l'auteur invalide : {exc}", "value")
        return None
    names = target.get("name") or []
    name = names[0] if names and isinstance(names[0], dict) else {}
    return AuthorInfo("professional", idnps, name.get("family"), list(name.get("given") or []))


def _check_profile(c: _Collector, path: str, resource: dict[str, Any], profile: str) -> None:
    profiles = (resource.get("meta") or {}).get("profile") or []
    if profiles and profile not in profiles and not any("IHE.MHD" in p for p in profiles):
        c.warn(path + ".meta.profile", f"Profil déclaré inattendu ; attendu {profile}.")


def _subject(c: _Collector, path: str, resource: dict[str, Any]) -> str | None:
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or not ref:
        c.error(path + ".subject", "Patient (subject.reference) obligatoire.")
        return None
    return ref


def _security(
    c: _Collector, path: str, resource: dict[str, Any], *, required: bool = True
) -> tuple[str, set[str], list[dict[str, Any]]]:
    """(confidentiality N/R/V, DMP visibility codes, normalised securityLabel list)."""
    labels = resource.get("securityLabel")
    if not labels and required:
        c.error(path + ".securityLabel", "securityLabel obligatoire (confidentialité N, R ou V).")
        return "N", set(), []
    labels = labels or []
    confidentiality: str | None = None
    visibility: set[str] = set()
    for i, label in enumerate(labels):
        for coding in _codings(label):
            system, code = coding.get("system"), coding.get("code")
            where = f"{path}.securityLabel[{i}]"
            if system == term.VISIBILITY_SYSTEM_MISSPELT:
                c.warn(
                    where,
                    "Système TRE_A07 mal orthographié (« StatusVisibilite… ») : corrigé en "
                    f"{term.VISIBILITY_SYSTEM} (défaut D16 des exemples PDSm).",
                )
                system = term.VISIBILITY_SYSTEM
            if system in (term.VISIBILITY_SYSTEM, term.VISIBILITY_OID):
                if code in term.DMP_VISIBILITY_CODES:
                    visibility.add(code)
                elif code in term.CONFIDENTIALITY_CODES:
                    c.warn(where, f"Code « {code} » de confidentialité HL7 v3 rangé sous TRE_A07.")
                    confidentiality = confidentiality or code
                else:
                    c.error(
                        where, f"Code de visibilité TRE_A07 inconnu : « {code} ».", "code-invalid"
                    )
            elif system == term.CONFIDENTIALITY_SYSTEM:
                if code not in term.CONFIDENTIALITY_CODES:
                    c.error(
                        where, f"Confidentialité inconnue : « {code} » (N, R ou V).", "code-invalid"
                    )
                else:
                    confidentiality = confidentiality or code
            else:
                c.error(
                    where,
                    f"Système de securityLabel non admis : {system} (HL7 v3-Confidentiality "
                    "ou TRE_A07).",
                    "code-invalid",
                )
    if confidentiality is None:
        c.warn(path + ".securityLabel", "Aucun code de confidentialité N/R/V : N retenu.")
        confidentiality = "N"
    normalised = [
        {
            "coding": [
                {
                    "system": term.CONFIDENTIALITY_SYSTEM,
                    "code": confidentiality,
                    "display": term.CONFIDENTIALITY_CODES[confidentiality],
                }
            ]
        }
    ]
    for code in sorted(visibility):
        normalised.append(visibility_label(code))
    return confidentiality, visibility, normalised


def visibility_label(code: str) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": term.VISIBILITY_SYSTEM,
                "code": code,
                "display": term.DMP_VISIBILITY_CODES[code],
            }
        ]
    }


def _validate_document(
    c: _Collector,
    index: int,
    entry: dict[str, Any],
    resource: dict[str, Any],
    *,
    simplified: bool = False,
) -> DocumentDraft | None:
    """Judge one DocumentReference. ``simplified`` applies pdsm-simplified-publish (ITI-105)
    instead of the comprehensive profile: there securityLabel, context.period, the contained
    source patient, attachment.language and attachment.creation are optional (MHD
    SimplifiedPublish.DocumentReference relaxes the Comprehensive metadata), and hash, size and
    url are the server's to fill in (reference dmp-pdsm.md §1.2)."""
    path = f"Bundle.entry[{index}].resource"
    before = len(c.errors)
    _check_profile(c, path, resource, SIMPLIFIED_PROFILE if simplified else DOCREF_PROFILE)
    contained = _contained(resource)
    if not contained and not simplified:
        c.error(path + ".contained", "Ressources contenues obligatoires (auteur, patient source).")

    master = resource.get("masterIdentifier") or {}
    master_value = master.get("value") if isinstance(master, dict) else None
    if not master_value:
        c.error(path + ".masterIdentifier", "masterIdentifier (uniqueId) obligatoire.")
    elif master.get("system") not in (None, RFC3986):
        c.error(path + ".masterIdentifier.system", "Système attendu : urn:ietf:rfc:3986.", "value")

    status = resource.get("status")
    if status != "current":
        c.error(
            path + ".status",
            f"Un document publié a le statut « current », reçu « {status} ».",
            "value",
        )
    if resource.get("docStatus") is not None:
        c.error(path + ".docStatus", "docStatus est interdit (cardinalité 0..0).", "structure")

    type_coding = _first_coding(resource.get("type"))
    type_system = type_code = ""
    if type_coding is None or not type_coding.get("code"):
        c.error(path + ".type", "typeCode (type) obligatoire.")
    else:
        type_system, type_code = type_coding.get("system") or "", type_coding["code"]
        if term.type_family(type_system) is None:
            c.error(
                path + ".type.coding[0].system",
                f"Système de typeCode non admis : {type_system} (LOINC ou TRE_A05).",
                "code-invalid",
            )

    categories = resource.get("category") or []
    class_coding = _first_coding(categories[0]) if categories else None
    class_code = ""
    if class_coding is None or not class_coding.get("code"):
        c.error(path + ".category", "classCode (category) obligatoire.")
    else:
        class_code = class_coding["code"]
        if not term.is_class_system(class_coding.get("system")):
            c.error(
                path + ".category[0].coding[0].system",
                f"Système de classCode non admis : {class_coding.get('system')} (TRE_A03).",
                "code-invalid",
            )
        elif term.class_display(class_code) is None:
            c.error(
                path + ".category[0].coding[0].code",
                f"Classe « {class_code} » absente de TRE_A03-ClasseDocument.",
                "code-invalid",
            )
    if type_code and class_code and term.type_family(type_system):
        expected = term.expected_class(type_system, type_code)
        if expected is None:
            c.warn(path + ".type", f"Type « {type_code} » absent de la table type→classe.")
        elif expected != class_code:
            c.warn(
                path + ".category",
                f"Classe « {class_code} » incohérente avec le type « {type_code} » : la table "
                f"ASS_X04 donne « {expected} » ({term.class_display(expected)}).",
            )

    patient_ref = _subject(c, path, resource)
    date = _instant(c, path + ".date", resource.get("date"))
    authors_raw = resource.get("author") or []
    if not authors_raw:
        c.error(path + ".author", "Au moins un auteur est obligatoire.")
    authors = [
        a
        for i, ref in enumerate(authors_raw)
        if (a := _author(c, f"{path}.author[{i}]", ref, contained)) is not None
    ]
    has_custodian = isinstance(resource.get("custodian"), dict)
    if not has_custodian:
        c.warn(
            path + ".custodian",
            "custodian absent (obligatoire dans PDSm) : la structure de l'émetteur est retenue.",
        )
    confidentiality, visibility, labels = _security(c, path, resource, required=not simplified)

    contents = resource.get("content") or []
    if len(contents) != 1:
        c.error(path + ".content", "Exactement un content est attendu.", "structure")
        contents = [contents[0]] if contents else [{}]
    content = contents[0] if isinstance(contents[0], dict) else {}
    att = content.get("attachment") or {}
    ap = path + ".content[0].attachment"
    for name in ("contentType", "title") if simplified else _ATTACHMENT_REQUIRED:
        if not att.get(name):
            c.error(f"{ap}.{name}", f"Élément obligatoire absent : attachment.{name}.")
    if att.get("data") is not None:
        c.error(ap + ".data", "attachment.data est interdit en ITI-65 (0..0).", "structure")
    size = att.get("size")
    if size is None:
        c.error(ap + ".size", "Élément obligatoire absent : attachment.size.")
    elif not isinstance(size, int) or size < 0:
        c.error(ap + ".size", "attachment.size doit être un entier positif.", "value")
    creation = _instant(c, ap + ".creation", att.get("creation"), required=not simplified)
    fmt = content.get("format")
    if not isinstance(fmt, dict) or not fmt.get("code"):
        c.error(path + ".content[0].format", "formatCode (content.format) obligatoire.")
    elif isinstance(att.get("contentType"), str):
        allowed = term.content_types_for_format(str(fmt["code"]))
        if allowed and att["contentType"].split(";")[0].strip().lower() not in allowed:
            c.warn(
                path + ".content[0].format",
                f"formatCode « {fmt['code']} » incohérent avec contentType "
                f"« {att['contentType']} » (attendu : {', '.join(allowed)}).",
            )

    ctx = resource.get("context") or {}
    cp = path + ".context"
    for name, label in (
        ("facilityType", "healthcareFacilityTypeCode"),
        ("practiceSetting", "practiceSettingCode"),
    ):
        coding = _first_coding(ctx.get(name))
        if coding is None or not coding.get("code"):
            c.error(f"{cp}.{name}", f"{label} (context.{name}) obligatoire.")
        elif not str(coding.get("system") or "").startswith(FRENCH_PRODUCER_SYSTEMS):
            c.warn(
                f"{cp}.{name}",
                f"Code {coding.get('system')}|{coding.get('code')} hors des jeux de valeurs "
                "français (JDV_J02 / JDV_J04) attendus par PDSm.",
            )
    period = ctx.get("period") or {}
    period_start = _instant(c, cp + ".period.start", period.get("start"), required=not simplified)
    period_end = _instant(c, cp + ".period.end", period.get("end"), required=False)
    spi = (ctx.get("sourcePatientInfo") or {}).get("reference")
    if spi is None and simplified:
        pass
    elif not isinstance(spi, str) or not spi:
        c.error(cp + ".sourcePatientInfo", "sourcePatientInfo obligatoire (patient contenu).")
    elif not spi.startswith("#") or spi[1:] not in contained:
        c.error(
            cp + ".sourcePatientInfo",
            f"sourcePatientInfo « {spi} » ne désigne aucune ressource contenue.",
            "not-found",
        )
    elif not (contained[spi[1:]].get("identifier")):
        c.error(
            cp + ".sourcePatientInfo",
            "Le patient source (sourcePatientInfo) doit porter un identifiant.",
        )

    replaces: str | None = None
    for i, rel in enumerate(resource.get("relatesTo") or []):
        code = rel.get("code") if isinstance(rel, dict) else None
        target = ((rel or {}).get("target") or {}).get("reference")
        if code not in RELATES_CODES:
            c.error(
                f"{path}.relatesTo[{i}].code", f"relatesTo.code inconnu : {code}.", "code-invalid"
            )
        if not isinstance(target, str) or "DocumentReference/" not in target:
            c.error(
                f"{path}.relatesTo[{i}].target",
                "relatesTo.target doit référencer une DocumentReference.",
            )
            continue
        if code == "replaces":
            replaces = target.rsplit("DocumentReference/", 1)[1].split("/")[0]

    archived = False
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == EXT_IS_ARCHIVED:
            archived = bool(ext.get("valueBoolean"))

    if len(c.errors) > before:
        return None
    assert date is not None and patient_ref is not None
    resource = dict(resource)
    resource["securityLabel"] = labels
    tokens: list[tuple[str, str | None, str]] = [
        ("type", type_system, type_code),
        ("category", class_coding.get("system") if class_coding else None, class_code),
        ("format", fmt.get("system"), fmt["code"]),
        ("identifier", master.get("system") or RFC3986, master_value),
    ]
    for name, param in (("facilityType", "facility"), ("practiceSetting", "setting")):
        for coding in _codings(ctx.get(name)):
            tokens.append((param, coding.get("system"), str(coding.get("code"))))
    for event in ctx.get("event") or []:
        for coding in _codings(event):
            tokens.append(("event", coding.get("system"), str(coding.get("code"))))
    for rel in ctx.get("related") or []:
        ident = (rel or {}).get("identifier") or {}
        if ident.get("value"):
            tokens.append(("related", ident.get("system"), str(ident["value"])))
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            tokens.append(("identifier", ident.get("system"), str(ident["value"])))
    return DocumentDraft(
        index=index,
        full_url=entry.get("fullUrl") or "",
        resource=resource,
        master_identifier=str(master_value),
        class_code=class_code,
        type_system=type_system,
        type_code=type_code,
        date=date,
        creation=creation,
        period_start=period_start,
        period_end=period_end,
        confidentiality=confidentiality,
        visibility=visibility,
        archived=archived,
        authors=authors,
        title=str(att["title"]),
        content_type=str(att["contentType"]),
        binary_url=str(att["url"]),
        declared_size=int(size),
        declared_sha1=str(att["hash"]),
        patient_ref=patient_ref,
        replaces=replaces,
        has_custodian=has_custodian,
        tokens=tokens,
    )


def _validate_submission(
    c: _Collector, index: int, entry: dict[str, Any], resource: dict[str, Any]
) -> SubmissionDraft | None:
    path = f"Bundle.entry[{index}].resource"
    before = len(c.errors)
    _check_profile(c, path, resource, SUBMISSIONSET_PROFILE)
    unique_id = None
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value") and ident.get("use") != "official":
            unique_id = unique_id or ident["value"]
    if unique_id is None:
        # entryUUID (use=official) alone does not name the submission set.
        c.error(path + ".identifier", "identifier uniqueId du lot de soumission obligatoire.")
    exts = {e.get("url"): e for e in resource.get("extension") or [] if isinstance(e, dict)}
    source_id = (exts.get(EXT_SOURCE_ID) or {}).get("valueIdentifier", {}).get("value")
    if not source_id:
        c.error(path + ".extension[sourceId]", "Extension ihe-sourceId obligatoire.")
    designation = _first_coding((exts.get(EXT_DESIGNATION) or {}).get("valueCodeableConcept"))
    if designation is None or not designation.get("code"):
        c.error(
            path + ".extension[designationType]",
            "Extension ihe-designationType (contentTypeCode) obligatoire.",
        )
    elif term.is_class_system(designation.get("system")):
        c.warn(
            path + ".extension[designationType]",
            "contentTypeCode porte un code de classe TRE_A03 ; attendu TRE_A00, TRE_R209 ou "
            "TRE_R02 (JDV_J59).",
        )
    for url in exts:
        if url and url.endswith("ihe-sourcePatientId"):
            c.warn(
                path + ".extension", "Extension ihe-sourcePatientId non définie par MHD pour List."
            )
    code = _first_coding(resource.get("code"))
    if code is None or code.get("code") != "submissionset":
        c.error(path + ".code", "code = MHDlistTypes#submissionset attendu.", "value")
    if resource.get("status") != "current":
        c.error(path + ".status", "Le lot de soumission a le statut « current ».", "value")
    if resource.get("mode") != "working":
        c.error(path + ".mode", "mode = working attendu.", "value")
    patient_ref = _subject(c, path, resource)
    date = _instant(c, path + ".date", resource.get("date"))
    source_family = source_given = None
    source = (resource.get("source") or {}).get("reference")
    if not isinstance(source, str):
        c.error(path + ".source", "source (auteur du lot) obligatoire.")
    elif source.startswith("#"):
        target = _contained(resource).get(source[1:])
        if target is None:
            c.error(path + ".source", f"source « {source} » sans ressource contenue.", "not-found")
        else:
            if target.get("resourceType") == "Practitioner":
                c.warn(
                    path + ".source",
                    "source est un Practitioner ; PDSm attend PractitionerRole, Device ou Patient.",
                )
            names = target.get("name") or []
            if names and isinstance(names[0], dict):
                source_family = names[0].get("family")
                given = names[0].get("given") or []
                source_given = given[0] if given else None
    items = [
        str((e.get("item") or {}).get("reference") or "")
        for e in resource.get("entry") or []
        if isinstance(e, dict)
    ]
    if len(c.errors) > before:
        return None
    assert date is not None and patient_ref is not None and designation is not None
    return SubmissionDraft(
        index=index,
        full_url=entry.get("fullUrl") or "",
        resource=dict(resource),
        unique_id=str(unique_id),
        source_id=str(source_id),
        designation=f"{designation.get('system') or ''}|{designation['code']}",
        date=date,
        patient_ref=patient_ref,
        item_refs=items,
        source_family=source_family,
        source_given=source_given,
    )


def _validate_patch(c: _Collector, index: int, entry: dict[str, Any]) -> PatchDraft | None:
    path = f"Bundle.entry[{index}]"
    url = str((entry.get("request") or {}).get("url") or "")
    if not url.startswith("DocumentReference/"):
        c.error(path + ".request.url", "PATCH attendu sur DocumentReference/[id].", "value")
        return None
    resource = entry.get("resource") or {}
    for i, op in enumerate(resource.get("parameter") or []):
        parts = {p.get("name"): p for p in op.get("part") or [] if isinstance(p, dict)}
        kind = (parts.get("type") or {}).get("valueCode")
        target_path = (parts.get("path") or {}).get("valueString")
        value = (parts.get("value") or {}).get("valueCode") or (parts.get("value") or {}).get(
            "valueString"
        )
        if (
            kind == "replace"
            and target_path == "DocumentReference.status"
            and value == "superseded"
        ):
            return PatchDraft(index, url.split("/", 1)[1], "superseded")
        c.error(
            f"{path}.resource.parameter[{i}]",
            "Seul « replace DocumentReference.status → superseded » est admis dans un lot.",
            "not-supported",
        )
    if not resource.get("parameter"):
        c.error(path + ".resource", "Parameters de patch FHIRPath attendu.", "required")
    return None


def _decode_binary(
    c: _Collector, index: int, entry: dict[str, Any], max_bytes: int
) -> BinaryDraft | None:
    path = f"Bundle.entry[{index}].resource"
    resource = entry["resource"]
    content_type = resource.get("contentType")
    if not content_type:
        c.error(path + ".contentType", "Binary.contentType obligatoire.")
    raw = resource.get("data")
    if not isinstance(raw, str):
        c.error(path + ".data", "Binary.data (contenu base64) obligatoire.")
        return None
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        c.error(path + ".data", "Binary.data n'est pas du base64 valide.", "value")
        return None
    if len(data) > max_bytes:
        c.error(
            path + ".data",
            f"Document de {len(data)} octets : la limite est de {max_bytes} octets.",
            "too-costly",
        )
        return None
    return BinaryDraft(index, entry.get("fullUrl") or "", str(content_type or ""), data)


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def parse_provide_bundle(
    bundle: Any, *, max_bytes: int, simplified: bool = False
) -> ParsedSubmission:
    """Validate an ITI-65 bundle; raise a 400 ``FHIRError`` listing every problem (413 when a
    document exceeds ``max_bytes``, the instance's configured limit). ``simplified`` is for the
    bundle the server builds around an ITI-105 DocumentReference."""
    c = _Collector()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FHIRError(400, "structure", "Un Bundle FHIR est attendu.")
    if bundle.get("type") != "transaction":
        raise FHIRError(
            400, "value", "Le Bundle doit être de type « transaction ».", expression=["Bundle.type"]
        )
    profiles = (bundle.get("meta") or {}).get("profile") or []
    if not BUNDLE_PROFILES.intersection(profiles):
        c.error(
            "Bundle.meta.profile",
            "Profil de lot absent ou inconnu : attendu "
            "pdsm-comprehensive-provide-document-bundle (PDSm) ou "
            "IHE.MHD.Comprehensive.ProvideBundle.",
            "invalid",
        )
    submissions: list[SubmissionDraft] = []
    documents: list[DocumentDraft] = []
    binaries: dict[str, BinaryDraft] = {}
    patches: list[PatchDraft] = []
    order: list[tuple[str, str]] = []
    seen_urls: set[str] = set()
    # Cross-entry rules look at every DocumentReference entry, valid or not, so one bad
    # document does not also make its Binary and its List item look orphaned.
    doc_entry_urls: set[str] = set()
    attachment_urls: set[str] = set()
    entries = bundle.get("entry") or []
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            c.error(path, "Entrée de Bundle invalide.", "structure")
            continue
        resource = entry.get("resource")
        method = (entry.get("request") or {}).get("method")
        full_url = entry.get("fullUrl") or ""
        if full_url:
            if full_url in seen_urls:
                c.error(path + ".fullUrl", f"fullUrl en double : {full_url}.", "duplicate")
            seen_urls.add(full_url)
        if not isinstance(resource, dict):
            c.error(path + ".resource", "Ressource absente.", "required")
            continue
        rtype = resource.get("resourceType")
        if method is None:
            c.error(path + ".request.method", "request.method obligatoire.", "required")
            continue
        if rtype == "Parameters" and method == "PATCH":
            patch = _validate_patch(c, index, entry)
            if patch:
                patches.append(patch)
                order.append(("patch", patch.target))
            continue
        if method != "POST":
            c.error(path + ".request.method", f"Méthode {method} non admise ici.", "not-supported")
            continue
        if not full_url:
            c.error(path + ".fullUrl", "fullUrl obligatoire (urn:uuid:…).", "required")
        if rtype == "List":
            code = (_first_coding(resource.get("code")) or {}).get("code")
            if code == "folder":
                c.warn(
                    path,
                    "Classeurs (Folder) non pris en charge : ignoré "
                    "(PartialFolderContentNotProcessed).",
                    "not-supported",
                )
                order.append(("ignored", full_url))
                continue
            sub = _validate_submission(c, index, entry, resource)
            if sub:
                submissions.append(sub)
            order.append(("List", full_url))
        elif rtype == "DocumentReference":
            doc_entry_urls.add(full_url)
            for content in resource.get("content") or []:
                url = ((content or {}).get("attachment") or {}).get("url")
                if isinstance(url, str):
                    attachment_urls.add(url)
            doc = _validate_document(c, index, entry, resource, simplified=simplified)
            if doc:
                documents.append(doc)
            order.append(("DocumentReference", full_url))
        elif rtype == "Binary":
            binary = _decode_binary(c, index, entry, max_bytes)
            if binary:
                binaries[binary.full_url] = binary
            order.append(("Binary", full_url))
        elif rtype == "Bundle":
            c.error(
                path,
                "Documents FHIR non pris en charge (FHIRDocumentNotSupported).",
                "not-supported",
            )
        elif rtype == "Patient":
            c.warn(path, "Ressource Patient du lot ignorée : le patient doit avoir un DMP.")
            order.append(("ignored", full_url))
        else:
            c.error(path, f"Ressource {rtype} non admise dans un lot ITI-65.", "not-supported")

    lists = [o for o in order if o[0] == "List"]
    if len(lists) != 1:
        c.error("Bundle.entry", "Exactement un lot de soumission (List submissionset) attendu.")
    if not any(o[0] == "DocumentReference" for o in order):
        c.error("Bundle.entry", "Au moins une DocumentReference est attendue.")

    # Cross-entry rules: documents ↔ binaries (bytes match the metadata), submission ↔ items.
    for doc in documents:
        ap = f"Bundle.entry[{doc.index}].resource.content[0].attachment"
        binary = binaries.get(doc.binary_url)
        if binary is None:
            c.error(
                ap + ".url",
                f"attachment.url « {doc.binary_url} » ne désigne aucun Binary du lot.",
                "not-found",
            )
            continue
        if len(binary.data) != doc.declared_size:
            c.error(
                ap + ".size",
                f"attachment.size = {doc.declared_size} mais le document fait "
                f"{len(binary.data)} octets.",
                "value",
            )
        actual = sha1_b64(binary.data)
        if actual != doc.declared_sha1:
            c.error(
                ap + ".hash",
                f"attachment.hash ne correspond pas au contenu : SHA-1 calculé {actual}, "
                f"déclaré {doc.declared_sha1}.",
                "value",
            )
        if binary.content_type and binary.content_type != doc.content_type:
            c.warn(
                ap + ".contentType",
                f"contentType {doc.content_type} ≠ Binary.contentType {binary.content_type}.",
            )
    for url, binary in binaries.items():
        if url not in attachment_urls:
            c.error(
                f"Bundle.entry[{binary.index}]",
                "Binary non référencé par une DocumentReference du lot.",
                "business-rule",
            )
    if submissions:
        sub = submissions[0]
        for i, item in enumerate(sub.item_refs):
            if item not in doc_entry_urls and not item.startswith("DocumentReference/"):
                c.error(
                    f"Bundle.entry[{sub.index}].resource.entry[{i}].item",
                    f"Élément « {item} » du lot introuvable dans le Bundle.",
                    "not-found",
                )
        for doc in documents:
            if doc.full_url not in sub.item_refs:
                c.warn(
                    f"Bundle.entry[{doc.index}]",
                    "DocumentReference absente de List.entry du lot de soumission.",
                )
        for doc in documents:
            if doc.patient_ref != sub.patient_ref:
                c.error(
                    f"Bundle.entry[{doc.index}].resource.subject",
                    "Le document et le lot de soumission désignent des patients différents.",
                    "business-rule",
                )
    masters = [d.master_identifier for d in documents]
    for doc in documents:
        if masters.count(doc.master_identifier) > 1:
            c.error(
                f"Bundle.entry[{doc.index}].resource.masterIdentifier",
                "masterIdentifier en double dans le lot.",
                "duplicate",
            )
    replaced = {d.replaces for d in documents if d.replaces}
    for patch in patches:
        if patch.target not in replaced:
            c.error(
                f"Bundle.entry[{patch.index}]",
                f"PATCH de DocumentReference/{patch.target} sans document qui la remplace "
                "(relatesTo replaces).",
                "business-rule",
            )

    if c.errors:
        status = 413 if any(e.code == "too-costly" for e in c.errors) else 400
        raise FHIRError(
            status, c.errors[0].code, c.errors[0].diagnostics, issues=c.errors + c.warnings
        )
    return ParsedSubmission(submissions[0], documents, binaries, patches, order, c.warnings)
