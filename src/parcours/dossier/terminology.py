"""Document codes of the DMP: classes (TRE_A03), type→class table, confidentiality and
visibility labels, and the nine display spaces — loaded from data files, not written in code.

Systems are accepted in both spellings the guides use (FHIR URL and ``urn:oid:``) and emitted
in the FHIR URL form. Sources: ``data/terminology.json`` (ANS ASS_X04 + later ANS additions)
and ``data/spaces.json`` (space names from the project seed, assignment rule derived).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
LOINC = "http://loinc.org"
TRE_A05_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaireCISIS/FHIR/"
    "TRE-A05-TypeDocComplementaireCISIS"
)
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONFIDENTIALITY_CODES = {"N": "normal", "R": "restricted", "V": "very restricted"}
VISIBILITY_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
    "TRE-A07-StatutVisibiliteDocument"
)
VISIBILITY_OID = "urn:oid:1.2.250.1.213.1.1.4.13"
# The PDSm examples misspell the system (defect D16): recognised to report it, never emitted.
VISIBILITY_SYSTEM_MISSPELT = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)
MASQUE_PS = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"
DMP_VISIBILITY_CODES = {
    MASQUE_PS: "Masqué aux professionnels de santé",
    INVISIBLE_PATIENT: "Non visible par le patient",
    INVISIBLE_REPRESENTANTS_LEGAUX: "Non visible par les représentants légaux du patient",
}


def _load(name: str) -> Any:
    return json.loads(resources.files("parcours.dossier").joinpath("data", name).read_text())


@cache
def _terminology() -> dict[str, Any]:
    return _load("terminology.json")  # type: ignore[no-any-return]


def class_display(code: str) -> str | None:
    return _terminology()["classes"].get(code)  # type: ignore[no-any-return]


def is_class_system(system: str | None) -> bool:
    return system in _terminology()["class_systems"]


def content_types_for_format(format_code: str) -> tuple[str, ...] | None:
    """Content types a formatCode can carry, or None when the code does not constrain it."""
    table = _terminology()["format_content_types"]
    for prefix, types in table.items():
        if not prefix.startswith("_") and format_code.startswith(prefix):
            return tuple(types)
    return None


def type_family(system: str | None) -> str | None:
    """``LOINC`` or ``TRE_A05`` for a known typeCode system, else None."""
    return _terminology()["type_systems"].get(system or "")  # type: ignore[no-any-return]


def expected_class(type_system: str | None, type_code: str) -> str | None:
    family = type_family(type_system)
    if family is None:
        return None
    return _terminology()["type_to_class"][family].get(type_code)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Space:
    code: str
    label: str
    long_label: str
    classes: frozenset[str]
    types: frozenset[str]  # "LOINC|11502-2"
    patient_authored: bool


@cache
def spaces() -> tuple[Space, ...]:
    return tuple(
        Space(
            code=s["code"],
            label=s["label"],
            long_label=s["long_label"],
            classes=frozenset(s["classes"]),
            types=frozenset(s["types"]),
            patient_authored=bool(s.get("patient_authored", False)),
        )
        for s in _load("spaces.json")["spaces"]
    )


SPACE_CODES = frozenset(s.code for s in spaces())


def space_for(class_code: str, type_system: str | None, type_code: str, *, by_patient: bool) -> str:
    """The display space of a document: type overrides first, then patient authorship, then
    class. Every TRE_A03 class lands in exactly one space (tested)."""
    family = type_family(type_system)
    if family is not None:
        key = f"{family}|{type_code}"
        for space in spaces():
            if key in space.types:
                return space.code
    if by_patient:
        for space in spaces():
            if space.patient_authored:
                return space.code
    for space in spaces():
        if class_code in space.classes:
            return space.code
    return "espace-personnel"
