"""Publishing a file a professional uploads (WebPS): the PDSm metadata built from what the
DMP already knows, then the ITI-105 path an API client would use.

The professional chooses a type by its name, a title, the date of the act and the visibility;
everything else comes from the Annuaire — the author (IDNPS and name), the custodian (his
structure), ``context.facilityType`` (the structure's sector, TRE_R02 / JDV_J02) and
``context.practiceSetting`` (his specialty, TRE_R38 / JDV_J04; his profession, TRE_G15, when
the Annuaire gives no specialty) — and from the record (the patient's INS as
``sourcePatientInfo``). The class follows from the type (ASS_X04). Bytes are recognised by
their signature, never by the name or the browser's claim: a PDF (XDS-SD, ``%PDF-``) or a CDA
R2 document (``ClinicalDocument`` in the HL7 v3 namespace).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from parcours.annuaire import directory
from parcours.annuaire import nomenclatures as nos
from parcours.auth.principal import Principal
from parcours.dossier import documents, records
from parcours.dossier import terminology as term
from parcours.dossier.store import DocumentStore
from parcours.fhir.errors import FHIRError
from parcours.identity import IDNST_OID
from parcours.identity.professional import IDNPS_OID
from parcours.storage.db import Database

PDSM_SIMPLIFIED = (
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-simplified-publish"
)
LOINC = "http://loinc.org"
FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
FORMATS = {
    "application/pdf": "urn:ihe:iti:xds-sd:pdf:2008",
    "text/xml": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
}
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class DocumentType:
    code: str
    label: str
    class_code: str


@cache
def document_types() -> tuple[DocumentType, ...]:
    raw = json.loads((Path(__file__).parent / "data" / "types_depot.json").read_text("utf-8"))
    out = []
    for item in raw["types"]:
        class_code = term.expected_class(LOINC, item["code"])
        assert class_code is not None, item  # held by a test: every type has its class
        out.append(DocumentType(item["code"], item["label"], class_code))
    return tuple(out)


class UploadRefused(ValueError):
    """The upload itself is wrong (file, type, date): said in French, nothing stored."""


def sniff(data: bytes) -> str:
    """The content type from the bytes themselves."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and b"ClinicalDocument" in head and b"urn:hl7-org:v3" in head:
        return "text/xml"
    raise UploadRefused(
        "Format non reconnu : déposez un PDF ou un document CDA R2 (XML). "
        "Le format est vérifié sur le contenu du fichier, pas sur son nom."
    )


def publish_upload(
    db: Database,
    store: DocumentStore,
    principal: Principal,
    *,
    patient_id: str,
    type_code: str,
    title: str,
    act_date: date,
    data: bytes,
    masked: bool,
    invisible_to_patient: bool,
    base: str,
) -> dict[str, Any]:
    """Build the DocumentReference and publish it by ITI-105 (same validation, policy, trace
    and atomicity as the API). Returns the stored DocumentReference."""
    kinds = {t.code: t for t in document_types()}
    if type_code not in kinds:
        raise UploadRefused("Choisissez le type du document dans la liste.")
    title = " ".join(title.split())[:200]
    if not title:
        raise UploadRefused("Donnez un titre au document (il s'affiche dans le dossier).")
    if not data:
        raise UploadRefused("Le fichier est vide.")
    if len(data) > store.max_document_bytes:
        raise UploadRefused(
            f"Fichier trop volumineux : {len(data) / 1_048_576:.1f} Mo, "
            f"au plus {store.max_document_bytes / 1_048_576:.0f} Mo."
        )
    if act_date > datetime.now(PARIS).date():
        raise UploadRefused("La date de l'acte ne peut pas être dans le futur.")
    content_type = sniff(data)
    if principal.kind != "professional" or not principal.idnat_ps:
        raise FHIRError(403, "forbidden", "Dépôt réservé aux professionnels de santé.")
    with db.session() as session:
        author = directory.find_professional(session, principal.idnat_ps)
        if author is None:
            raise UploadRefused("Votre inscription à l'annuaire est introuvable ou inactive.")
        structure_id = principal.structure or author.structure
        structure = directory.find_structure(session, structure_id) if structure_id else None
        if structure is None or not structure.sector_code:
            raise UploadRefused(
                "Votre structure d'exercice est inconnue de l'annuaire : le secteur d'activité "
                "du document ne peut pas être renseigné."
            )
        patient = records.read_patient(session, principal, patient_id)
    ins = patient["identifier"][0]
    kind = kinds[type_code]
    moment = datetime.combine(act_date, time(12, 0), tzinfo=PARIS).isoformat()
    given, _, family = author.display_name.removeprefix("Dr ").removeprefix("Pr ").partition(" ")
    setting = (
        (nos.CS_SPECIALITE_ORDINALE, author.specialty_code)
        if author.specialty_code
        else (nos.CS_PROFESSION, author.profession_code or "10")
    )
    labels = [{"coding": [{"system": term.CONFIDENTIALITY_SYSTEM, "code": "N"}]}]
    labels += [
        {"coding": [{"system": term.VISIBILITY_SYSTEM, "code": code}]}
        for code, chosen in (
            (term.MASQUE_PS, masked),
            (term.INVISIBLE_PATIENT, invisible_to_patient),
        )
        if chosen
    ]
    resource = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [PDSM_SIMPLIFIED]},
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "auteur",
                "identifier": [{"system": f"urn:oid:{IDNPS_OID}", "value": author.idnat_ps}],
                "name": [{"family": family or given, "given": [given] if family else []}],
            },
            {
                "resourceType": "Patient",
                "id": "patient-source",
                "identifier": [{"system": ins["system"], "value": ins["value"]}],
            },
        ],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": kind.code, "display": kind.label}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/"
                        "TRE-A03-ClasseDocument",
                        "code": kind.class_code,
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": moment,
        "author": [{"reference": "#auteur"}],
        "custodian": {"identifier": {"system": f"urn:oid:{IDNST_OID}", "value": structure_id}},
        "securityLabel": labels,
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "language": "fr-FR",
                    "data": base64.b64encode(data).decode("ascii"),
                    "title": title,
                    "creation": moment,
                },
                "format": {"system": FORMAT_SYSTEM, "code": FORMATS[content_type]},
            }
        ],
        "context": {
            "period": {"start": moment},
            "facilityType": {
                "coding": [{"system": nos.CS_SECTEUR_ACTIVITE, "code": structure.sector_code}]
            },
            "practiceSetting": {"coding": [{"system": setting[0], "code": setting[1]}]},
            "sourcePatientInfo": {"reference": "#patient-source"},
        },
    }
    return documents.simplified_publish(db, store, principal, resource, base)
