"""Health-professional identifiers: RPPS, ADELI and the national PS identifier (IDNPS).

Every access decision (DMP, MSSanté, Annuaire) is taken for an IDNPS, and the RPPS/ADELI
extracts are imported by the hundreds of thousands: a malformed number must be refused with a
reason the importer can count and a sentence the PS can act on.

Check digits, and how they were verified:

* **RPPS**: 11 digits, the last a Luhn key over the whole. Checked on real numbers, e.g. the
  IDNPS ``899700218896`` in the ANS DMP examples (RPPS ``99700218896``) and ``10107350778`` in
  ansforge/annuaire-sante-fhir-documentation issue #317.
* **ADELI**: 9 characters = department (2, ``2A``/``2B`` for Corsica) + profession (2, the
  TRE_G15 code: 60 infirmier, 91 orthophoniste...) + order number (4) + check digit (1). No
  official statement of the key algorithm was found; Luhn over the 9 digits holds on the real
  numbers ``879101558`` (orthophoniste, 87) and ``349102665`` (orthophoniste, 34), quoted in
  ansforge/annuaire-sante-fhir-documentation issues #164 and #174, so Luhn is what we check.
  [assumption] Corsica: see :func:`parcours.identity._checks.corsica_as_digits`.
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
from parcours.identity.errors import REASON_PREFIX, IdentifierError

IDNPS_OID: Final = "1.2.250.1.71.4.2.1"

_RPPS: Final = "RPPS"
_ADELI: Final = "ADELI"
_IDNPS: Final = "IdNatPS"


def _validate_rpps(raw: object, value: str) -> None:
    check_length(_RPPS, raw, value, 11)
    check_digits(_RPPS, raw, value)
    check_luhn(_RPPS, raw, value)


def _validate_adeli(raw: object, value: str) -> None:
    check_length(_ADELI, raw, value, 9)
    check_department_prefix(_ADELI, raw, value)
    check_luhn(_ADELI, raw, value, corsica_as_digits(value))


def _require_str(identifier_type: str, value: object) -> None:
    if not isinstance(value, str):
        normalize(identifier_type, value)  # raises the "type" error


@dataclass(frozen=True, slots=True)
class RPPS:
    """An RPPS number: 11 digits, Luhn-keyed. ``str()`` and ``.value`` give the 11 digits."""

    value: str

    TYPE: ClassVar[str] = _RPPS

    def __post_init__(self) -> None:
        _require_str(_RPPS, self.value)
        _validate_rpps(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> RPPS:
        """Parse a typed or imported RPPS number (spaces tolerated)."""
        value = normalize(_RPPS, text)
        _validate_rpps(text, value)
        return cls(value)

    @classmethod
    def generate(cls, rng: random.Random) -> RPPS:
        """A synthetic RPPS: ``10`` + 8 random digits + Luhn key.

        Real RPPS numbers start with 1 (``10…``); we stay in that range so synthetic numbers look
        like the real ones in screens and files. Uniqueness is the caller's job (the space is
        10^8, collisions are rare but possible).
        """
        payload = "10" + "".join(rng.choice(DIGITS) for _ in range(8))
        return cls(payload + luhn_check_digit(payload))

    @property
    def idnat(self) -> str:
        """The IDNPS form, ``8`` + RPPS."""
        return "8" + self.value


@dataclass(frozen=True, slots=True)
class ADELI:
    """An ADELI number: department (2) + profession (2) + order (4) + Luhn key (1)."""

    value: str

    TYPE: ClassVar[str] = _ADELI

    def __post_init__(self) -> None:
        _require_str(_ADELI, self.value)
        _validate_adeli(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> ADELI:
        """Parse a typed or imported ADELI number (spaces and lower-case 2a/2b tolerated)."""
        value = normalize(_ADELI, text)
        _validate_adeli(text, value)
        return cls(value)

    @classmethod
    def generate(cls, rng: random.Random, department: str = "35", profession: str = "60") -> ADELI:
        """A synthetic ADELI for ``department`` and ``profession`` (TRE_G15 code, default 60
        infirmier) with a random 4-digit order number."""
        department = department.upper()
        if len(department) != 2 or len(profession) != 2 or not profession.isdigit():
            raise ValueError("département et profession : 2 caractères chacun")
        payload = department + profession + "".join(rng.choice(DIGITS) for _ in range(4))
        return cls(payload + luhn_check_digit(corsica_as_digits(payload)))

    @property
    def department(self) -> str:
        return self.value[:2]

    @property
    def profession(self) -> str:
        """The TRE_G15 profession code embedded in the number."""
        return self.value[2:4]

    @property
    def idnat(self) -> str:
        """The IDNPS form, ``0`` + ADELI."""
        return "0" + self.value


IdNatPSKind = Literal["RPPS", "ADELI"]


@dataclass(frozen=True, slots=True)
class IdNatPS:
    """The national PS identifier: ``8`` + RPPS (12 chars) or ``0`` + ADELI (10 chars).

    This is the identifier tokens, CPS certificates and DMP authors carry
    (system ``urn:oid:1.2.250.1.71.4.2.1``). Other type digits exist for staff of establishments
    (``3`` + FINESS + "/" + local id) but are not professionals of the RPPS/ADELI registers and
    are refused here (reason ``"prefix"``).
    """

    value: str

    TYPE: ClassVar[str] = _IDNPS

    def __post_init__(self) -> None:
        _require_str(_IDNPS, self.value)
        _split_idnat(self.value, self.value)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> IdNatPS:
        """Parse an IDNPS (spaces tolerated). A bare RPPS/ADELI is refused: the type digit is
        part of the identifier and guessing it would hide data errors upstream."""
        value = normalize(_IDNPS, text)
        _split_idnat(text, value)
        return cls(value)

    @classmethod
    def from_rpps(cls, rpps: RPPS) -> IdNatPS:
        return cls("8" + rpps.value)

    @classmethod
    def from_adeli(cls, adeli: ADELI) -> IdNatPS:
        return cls("0" + adeli.value)

    @property
    def kind(self) -> IdNatPSKind:
        return "RPPS" if self.value[0] == "8" else "ADELI"

    @property
    def rpps(self) -> RPPS | None:
        return RPPS(self.value[1:]) if self.value[0] == "8" else None

    @property
    def adeli(self) -> ADELI | None:
        return ADELI(self.value[1:]) if self.value[0] == "0" else None

    @property
    def system(self) -> str:
        """FHIR ``Identifier.system``: ``urn:oid:1.2.250.1.71.4.2.1``."""
        return "urn:oid:" + IDNPS_OID


def _split_idnat(raw: object, value: str) -> None:
    """Validate an IDNPS; the inner number's errors are re-raised as IdNatPS errors so the
    caller sees which identifier they submitted, with the inner reason kept."""
    prefix, inner = value[0], value[1:]
    if prefix == "8":
        validate, expected = _validate_rpps, 12
    elif prefix == "0":
        validate, expected = _validate_adeli, 10
    else:
        raise IdentifierError(
            _IDNPS,
            raw,
            REASON_PREFIX,
            f"{_IDNPS} invalide : le premier chiffre « {prefix} » de « {value} » doit être 8 "
            f"(RPPS) ou 0 (ADELI)",
        )
    kind = "RPPS" if prefix == "8" else "ADELI"
    check_length(_IDNPS, raw, value, expected, hint=f"{prefix} + {kind}")
    try:
        validate(raw, inner)
    except IdentifierError as error:
        raise IdentifierError(
            _IDNPS, raw, error.reason, f"{_IDNPS} invalide ({prefix} + {error.message})"
        ) from error
