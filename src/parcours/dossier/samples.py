"""Valid PDSm ITI-65 bundles built from the profiles' required elements (reference §2.1–2.2):
used by the demo territory and the tests (a real patient INS, an author from the directory)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
# 1 84 12 35 238 012 + key: a well-formed NIR (key = 97 - n mod 97).
PATIENT_NIR13 = "1841235238012"
PATIENT_INS = PATIENT_NIR13 + f"{97 - int(PATIENT_NIR13) % 97:02d}"
OTHER_NIR13 = "2900535238123"
OTHER_INS = OTHER_NIR13 + f"{97 - int(OTHER_NIR13) % 97:02d}"

CDA_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
    "<title>{title}</title><component><structuredBody><component><section><title>Conclusion"
    "</title><text>{text}</text></section></component></structuredBody></component>"
    "</ClinicalDocument>"
)


def cda(text: str, title: str = "Compte rendu") -> bytes:
    return CDA_TEMPLATE.format(title=title, text=text).encode()


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def document_reference(
    *,
    subject: str,
    author_idnps: str,
    binary_url: str,
    data: bytes,
    type_code: str = "11488-4",
    class_code: str = "10",
    content_type: str = "text/xml",
    title: str = "Compte rendu de consultation",
    date: str = "2026-06-12T10:00:00+02:00",
    patient_ins: str = PATIENT_INS,
    security: list[tuple[str, str]] | None = None,
    replaces: str | None = None,
) -> dict[str, Any]:
    labels = security or [("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N")]
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [PDSM + "pdsm-comprehensive-document-reference"]},
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "auteur",
                "identifier": [{"system": IDNPS, "value": author_idnps}],
                "name": [{"family": "Dupont", "given": ["Élise"]}],
            },
            {
                "resourceType": "Patient",
                "id": "patient-source",
                "identifier": [{"system": INS_NIR, "value": patient_ins}],
            },
        ],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": urn()},
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": type_code}]},
        "category": [{"coding": [{"system": CLASS_SYSTEM, "code": class_code}]}],
        "subject": {"reference": subject},
        "date": date,
        "author": [{"reference": "#auteur"}],
        "custodian": {
            "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1350000014"}
        },
        "securityLabel": [{"coding": [{"system": s, "code": c}]} for s, c in labels],
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "language": "fr-FR",
                    "url": binary_url,
                    "size": len(data),
                    "hash": sha1_b64(data),
                    "title": title,
                    "creation": date,
                },
                "format": {
                    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                },
            }
        ],
        "context": {
            "period": {"start": date},
            "facilityType": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
                        "code": "SA07",
                    }
                ]
            },
            "practiceSetting": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
                        "code": "AMBULATOIRE",
                    }
                ]
            },
            "sourcePatientInfo": {"reference": "#patient-source"},
        },
    }
    if replaces:
        resource["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{replaces}"}}
        ]
    return resource


def provide_bundle(
    *,
    subject: str,
    author_idnps: str,
    documents: list[tuple[bytes, dict[str, Any]]] | None = None,
    patches: list[str] = (),  # type: ignore[assignment]
    patient_ins: str = PATIENT_INS,
) -> dict[str, Any]:
    """``documents``: (bytes, keyword overrides for ``document_reference``)."""
    documents = documents or [(cda("Examen normal."), {})]
    list_url = urn()
    entries: list[dict[str, Any]] = []
    doc_entries = []
    for data, overrides in documents:
        binary_url, doc_url = urn(), urn()
        doc = document_reference(
            subject=subject,
            author_idnps=author_idnps,
            binary_url=binary_url,
            data=data,
            **overrides,
        )
        doc_entries.append(
            {
                "fullUrl": doc_url,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
        doc_entries.append(
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": overrides.get("content_type", "text/xml"),
                    "data": base64.b64encode(data).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        )
    submission = {
        "resourceType": "List",
        "meta": {"profile": [PDSM + "pdsm-submissionset-comprehensive"]},
        "contained": [
            {
                "resourceType": "PractitionerRole",
                "id": "source",
                "identifier": [{"system": IDNPS, "value": author_idnps}],
            }
        ],
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {
                    "system": "urn:ietf:rfc:3986",
                    "value": "urn:oid:1.2.250.1.999.1",
                },
            },
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS",
                            "code": "04",
                        }
                    ]
                },
            },
        ],
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": urn()}],
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
        "date": "2026-06-12T10:05:00+02:00",
        "source": {"reference": "#source"},
        "entry": [{"item": {"reference": e["fullUrl"]}} for e in doc_entries[::2]],
    }
    entries.append(
        {"fullUrl": list_url, "resource": submission, "request": {"method": "POST", "url": "List"}}
    )
    entries += doc_entries
    for target in patches:
        entries.append(
            {
                "fullUrl": urn(),
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {
                            "name": "operation",
                            "part": [
                                {"name": "type", "valueCode": "replace"},
                                {"name": "path", "valueString": "DocumentReference.status"},
                                {"name": "value", "valueCode": "superseded"},
                            ],
                        }
                    ],
                },
                "request": {"method": "PATCH", "url": f"DocumentReference/{target}"},
            }
        )
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [PDSM + "pdsm-comprehensive-provide-document-bundle"]},
        "type": "transaction",
        "entry": entries,
    }
