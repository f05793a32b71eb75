"""Shared building blocks: input normalisation, French error sentences, check-digit maths.

Kept private: the public surface is the value types. Every helper raises
:class:`~parcours.identity.errors.IdentifierError` with the same wording so that a user sees the
same kind of sentence whatever identifier they mistyped.
"""

from __future__ import annotations

from typing import Final

from parcours.identity.errors import (
    REASON_CHARSET,
    REASON_CHECK_DIGIT,
    REASON_DEPARTMENT,
    REASON_EMPTY,
    REASON_LENGTH,
    REASON_TYPE,
    IdentifierError,
)

DIGITS: Final = "0123456789"
CORSICA_DEPARTMENTS: Final = ("2A", "2B")


def normalize(identifier_type: str, text: object) -> str:
    """Drop every whitespace character (incl. the narrow no-break spaces French formatting
    puts between digit groups) and upper-case, so ``"2a 12 34"`` and ``"2A1234"`` are the same.

    Anything other than a string is refused with reason ``"type"`` rather than a ``TypeError``:
    importers feed cells that may be ``None`` and want a single exception type to catch.
    """
    if not isinstance(text, str):
        raise IdentifierError(
            identifier_type,
            text,
            REASON_TYPE,
            f"{identifier_type} invalide : une chaîne de caractères est attendue, "
            f"reçu {type(text).__name__}",
        )
    cleaned = "".join(text.split()).upper()
    if not cleaned:
        raise IdentifierError(
            identifier_type, text, REASON_EMPTY, f"{identifier_type} invalide : valeur vide"
        )
    return cleaned


def check_length(
    identifier_type: str, raw: object, value: str, expected: int, hint: str = ""
) -> None:
    """Refuse a value whose length differs from ``expected`` (after normalisation)."""
    if len(value) != expected:
        extra = f" ; {hint}" if hint else ""
        raise IdentifierError(
            identifier_type,
            raw,
            REASON_LENGTH,
            f"{identifier_type} invalide : {len(value)} caractère{'s' if len(value) > 1 else ''} "
            f"au lieu de {expected} (« {value} »){extra}",
        )


def charset_error(
    identifier_type: str, raw: object, value: str, position: int, allowed: str
) -> IdentifierError:
    """Build the error for a forbidden character at 0-based ``position`` (shown 1-based)."""
    return IdentifierError(
        identifier_type,
        raw,
        REASON_CHARSET,
        f"{identifier_type} invalide : caractère « {value[position]} » non autorisé en position "
        f"{position + 1} de « {value} » ({allowed})",
    )


def check_digits(identifier_type: str, raw: object, value: str) -> None:
    """Refuse anything but ASCII digits, pointing at the first offender."""
    for index, char in enumerate(value):
        if char not in DIGITS:
            raise charset_error(identifier_type, raw, value, index, "chiffres uniquement")


def check_department_prefix(identifier_type: str, raw: object, value: str) -> None:
    """Validate the two-character department that opens ADELI and FINESS numbers.

    Allowed: two digits, or ``2A``/``2B`` for Corsica. ``20`` is refused with reason
    ``"department"``: the official geographic code writes Corsica 2A/2B, so a ``20`` prefix is
    a typo, and because 20 is the stand-in used for the Corsican key (:func:`corsica_as_digits`)
    refusing it is what makes the typos ``2A``→``20`` and ``2B``→``20`` detectable. Digits are
    required everywhere after the department.
    """
    first, second = value[0], value[1]
    if first not in DIGITS:
        raise charset_error(
            identifier_type, raw, value, 0, "le département commence par un chiffre"
        )
    if second in "AB":
        if first != "2":
            raise charset_error(
                identifier_type,
                raw,
                value,
                1,
                "une lettre n'est admise qu'après 2, pour les départements corses 2A et 2B",
            )
    elif second not in DIGITS:
        raise charset_error(
            identifier_type, raw, value, 1, "chiffre, ou A/B pour les départements 2A et 2B"
        )
    for index in range(2, len(value)):
        if value[index] not in DIGITS:
            raise charset_error(identifier_type, raw, value, index, "chiffres uniquement")
    if value[:2] == "20":
        raise IdentifierError(
            identifier_type,
            raw,
            REASON_DEPARTMENT,
            f"{identifier_type} invalide : le département 20 n'existe plus depuis 1976 "
            f"(« {value} ») ; la Corse s'écrit 2A ou 2B",
        )


def corsica_as_digits(value: str) -> str:
    """Replace a leading ``2A``/``2B`` by ``20`` for the Luhn computation of ADELI and FINESS.

    [assumption] Neither the ANS nor the FINESS documentation we could reach states how the key
    of a Corsican ADELI/FINESS number is computed (for the NIR, INSEE substitutes 19/18; FINESS
    and ADELI are Luhn-keyed, verified on real numbers, but no Corsican example was found). We
    substitute ``20``, the single number Corsica had as a department, for both halves: it keeps
    the key a plain Luhn over digits. Consequence, tested and documented: swapping A and B in a
    Corsican number is **not** detected by the key (a one-digit Luhn key cannot tell eleven
    second characters 2A, 2B, 21..29 apart anyway: some pair must collide).
    Change this one function if an authoritative rule turns up.
    """
    if value[:2] in CORSICA_DEPARTMENTS:
        return "20" + value[2:]
    return value


def luhn_sum(digits: str) -> int:
    """Luhn sum of a digit string that already ends with its check digit (valid iff ≡ 0 mod 10).

    From the right, every second digit is doubled and 9 subtracted when the double exceeds 9.
    Any single-digit substitution changes the sum by a non-multiple of 10, which is why Luhn
    detects every one-character typo on an all-digit identifier.
    """
    total = 0
    for offset, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if offset % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total


def luhn_check_digit(payload: str) -> str:
    """The digit to append to ``payload`` so that the whole is Luhn-valid."""
    return str((10 - luhn_sum(payload + "0") % 10) % 10)


def check_luhn(identifier_type: str, raw: object, value: str, digits: str | None = None) -> None:
    """Refuse ``value`` if its last digit is not the Luhn key of what precedes it.

    ``digits`` is the all-digit form to compute on when it differs from ``value`` (Corsica).
    """
    number = value if digits is None else digits
    expected = luhn_check_digit(number[:-1])
    if number[-1] != expected:
        raise IdentifierError(
            identifier_type,
            raw,
            REASON_CHECK_DIGIT,
            f"{identifier_type} invalide : le chiffre de contrôle {value[-1]} de « {value} » "
            f"est faux (chiffre attendu {expected}, clé de Luhn sur {value[:-1]})",
        )
