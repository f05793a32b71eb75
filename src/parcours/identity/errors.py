"""The one exception every identifier parser raises.

Identifiers reach the platform from people typing them (a secretary keying an INS, a PS
copying an RPPS from a card) and from bulk files (the RPPS and MSSanté extracts). In both cases
the caller needs two things from a failure: a *machine* code to count, filter or map to an HTTP
or FHIR OperationOutcome issue, and a *human* sentence, in French, precise enough that the person
at the desk can fix the typo without calling support. :class:`IdentifierError` carries both.
"""

from __future__ import annotations

from typing import Final

#: Reason codes, so callers can match on them without string literals scattered around.
REASON_TYPE: Final = "type"
REASON_EMPTY: Final = "empty"
REASON_LENGTH: Final = "length"
REASON_CHARSET: Final = "charset"
REASON_CHECK_DIGIT: Final = "check_digit"
REASON_KEY: Final = "key"
REASON_DEPARTMENT: Final = "department"
REASON_SEX: Final = "sex"
REASON_PREFIX: Final = "prefix"
REASON_OID: Final = "oid"

REASONS: Final[frozenset[str]] = frozenset(
    {
        REASON_TYPE,
        REASON_EMPTY,
        REASON_LENGTH,
        REASON_CHARSET,
        REASON_CHECK_DIGIT,
        REASON_KEY,
        REASON_DEPARTMENT,
        REASON_SEX,
        REASON_PREFIX,
        REASON_OID,
    }
)


class IdentifierError(ValueError):
    """An identifier failed validation.

    It subclasses :class:`ValueError` so that code which only knows "bad value" (pydantic
    validators, ``typer`` callbacks) still handles it, while code that cares can read:

    * ``identifier_type``: ``"INS"``, ``"RPPS"``, ``"ADELI"``, ``"IdNatPS"``, ``"FINESS"``,
      ``"SIRET"`` or ``"IdNatStruct"``;
    * ``value``: the input exactly as received (before space stripping), for logs and echo;
    * ``reason``: one of :data:`REASONS` (``"length"``, ``"charset"``, ``"check_digit"``,
      ``"key"``...), stable across releases;
    * ``message``: the French sentence, also what ``str(error)`` returns.
    """

    def __init__(self, identifier_type: str, value: object, reason: str, message: str) -> None:
        super().__init__(message)
        self.identifier_type = identifier_type
        self.value = value
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return (
            f"IdentifierError(identifier_type={self.identifier_type!r}, value={self.value!r}, "
            f"reason={self.reason!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[type[IdentifierError], tuple[str, object, str, str]]:
        # Exceptions with a custom __init__ do not pickle by default; errors cross process
        # boundaries (import workers), so keep them picklable.
        return (type(self), (self.identifier_type, self.value, self.reason, self.message))
