"""Structure identifiers: FINESS, SIRET and the national structure identifier (IDNST).

Structures are who a PS acts *for* (access rules, MSSanté ORG mailboxes, liste blanche OU
values), so they are parsed as strictly as people.

Check digits, and how they were verified:

* **FINESS**: 9 characters = department (2, ``2A``/``2B`` for Corsica) + 6 digits + a Luhn key
  over the first 8. No official text found; Luhn holds on every real FINESS we could check:
  ``590064036`` (ANS Annuaire example), ``750712184`` (AP-HP), ``350005179`` (CHU de Rennes),
  ``010003820``/``010003812`` (data.gouv.fr FINESS extract examples).
  [assumption] Corsica: see :func:`parcours.identity._checks.corsica_as_digits`.
* **SIRET**: 14 digits (SIREN 9 + NIC 5), Luhn over all 14 (INSEE; ``73282932000074`` is the
  textbook example). Exception: establishments of La Poste (SIREN ``356000000``) are numbered
  so that the *sum of the digits* is a multiple of 5, except the head office
  ``35600000000048`` which is Luhn-valid (and whose digit sum, 26, is not).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from parcours.identity._checks import (
    DIGITS,
    check_department_prefix,
    check_digits,
    check_length,
    check_luhn,
    corsica_as_digits,
    luhn_check_digit,
    normalize,
)
from parcours.identity.errors import (
    REASON_CHARSET,
    REASON_CHECK_DIGIT,
    REASON_LENGTH,
    REASON_PREFIX,
    IdentifierError,
)

IDNST_OID: Final = "1.2.250.1.71.4.2.2"

LA_POSTE_SIREN: Final = "356000000"
LA_POSTE_HEAD_OFFICE_SIRET: Final = "35600000000048"

_FINESS: Final = "FINESS"
_SIRET: Final = "SIRET"
_IDNST: Final = "IdNatStruct"
_OPAQUE_CHARS: Final = frozenset(DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ/-")


def _require_str(identifier_type: str, value: object) -> None:
    if not isinstance(value, str):
        normalize(identifier_type, value)  # raises the "type" error


def _validate_finess(raw: object, value: str) -> None:
    check_length(_FINESS, raw, value, 9)
    check_department_prefix(_FINESS, raw, value)
    check_luhn(_FINESS, raw, value, corsica_as_digits(value))


def _validate_siret(raw: object, value: str) -> None:
    check_length(_SIRET, raw, value, 14)
    check_digits(_SIRET, raw, value)
    if value.startswith(LA_POSTE_SIREN) and value != LA_POSTE_HEAD_OFFICE_SIRET:
        total = sum(ord(c) - 48 for c in value)
        if total % 5:
            raise IdentifierError(
                _SIRET,
                raw,
                REASON_CHECK_DIGIT,
                f"{_SIRET} invalide : « {value} » est un établissement de La Poste (SIREN "
                f"{LA_POSTE_SIREN}) dont la somme des chiffres ({total}) devrait être un "
                f"multiple de 5",
            )
        return
    check_luhn(_SIRET, raw, value)


@dataclass(frozen=True, slots=True)
class FINESS:
    """A FINESS number (legal entity "EJ" or establishment "ET"; the format is the same)."""

    value: str

    TYPE: ClassVar[str] = _FINESS

    def __post_init__(self) -> None:
        _require_str(_FINESS, self.value)
        _validate_finess(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> FINESS:
        """Parse a FINESS (spaces, as in the ``35 000 517 9`` display form, tolerated)."""
        value = normalize(_FINESS, text)
        _validate_finess(text, value)
        return cls(value)

    @classmethod
    def generate(cls, rng: random.Random, department: str = "35") -> FINESS:
        """A synthetic FINESS in ``department``: department + 6 random digits + Luhn key."""
        payload = department.upper() + "".join(rng.choice(DIGITS) for _ in range(6))
        if len(payload) != 8:
            raise ValueError(f"département {department!r} : 2 caractères attendus")
        return cls(payload + luhn_check_digit(corsica_as_digits(payload)))

    @property
    def department(self) -> str:
        return self.value[:2]

    @property
    def idnat(self) -> str:
        """The IDNST form, ``1`` + FINESS."""
        return "1" + self.value


@dataclass(frozen=True, slots=True)
class SIRET:
    """A SIRET number (SIREN of the company + NIC of the establishment)."""

    value: str

    TYPE: ClassVar[str] = _SIRET

    def __post_init__(self) -> None:
        _require_str(_SIRET, self.value)
        _validate_siret(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> SIRET:
        """Parse a SIRET (spaces, as in ``732 829 320 00074``, tolerated)."""
        value = normalize(_SIRET, text)
        _validate_siret(text, value)
        return cls(value)

    @classmethod
    def generate(cls, rng: random.Random, siren: str | None = None) -> SIRET:
        """A synthetic SIRET: a random Luhn-valid SIREN (or ``siren`` for a further
        establishment of the same company), a small NIC order and the Luhn key.

        Random SIRENs within one digit of La Poste's are redrawn: there a one-digit typo would
        switch to La Poste's weaker rule and could go unnoticed, which would make synthetic data
        a worse test bed than real data.
        """
        if siren is None:
            while True:
                head = str(rng.randint(1, 9)) + "".join(rng.choice(DIGITS) for _ in range(7))
                siren = head + luhn_check_digit(head)
                if sum(a != b for a, b in zip(siren, LA_POSTE_SIREN, strict=True)) > 1:
                    break
        elif len(siren) != 9 or not siren.isdigit():
            raise ValueError(f"SIREN {siren!r} : 9 chiffres attendus")
        payload = siren + f"{rng.randint(1, 299):04d}"
        return cls(payload + luhn_check_digit(payload))

    @property
    def siren(self) -> str:
        """The company part (9 digits)."""
        return self.value[:9]

    @property
    def nic(self) -> str:
        """The establishment part (5 digits, key included)."""
        return self.value[9:]

    @property
    def idnat(self) -> str:
        """The IDNST form, ``3`` + SIRET."""
        return "3" + self.value


IdNatStructKind = Literal["FINESS", "SIRET", "OTHER"]


@dataclass(frozen=True, slots=True)
class IdNatStruct:
    """The national structure identifier (system ``urn:oid:1.2.250.1.71.4.2.2``).

    ``1`` + FINESS and ``3`` + SIRET are validated fully (these two are confirmed by the
    liste blanche OU values). Other type digits exist (``2`` + SIREN, ``4`` + RPPS-rang for
    liberal practices, ``0``/``5``... for cabinets) but their payload formats were not
    verified, so they are accepted as **opaque** with ``kind == "OTHER"``: a type digit followed
    by at least one character among digits, upper-case letters, ``/`` and ``-``. Refusing them
    would drop real practices from imports; trusting their content would be unjustified, so no
    view (``.finess``/``.siret``) is offered for them.
    """

    value: str

    TYPE: ClassVar[str] = _IDNST

    def __post_init__(self) -> None:
        _require_str(_IDNST, self.value)
        _validate_idnst(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> IdNatStruct:
        value = normalize(_IDNST, text)
        _validate_idnst(text, value)
        return cls(value)

    @classmethod
    def from_finess(cls, finess: FINESS) -> IdNatStruct:
        return cls("1" + finess.value)

    @classmethod
    def from_siret(cls, siret: SIRET) -> IdNatStruct:
        return cls("3" + siret.value)

    @property
    def kind(self) -> IdNatStructKind:
        prefix = self.value[0]
        return "FINESS" if prefix == "1" else "SIRET" if prefix == "3" else "OTHER"

    @property
    def finess(self) -> FINESS | None:
        return FINESS(self.value[1:]) if self.value[0] == "1" else None

    @property
    def siret(self) -> SIRET | None:
        return SIRET(self.value[1:]) if self.value[0] == "3" else None

    @property
    def system(self) -> str:
        """FHIR ``Identifier.system``: ``urn:oid:1.2.250.1.71.4.2.2``."""
        return "urn:oid:" + IDNST_OID


def _validate_idnst(raw: object, value: str) -> None:
    prefix, inner = value[0], value[1:]
    if prefix not in DIGITS:
        raise IdentifierError(
            _IDNST,
            raw,
            REASON_PREFIX,
            f"{_IDNST} invalide : le premier caractère « {prefix} » de « {value} » doit être le "
            f"chiffre du type d'identifiant (1 FINESS, 3 SIRET...)",
        )
    if prefix in "13":
        validate, expected, kind = (
            (_validate_finess, 10, "FINESS") if prefix == "1" else (_validate_siret, 15, "SIRET")
        )
        check_length(_IDNST, raw, value, expected, hint=f"{prefix} + {kind}")
        try:
            validate(raw, inner)
        except IdentifierError as error:
            raise IdentifierError(
                _IDNST, raw, error.reason, f"{_IDNST} invalide ({prefix} + {error.message})"
            ) from error
        return
    if not inner:
        raise IdentifierError(
            _IDNST,
            raw,
            REASON_LENGTH,
            f"{_IDNST} invalide : « {value} » n'a que le chiffre de type, le numéro manque",
        )
    for index, char in enumerate(inner, start=1):
        if char not in _OPAQUE_CHARS:
            raise IdentifierError(
                _IDNST,
                raw,
                REASON_CHARSET,
                f"{_IDNST} invalide : caractère « {char} » non autorisé en position "
                f"{index + 1} de « {value} » (chiffres, lettres, / et -)",
            )
