"""INS: the patient's national health identifier (matricule NIR or NIA + OID).

The INS is the key of every patient record the platform touches (DMP lookups use
``urn:oid:1.2.250.1.213.1.4.8|<INS>``). A wrong digit files a document in someone else's record,
so the matricule's 2-digit key is always checked, and the OID travels with the number: the same
15 characters mean a real person under ``.8`` and a test patient under ``.10``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Final

from parcours.identity._checks import DIGITS, charset_error, check_length, normalize
from parcours.identity.errors import REASON_KEY, REASON_OID, REASON_SEX, IdentifierError

INS_OID_NIR: Final = "1.2.250.1.213.1.4.8"
INS_OID_NIA: Final = "1.2.250.1.213.1.4.9"
INS_OID_NIR_TEST: Final = "1.2.250.1.213.1.4.10"
INS_OID_NIR_DEMO: Final = "1.2.250.1.213.1.4.11"

#: OID -> short French description, for messages and UIs.
INS_OIDS: Final[dict[str, str]] = {
    INS_OID_NIR: "INS-NIR (production)",
    INS_OID_NIA: "INS-NIA (identifiant d'attente)",
    INS_OID_NIR_TEST: "INS-NIR de test",
    INS_OID_NIR_DEMO: "INS-NIR de démonstration",
}

_TYPE: Final = "INS"
#: Substitution INSEE applies to Corsican NIRs *for the key only*: the number is computed with
#: 2A read as 19 and 2B as 18 (i.e. "20" minus 1 or 2 in the department field, which weighs
#: 10^6 in the 13-digit number: 2A → n − 1,000,000, 2B → n − 2,000,000).
_CORSICA_KEY_DIGITS: Final[dict[str, str]] = {"2A": "19", "2B": "18"}
_OVERSEAS_PREFIXES: Final = ("97", "98")


def _nir_number(nir: str) -> int:
    """The integer the key is computed on (Corsican letters substituted)."""
    department = nir[5:7]
    if department in _CORSICA_KEY_DIGITS:
        nir = nir[:5] + _CORSICA_KEY_DIGITS[department] + nir[7:]
    return int(nir)


def _check_nir_chars(raw: object, nir: str, shown: str) -> None:
    """Charset of the 13-character matricule (``shown`` is the string positions refer to)."""
    for index, char in enumerate(nir):
        if index == 6 and char in "AB":
            if nir[5] != "2":
                raise charset_error(
                    _TYPE,
                    raw,
                    shown,
                    index,
                    "une lettre n'est admise qu'en 7e position après 2, pour les départements "
                    "corses 2A et 2B",
                )
            continue
        if char not in DIGITS:
            allowed = "chiffre, ou A/B pour les départements 2A et 2B" if index == 6 else "chiffres"
            raise charset_error(_TYPE, raw, shown, index, allowed)
    if nir[0] in "09":
        raise IdentifierError(
            _TYPE,
            raw,
            REASON_SEX,
            f"{_TYPE} invalide : le premier chiffre (sexe) doit être compris entre 1 et 8, "
            f"reçu {nir[0]} dans « {shown} »",
        )


def _check_oid(raw: object, oid: object) -> None:
    if oid not in INS_OIDS:
        known = ", ".join(INS_OIDS)
        raise IdentifierError(
            _TYPE,
            raw,
            REASON_OID,
            f"{_TYPE} invalide : OID « {oid} » inconnu (attendu l'un de : {known})",
        )


def _validate(raw: object, value: str) -> None:
    check_length(
        _TYPE,
        raw,
        value,
        15,
        hint="un INS compte 13 caractères et une clé de 2 chiffres"
        + (" : la clé manque-t-elle ? (INS.with_key la calcule)" if len(value) == 13 else ""),
    )
    _check_nir_chars(raw, value[:13], value)
    key = value[13:]
    for index in (13, 14):
        if value[index] not in DIGITS:
            raise charset_error(_TYPE, raw, value, index, "la clé est faite de 2 chiffres")
    expected = INS.compute_key(value[:13])
    if key != expected:
        raise IdentifierError(
            _TYPE,
            raw,
            REASON_KEY,
            f"{_TYPE} invalide : la clé {key} ne correspond pas au NIR {value[:13]} "
            f"(clé attendue {expected})",
        )


@dataclass(frozen=True, slots=True)
class INS:
    """An INS matricule (NIR or NIA, 13 characters + 2-digit key) with the OID that qualifies it.

    The first character is accepted from 1 to 8, not only 1/2: NIA and temporary numbers use
    3/4 and 7/8, and refusing them at the door would block patients whose identity the INSi
    service itself returned. 0 and 9 never occur and are refused (reason ``"sex"``).

    The month field is *not* range-checked: the NIR legitimately carries 20–42 or 50–99 for
    people registered with an unknown or incomplete birth date.

    Construct with :meth:`parse` (lenient on spaces and case) or :meth:`with_key`; the
    constructor itself insists on the canonical form and validates it too, so an invalid
    ``INS`` object cannot exist.
    """

    value: str
    oid: str = INS_OID_NIR

    TYPE: ClassVar[str] = _TYPE

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            normalize(_TYPE, self.value)  # raises the "type" error
        _validate(self.value, self.value)
        _check_oid(self.value, self.oid)

    def __str__(self) -> str:
        return self.value

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, oid: str = INS_OID_NIR) -> INS:
        """Parse a typed or imported INS (spaces and lower-case ``2a``/``2b`` tolerated)."""
        value = normalize(_TYPE, text)
        _validate(text, value)
        _check_oid(text, oid)
        return cls(value, oid)

    @staticmethod
    def compute_key(nir: str) -> str:
        """The 2-digit key of a 13-character matricule: ``97 − (n mod 97)``, zero-padded.

        Corsican matricules are keyed with 2A read as 19 and 2B as 18 (INSEE rule). The result
        ranges over 01..97, never 00.
        """
        return f"{97 - _nir_number(nir) % 97:02d}"

    @classmethod
    def with_key(cls, nir: str, oid: str = INS_OID_NIR) -> INS:
        """Build an INS from a 13-character matricule by computing its key."""
        value = normalize(_TYPE, nir)
        check_length(_TYPE, nir, value, 13, hint="le matricule sans clé compte 13 caractères")
        _check_nir_chars(nir, value, value)
        return cls.parse(value + cls.compute_key(value), oid=oid)

    @classmethod
    def generate(
        cls,
        rng: random.Random,
        *,
        sex: int | None = None,
        birth_year: int | None = None,
        department: str = "35",
        oid: str = INS_OID_NIR,
    ) -> INS:
        """A synthetic, well-formed INS drawn from ``rng`` (deterministic for a given seed).

        ``birth_year`` is a full year (1930–2023 drawn when omitted); only its last two digits
        are encoded. ``department`` is a 2-character code (``"35"``, ``"2A"``, ``"99"`` for born
        abroad) or a 3-digit overseas code (``"974"``), in which case the commune has 2 digits.
        The default OID is production NIR, matching :meth:`parse`; pass ``INS_OID_NIR_TEST`` or
        ``INS_OID_NIR_DEMO`` to mark the patient as synthetic on the wire.
        """
        chosen_sex = rng.choice((1, 2)) if sex is None else sex
        if chosen_sex not in range(1, 9):
            raise ValueError(f"sexe {chosen_sex!r} hors de 1..8")
        year = rng.randint(1930, 2023) if birth_year is None else birth_year
        month = rng.randint(1, 12)
        department = department.upper()
        if len(department) == 3:
            commune = f"{rng.randint(1, 99):02d}"
        elif len(department) == 2:
            commune = f"{rng.randint(1, 399):03d}"
        else:
            raise ValueError(f"département {department!r} : 2 ou 3 caractères attendus")
        order = f"{rng.randint(1, 999):03d}"
        nir = f"{chosen_sex}{year % 100:02d}{month:02d}{department}{commune}{order}"
        return cls.with_key(nir, oid=oid)

    # -- views --------------------------------------------------------------------------------

    @property
    def nir(self) -> str:
        """The 13-character matricule without its key."""
        return self.value[:13]

    @property
    def key(self) -> str:
        """The 2-digit key, as written (``"07"``)."""
        return self.value[13:]

    @property
    def sex(self) -> int:
        """First digit: 1 man, 2 woman; 3/4 and 7/8 for NIA and temporary numbers."""
        return int(self.value[0])

    @property
    def birth_year(self) -> int:
        """Last two digits of the birth year (0–99): the NIR does not encode the century."""
        return int(self.value[1:3])

    @property
    def birth_month(self) -> int:
        """Birth month, 1–12 normally; 20–42 or 50–99 when the date was unknown."""
        return int(self.value[3:5])

    @property
    def department(self) -> str:
        """Birth department: 2 characters, or 3 digits for overseas (97x/98x); 99 = abroad."""
        prefix = self.value[5:7]
        return self.value[5:8] if prefix in _OVERSEAS_PREFIXES else prefix

    @property
    def system(self) -> str:
        """FHIR ``Identifier.system`` for this INS: ``urn:oid:`` + its OID."""
        return "urn:oid:" + self.oid

    @property
    def is_test(self) -> bool:
        """True for the test and demonstration OIDs (.10 and .11)."""
        return self.oid in (INS_OID_NIR_TEST, INS_OID_NIR_DEMO)

    @property
    def is_nia(self) -> bool:
        """True when the matricule is a NIA (temporary number), per its OID."""
        return self.oid == INS_OID_NIA

    @property
    def formatted(self) -> str:
        """Display form ``1 23 45 67 890 123 11`` (the grouping printed on the carte Vitale)."""
        v = self.value
        return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"
