"""Loaders for the official conformance corpus (``/work/shared/conformance``, see its README),
read where it lies — never copied into the repository — and the placeholder substitutions the
README asks for before an official example is posted to our DMP.

Substitutions (README « How to use »), and nothing else:
- patient references: ``Patient?identifier=…|123456789012345`` → the same conditional form with
  our valid INS; a literal ``Patient/<placeholder>`` → ``Patient/<our patient id>``;
- contained source patients: their INS identifiers → our INS;
- authors: IDNPS / RPPS identifiers of contained Practitioner / PractitionerRole → our directory
  professional (IDNPS ``8`` + DUPONT);
- unique ids: DocumentReference.masterIdentifier and the SubmissionSet uniqueId made unique;
- replacement: the ``relatesTo`` target and the PATCH url → a document we published first.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from parcours.dossier.samples import IDNPS, INS_NIR, PATIENT_INS
from tests.scenario import DUPONT

CONFORMANCE = Path(__file__).parents[3] / "shared" / "conformance"
RPPS = "https://rpps.esante.gouv.fr"
RFC3986 = "urn:ietf:rfc:3986"
OUR_IDNPS = "8" + DUPONT
OUR_CONDITIONAL_SUBJECT = f"Patient?identifier={INS_NIR}|{PATIENT_INS}"
BUNDLE_PROFILE = (
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
    "pdsm-comprehensive-provide-document-bundle"
)

# The official ITI-65 transaction bundles (item 1 of the brief).
TD2_SUBMISSION = "pdsm4dmp/examples/Bundle-example-td2-iti65-lot-soumission.json"
TD21_REPLACEMENT = "pdsm4dmp/examples/Bundle-example-td2-1-remplacement.json"
PDSM_REPLACEMENT = (
    "pdsm/proposed-branch-add-exemples-iti65/"
    "Bundle-bundle-exemple-comprehensiveprovidedocument-replace.json"
)
PDSM_DOCREF = "pdsm/examples/DocumentReference-exemple-pdsm-documentreference.json"
PDSM_SUBMISSIONSET = "pdsm/examples/List-ExampleSubmissionSet.json"
PDSM_BINARY = "pdsm/examples/Binary-6789.json"
PDSM_ITI105 = "pdsm/examples/DocumentReference-PDSmSimplifiedExample.json"
PDSM4DMP_ITI105 = (
    "pdsm4dmp/examples/DocumentReference-example-td2-iti105-publication-simplifiee.json"
)


def available() -> bool:
    return CONFORMANCE.is_dir()


def load(relative: str) -> dict[str, Any]:
    """A fresh parse of an official JSON file (callers may mutate it)."""
    return json.loads((CONFORMANCE / relative).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def read_csv(relative: str) -> list[dict[str, str]]:
    with (CONFORMANCE / relative).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def asbestos_rows(collection: str, kind: str | None = None) -> list[dict[str, str]]:
    return [
        row
        for row in read_csv("asbestos/index.csv")
        if row["collection"] == collection and (kind is None or row["kind"] == kind)
    ]


# --- substitutions -------------------------------------------------------------------------


def _walk(node: Any, visit: Any) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def substitute(resource: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """The README substitutions of patient and author placeholders (a deep copy)."""
    out = copy.deepcopy(resource)

    def visit(node: dict[str, Any]) -> None:
        ref = node.get("reference")
        if isinstance(ref, str):
            if ref.startswith("Patient?"):
                node["reference"] = OUR_CONDITIONAL_SUBJECT
            elif ref.startswith("Patient/"):
                node["reference"] = f"Patient/{patient_id}"
        rtype = node.get("resourceType")
        identifiers = node.get("identifier") if rtype else None
        for ident in identifiers if isinstance(identifiers, list) else []:
            if not isinstance(ident, dict):
                continue
            if rtype == "Patient" and ident.get("system") == INS_NIR:
                ident["value"] = PATIENT_INS
            elif rtype in ("Practitioner", "PractitionerRole") and ident.get("system") in (
                IDNPS,
                RPPS,
            ):
                ident["system"], ident["value"] = IDNPS, OUR_IDNPS

    _walk(out, visit)
    return out


def entries_of(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def submission_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return entries_of(bundle, "List")[0]["resource"]  # type: ignore[no-any-return]


def fresh_urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def make_unique(bundle: dict[str, Any]) -> None:
    """Fresh masterIdentifier values (and SubmissionSet uniqueId, where the example has one)."""
    for entry in entries_of(bundle, "DocumentReference"):
        entry["resource"]["masterIdentifier"]["value"] = fresh_urn()
    for ident in submission_of(bundle).get("identifier") or []:
        if ident.get("use") != "official":
            ident["value"] = fresh_urn()


def add_submission_unique_id(bundle: dict[str, Any]) -> str:
    """The three official ITI-65 bundles carry no SubmissionSet uniqueId: give one."""
    value = fresh_urn()
    submission_of(bundle)["identifier"] = [{"use": "usual", "system": RFC3986, "value": value}]
    return value


def retarget(bundle: dict[str, Any], old_id: str, new_id: str) -> None:
    """relatesTo targets and PATCH urls naming ``DocumentReference/<old_id>`` → ``new_id``."""
    old, new = f"DocumentReference/{old_id}", f"DocumentReference/{new_id}"
    for entry in bundle["entry"]:
        request = entry.get("request") or {}
        if request.get("url") == old:
            request["url"] = new
        for rel in entry["resource"].get("relatesTo") or []:
            if rel["target"].get("reference") == old:
                rel["target"]["reference"] = new


def binary_bytes(bundle: dict[str, Any], url: str) -> bytes:
    for entry in bundle["entry"]:
        if entry.get("fullUrl") == url and entry["resource"]["resourceType"] == "Binary":
            return base64.b64decode(entry["resource"]["data"])
    raise KeyError(url)


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def fix_hashes(bundle: dict[str, Any]) -> None:
    """Recompute attachment.hash (SHA-1, base64) and size from the Binary each DR points to."""
    for entry in entries_of(bundle, "DocumentReference"):
        att = entry["resource"]["content"][0]["attachment"]
        data = binary_bytes(bundle, att["url"])
        att["hash"], att["size"] = sha1_b64(data), len(data)
