"""The policy's data: parameters, forbidden accessors and the habilitation matrix.

Loaded once from ``policy/data/*.json`` and hashed, so every trace can name the exact rules
version that decided it (reference dmp-access.md §5.2). Parameters are the interpretations of
§5.4: a deployment changes them here, never in code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

READ_CELLS = frozenset({"✓", "✓?"})
CELL_SYMBOLS = frozenset({"✓", "✓?", "✗", "✗?", "?"})
VERIFIED_CELLS = frozenset({"✓", "✗"})


class RulesError(ValueError):
    """The rules data is inconsistent: refuse to start rather than decide on bad data."""


@dataclass(frozen=True)
class Matrix:
    """Profession (TRE_G15, or ``role:<role>``) × document column → cell symbol."""

    columns: Mapping[str, Mapping[str, Any]]
    cells: Mapping[tuple[str, str], str]
    by_type: Mapping[str, str]
    by_class: Mapping[str, str]
    rows: frozenset[str]

    def column_of(self, class_code: str, type_code: str) -> str | None:
        return self.by_type.get(type_code) or self.by_class.get(class_code)

    def cell(self, row: str | None, column: str | None) -> str:
        if row is None or column is None:
            return "?"
        return self.cells.get((row, column), "✗")  # an absent cell is ✗ (§2.5)

    def unverified(self) -> list[str]:
        """One line per cell not checked against the arrêté's annex, for a diff."""
        return [
            f"{row}\t{column}\t{symbol}"
            for (row, column), symbol in sorted(self.cells.items())
            if symbol not in VERIFIED_CELLS
        ]


def build_matrix(data: Mapping[str, Any]) -> Matrix:
    columns = data["columns"]
    by_type: dict[str, str] = {}
    by_class: dict[str, str] = {}
    for name, column in columns.items():
        for type_code in column.get("types", []):
            if type_code in by_type:
                raise RulesError(
                    f"type {type_code} dans deux colonnes ({by_type[type_code]}, {name})"
                )
            by_type[type_code] = name
        for class_code in column.get("classes", []):
            if class_code in by_class:
                raise RulesError(f"classe {class_code} dans deux colonnes")
            by_class[class_code] = name
    cells: dict[tuple[str, str], str] = {}
    for row, spec in data["rows"].items():
        for column, symbol in spec["cells"].items():
            if column not in columns:
                raise RulesError(f"colonne inconnue {column} (ligne {row})")
            if symbol not in CELL_SYMBOLS:
                raise RulesError(f"cellule {row}×{column} : symbole {symbol!r} inconnu")
            if (row, column) in cells:
                raise RulesError(f"cellule en double {row}×{column}")
            cells[(row, column)] = symbol
    rows = frozenset(row for row, _ in cells)
    return Matrix(MappingProxyType(dict(columns)), MappingProxyType(cells), by_type, by_class, rows)


@dataclass(frozen=True)
class Rules:
    parameters: Mapping[str, Any]
    forbidden_kinds: frozenset[str]
    forbidden_purposes: frozenset[str]
    administrative_kinds: frozenset[str]
    reimbursement_classes: frozenset[str]
    personal_space_classes: frozenset[str]
    matrix: Matrix
    version: str  # short hash of the data and overrides, written into every trace

    def __getitem__(self, name: str) -> Any:
        return self.parameters[name]


def _read(name: str) -> bytes:
    return resources.files("parcours.policy").joinpath("data", name).read_bytes()


@cache
def _default() -> Rules:
    return _build({})


def _build(overrides: Mapping[str, Any]) -> Rules:
    raw_rules, raw_matrix = _read("rules.json"), _read("matrix.json")
    data = json.loads(raw_rules)
    parameters = dict(data["parameters"])
    for name, value in overrides.items():
        if name not in parameters:
            raise RulesError(f"paramètre de politique inconnu : {name}")
        if type(value) is not type(parameters[name]):
            raise RulesError(f"paramètre {name} : {type(parameters[name]).__name__} attendu")
        parameters[name] = value
    digest = hashlib.sha256(raw_rules + b"\0" + raw_matrix)
    digest.update(json.dumps(dict(overrides), sort_keys=True).encode())
    return Rules(
        parameters=MappingProxyType(parameters),
        forbidden_kinds=frozenset(data["forbidden_kinds"]),
        forbidden_purposes=frozenset(data["forbidden_purposes"]),
        administrative_kinds=frozenset(data["administrative_kinds"]),
        reimbursement_classes=frozenset(data["reimbursement_classes"]),
        personal_space_classes=frozenset(data["personal_space_classes"]),
        matrix=build_matrix(json.loads(raw_matrix)),
        version=digest.hexdigest()[:16],
    )


def load_rules(**overrides: Any) -> Rules:
    """The shipped rules, with named parameters of §5.4 overridden (tests, deployments)."""
    return _build(overrides) if overrides else _default()
