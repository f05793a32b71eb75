"""MSSanté-specific message headers (X-MSS-*) and the RFC 5322 header checks an operator makes.

Référentiel socle MSSanté #2 (clients de messagerie, v1.0.x, §3.8 and §3.4.2.3; reference
``shared/reference/mssante.md`` §4.2) asks the *client* (the practice software, LPS) to set:

* ``X-MSS-CODECDA`` (ECO.2.4.1): the CDA header ``code/@code`` of every CDA document carried in
  an ``IHE_XDM.ZIP`` attachment, absent when there is none;
* ``X-MSS-INS`` (ECO.2.4.2): ``O`` when the CDA carries a qualified INS, ``N`` otherwise;
* ``X-MSS-NIL`` (ECO.2.4.3): the software's reference number from the ANS convergence portal;
* ``X-MSS-MES: FIN`` (ECO.2.2.8): on a message to a patient mailbox, blocks the patient's replies
  (the same as the subject ``[FIN]``, Mon espace santé FAQ).

The operator does not own these headers: it must deliver messages without them (webmail,
generic clients: reference §7.1 IN-15) and must not alter them (IN-16). So, by default, a
malformed X-MSS value is reported as a *warning* (accept, count it for the usage indicators);
``strict_mss=True`` turns those into errors for a submission port whose clients are LPS the
operator has validated. RFC 5322 violations that make a message ambiguous (no From or Date,
two From headers) are errors whatever the mode: a duplicated From is a known way to show one
sender to the user and another to the filters.

Open point (reference §10.6): Ref#2 does not say how several CDA codes are separated in
``X-MSS-CODECDA``. Third-party notes show a comma (``34112-3,PRESC-BIO``); that is what
:func:`format_codecda` writes and :func:`parse_codecda` reads. A semicolon or blanks are read
too, with a warning, so a different choice by the ANS would not make us refuse mail.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Final, Literal

HEADER_CODECDA: Final = "X-MSS-CODECDA"
HEADER_INS: Final = "X-MSS-INS"
HEADER_NIL: Final = "X-MSS-NIL"
HEADER_MES: Final = "X-MSS-MES"
MSS_HEADERS: Final = (HEADER_CODECDA, HEADER_INS, HEADER_NIL, HEADER_MES)

INS_QUALIFIED: Final = "O"
INS_NOT_QUALIFIED: Final = "N"
MES_FIN: Final = "FIN"
#: Subject that closes a patient conversation: exactly these five characters (ANS FAQ).
FIN_SUBJECT: Final = "[FIN]"
#: The IHE XDM attachment name (IHE ITI TF-2b §3.32, "ZIP over e-mail" option); compared
#: case-insensitively because the CI-SIS examples themselves write ``IHE_XDM.zip``.
XDM_ATTACHMENT_NAME: Final = "IHE_XDM.ZIP"

#: The separator written between several CDA codes (open point, see the module docstring).
CODECDA_SEPARATOR: Final = ","

Severity = Literal["error", "warning"]
SEVERITY_ERROR: Final = "error"
SEVERITY_WARNING: Final = "warning"

#: RFC 3463 §3.7: X.6.0 "Other or undefined media error", the status for a refused content.
STATUS_MEDIA_ERROR: Final = "5.6.0"
#: RFC 5321 §4.2.3: 554 "Transaction failed", the reply to DATA when the content is refused.
REPLY_TRANSACTION_FAILED: Final = 554

# A CDA document type code: a LOINC code (``11488-4``) or a TRE_A05 code (``PRESC-BIO``,
# ``CERT_DECL``, ``EXPPAT_1``): letters, digits, dot, dash and underscore.
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The ANS product reference (e.g. ``DEV935997``); its exact format is not published, so only
# what could break a header or a log line is refused.
_NIL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")

#: RFC 5322 §3.6 (table): fields that may appear at most once in a message.
SINGLE_FIELDS: Final = (
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Subject",
)

_TYPOGRAPHY: Final = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u00a0": " ",
        "\u202f": " ",
        "\u0153": "oe",
        "\u00a7": "par. ",
        "\u0152": "OE",
        "\u00e6": "ae",
        "\u00c6": "AE",
    }
)


def ascii_fold(text: str) -> str:
    """``text`` with accents and typographic signs reduced to ASCII (``é`` → ``e``, ``’`` → ``'``).

    SMTP reply texts (RFC 5321 §4.2, without SMTPUTF8) and the fields of a
    message/delivery-status or message/disposition-notification part (RFC 3464 §2.1.1, RFC 8098
    §3.1) are US-ASCII, while our messages are French. Whatever cannot be reduced becomes ``?``.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" else "?" for c in kept)


class HeaderValueError(ValueError):
    """An X-MSS header value that does not follow Ref#2; ``code`` is stable, ``message`` French."""

    def __init__(self, header: str, code: str, message: str) -> None:
        super().__init__(message)
        self.header = header
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[HeaderValueError], tuple[str, str, str]]:
        return (type(self), (self.header, self.code, self.message))


# -- values ------------------------------------------------------------------------------------


def parse_codecda(value: str) -> tuple[str, ...]:
    """The CDA type codes of an ``X-MSS-CODECDA`` value, in order.

    Commas are the separator we write; semicolons and blanks are accepted as well (the separator
    is an open point of Ref#2). Raises :class:`HeaderValueError` for an empty value or a code
    with characters no LOINC or TRE_A05 code has.
    """
    tokens = [t for t in re.split(r"[,;\s]+", value.strip()) if t]
    if not tokens:
        raise HeaderValueError(
            HEADER_CODECDA, "empty", f"{HEADER_CODECDA} est vide : au moins un code CDA attendu"
        )
    for token in tokens:
        if not _CODE.match(token):
            raise HeaderValueError(
                HEADER_CODECDA,
                "invalid_code",
                f"{HEADER_CODECDA} : « {token} » n'est pas un code de type de document CDA "
                "(code LOINC ou TRE_A05 attendu, ex. 11488-4 ou PRESC-BIO)",
            )
    return tuple(tokens)


def format_codecda(codes: Iterable[str]) -> str:
    """The ``X-MSS-CODECDA`` value for ``codes`` (duplicates dropped, order kept)."""
    unique = list(dict.fromkeys(c.strip() for c in codes if c.strip()))
    value = CODECDA_SEPARATOR.join(unique)
    parse_codecda(value)  # refuses what a receiver could not read back
    return value


def parse_ins_flag(value: str) -> bool:
    """``True`` for ``X-MSS-INS: O`` (qualified INS present), ``False`` for ``N``; else raises."""
    flag = value.strip()
    if flag == INS_QUALIFIED:
        return True
    if flag == INS_NOT_QUALIFIED:
        return False
    raise HeaderValueError(
        HEADER_INS,
        "invalid_value",
        f"{HEADER_INS} doit valoir « O » (INS qualifié présent) ou « N », reçu « {flag} »",
    )


def parse_nil(value: str) -> str:
    """The software reference of ``X-MSS-NIL`` (e.g. ``DEV935997``); raises if unusable."""
    reference = value.strip()
    if not _NIL.match(reference):
        raise HeaderValueError(
            HEADER_NIL,
            "invalid_value",
            f"{HEADER_NIL} : « {reference} » n'est pas une référence de logiciel "
            "(lettres, chiffres, . _ - /, 64 caractères au plus)",
        )
    return reference


def is_mes_fin(value: str) -> bool:
    """Whether an ``X-MSS-MES`` value asks to close the patient conversation.

    Case is ignored on purpose: a professional who wrote ``Fin`` meant to block the replies,
    and honouring it is the privacy-safe reading.
    """
    return value.strip().upper() == MES_FIN


def is_fin_subject(subject: str | None) -> bool:
    """Whether a (decoded) subject is the ``[FIN]`` closing subject: exactly those 5 characters.

    Only the blanks around the value are ignored (the space after ``Subject:`` is a separator,
    RFC 5322 §2.2); ``[fin]`` or ``[FIN] merci`` do not close the conversation.
    """
    return subject is not None and subject.strip() == FIN_SUBJECT


# -- reading a message -------------------------------------------------------------------------


def header_values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as received, unfolded (RFC 5322 §2.2.3).

    Read through ``raw_items`` so that a malformed value (a Date nobody can parse, an address
    list with garbage) is returned as text instead of raising in the ``email`` header parser.
    """
    wanted = name.lower()
    return [
        re.sub(r"\r?\n(?=[ \t])", "", str(value))
        for key, value in msg.raw_items()
        if key.lower() == wanted
    ]


def decoded_subject(msg: Message) -> str | None:
    """The Subject with RFC 2047 encoded words decoded, or ``None`` when there is none."""
    values = header_values(msg, "Subject")
    if not values:
        return None
    try:
        return str(make_header(decode_header(values[0])))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return values[0]


def ends_patient_exchange(msg: Message) -> bool:
    """Whether ``msg`` closes a conversation with a patient mailbox (reference §2.4, PAT-4).

    True when the subject is exactly ``[FIN]`` or when an ``X-MSS-MES`` header says ``FIN``
    (Ref#2 ECO.2.2.8). The caller applies it to messages from a professional to a patient
    address; after it, the patient's replies in that conversation are refused.
    """
    if is_fin_subject(decoded_subject(msg)):
        return True
    return any(is_mes_fin(v) for v in header_values(msg, HEADER_MES))


def _attachment_names(msg: Message) -> list[str]:
    names: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename() or part.get_param("name")
        if isinstance(filename, str):
            names.append(filename)
    return names


def has_xdm_attachment(msg: Message) -> bool:
    """Whether a part of ``msg`` is named ``IHE_XDM.ZIP`` (any case)."""
    return any(n.strip().upper() == XDM_ATTACHMENT_NAME for n in _attachment_names(msg))


@dataclass(frozen=True, slots=True)
class MssHeaders:
    """The X-MSS headers of a message, read leniently (``None`` = absent or unreadable).

    Meant for usage indicators and routing, where a malformed value must not stop anything;
    :func:`check_message_headers` is the place that reports them.
    """

    codecda: tuple[str, ...] | None
    ins_qualified: bool | None
    nil: str | None
    mes_fin: bool


def read_mss_headers(msg: Message) -> MssHeaders:
    """The first value of each X-MSS header, parsed when possible."""

    def first(name: str) -> str | None:
        values = header_values(msg, name)
        return values[0] if values else None

    codecda: tuple[str, ...] | None = None
    ins: bool | None = None
    nil: str | None = None
    raw = first(HEADER_CODECDA)
    if raw is not None:
        try:
            codecda = parse_codecda(raw)
        except HeaderValueError:
            codecda = None
    raw = first(HEADER_INS)
    if raw is not None:
        try:
            ins = parse_ins_flag(raw)
        except HeaderValueError:
            ins = None
    raw = first(HEADER_NIL)
    if raw is not None:
        try:
            nil = parse_nil(raw)
        except HeaderValueError:
            nil = None
    return MssHeaders(
        codecda=codecda,
        ins_qualified=ins,
        nil=nil,
        mes_fin=any(is_mes_fin(v) for v in header_values(msg, HEADER_MES)),
    )


# -- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderIssue:
    """One problem found in a message's header section.

    ``severity`` ``"error"`` means refuse the message (reply ``554`` with ``enhanced_status``,
    see :func:`smtp_reply_for`); ``"warning"`` means deliver it and log/count the issue, in which
    case ``enhanced_status`` is ``None``. ``code`` is stable for counting; ``message`` is French.
    """

    header: str
    code: str
    severity: Severity
    message: str
    enhanced_status: str | None


def _issue(header: str, code: str, message: str, *, error: bool) -> HeaderIssue:
    if error:
        return HeaderIssue(header, code, SEVERITY_ERROR, message, STATUS_MEDIA_ERROR)
    return HeaderIssue(header, code, SEVERITY_WARNING, message, None)


def _check_rfc5322(msg: Message) -> list[HeaderIssue]:
    issues: list[HeaderIssue] = []
    for name in SINGLE_FIELDS:
        count = len(header_values(msg, name))
        if count > 1:
            issues.append(
                _issue(
                    name,
                    "duplicate",
                    f"en-tête {name} présent {count} fois : une seule occurrence permise "
                    "(RFC 5322 §3.6)",
                    error=True,
                )
            )
    froms = header_values(msg, "From")
    if not froms:
        issues.append(_issue("From", "missing", "en-tête From absent (RFC 5322 §3.6)", error=True))
    else:
        mailboxes = [addr for _, addr in getaddresses(froms) if "@" in addr]
        if not mailboxes:
            issues.append(
                _issue(
                    "From",
                    "invalid",
                    "en-tête From sans adresse de messagerie lisible (RFC 5322 §3.6.2)",
                    error=True,
                )
            )
        elif len(mailboxes) > 1 and not header_values(msg, "Sender"):
            issues.append(
                _issue(
                    "From",
                    "sender_required",
                    "plusieurs adresses dans From sans en-tête Sender (RFC 5322 §3.6.2)",
                    error=True,
                )
            )
    dates = header_values(msg, "Date")
    if not dates:
        issues.append(
            _issue("Date", "missing", "en-tête Date absent (RFC 5322 §3.6.1)", error=True)
        )
    else:
        try:
            parsed = parsedate_to_datetime(dates[0].strip())
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is None:
            issues.append(
                _issue(
                    "Date",
                    "invalid",
                    f"en-tête Date illisible « {dates[0].strip()} » (RFC 5322 §3.3)",
                    error=False,
                )
            )
    if not header_values(msg, "Message-ID"):
        # RFC 5322 §3.6.4 says SHOULD: the submission server adds one rather than refusing.
        issues.append(
            _issue(
                "Message-ID",
                "missing",
                "en-tête Message-ID absent (RFC 5322 §3.6.4) : les accusés (MDN) ne pourront "
                "pas être rapprochés du message",
                error=False,
            )
        )
    return issues


def _check_mss(msg: Message, *, strict: bool) -> list[HeaderIssue]:
    issues: list[HeaderIssue] = []
    for name in MSS_HEADERS:
        count = len(header_values(msg, name))
        if count > 1:
            issues.append(
                _issue(
                    name,
                    "duplicate",
                    f"en-tête {name} présent {count} fois : une seule occurrence attendue",
                    error=strict,
                )
            )
    codecda = header_values(msg, HEADER_CODECDA)
    ins = header_values(msg, HEADER_INS)
    for raw in codecda:
        try:
            parse_codecda(raw)
        except HeaderValueError as exc:
            issues.append(_issue(HEADER_CODECDA, exc.code, exc.message, error=strict))
            continue
        if ";" in raw or re.search(r"[^,\s]\s+[^,\s]", raw.strip()):
            issues.append(
                _issue(
                    HEADER_CODECDA,
                    "separator",
                    f"{HEADER_CODECDA} : codes séparés autrement que par une virgule "
                    "(séparateur non confirmé par le Référentiel #2, lu quand même)",
                    error=False,
                )
            )
    for raw in ins:
        try:
            parse_ins_flag(raw)
        except HeaderValueError as exc:
            issues.append(_issue(HEADER_INS, exc.code, exc.message, error=strict))
    for raw in header_values(msg, HEADER_NIL):
        try:
            parse_nil(raw)
        except HeaderValueError as exc:
            issues.append(_issue(HEADER_NIL, exc.code, exc.message, error=strict))
    for raw in header_values(msg, HEADER_MES):
        if raw.strip() != MES_FIN:
            closing = is_mes_fin(raw)
            issues.append(
                _issue(
                    HEADER_MES,
                    "invalid_value",
                    f"{HEADER_MES} doit valoir « FIN », reçu « {raw.strip()} »"
                    + (" (lu comme FIN)" if closing else " (ignoré)"),
                    error=strict and not closing,
                )
            )
    if codecda and not has_xdm_attachment(msg):
        issues.append(
            _issue(
                HEADER_CODECDA,
                "without_xdm",
                f"{HEADER_CODECDA} présent sans pièce jointe IHE_XDM.ZIP (Réf. #2 ECO.2.4.1 : "
                "l'en-tête n'est posé que pour des documents CDA dans une archive XDM)",
                error=strict,
            )
        )
    if codecda and not ins:
        issues.append(
            _issue(
                HEADER_INS,
                "missing",
                f"{HEADER_CODECDA} présent sans {HEADER_INS} (Réf. #2 ECO.2.4.2)",
                error=strict,
            )
        )
    if ins and not codecda:
        issues.append(
            _issue(
                HEADER_INS,
                "without_codecda",
                f"{HEADER_INS} présent sans {HEADER_CODECDA} : il n'a de sens que pour un "
                "message portant des documents CDA (Réf. #2 ECO.2.4.2)",
                error=strict,
            )
        )
    return issues


def check_message_headers(msg: Message, *, strict_mss: bool = False) -> list[HeaderIssue]:
    """The problems of ``msg``'s header section, errors first; an empty list means clean.

    Never modifies ``msg`` (reference IN-16: the X-MSS headers travel unchanged). Works on
    ``email.message.EmailMessage`` as well as on a legacy ``Message``: values are read as
    received (``raw_items``), so a malformed header cannot raise while being checked.
    """
    issues = _check_rfc5322(msg) + _check_mss(msg, strict=strict_mss)
    return sorted(issues, key=lambda i: i.severity != SEVERITY_ERROR)


def smtp_reply_for(issues: Iterable[HeaderIssue]) -> tuple[int, str] | None:
    """The SMTP reply refusing a message for its first error, or ``None`` to accept it.

    The text is ASCII (RFC 5321 §4.2) and starts with the enhanced status (RFC 2034).
    """
    for issue in issues:
        if issue.severity == SEVERITY_ERROR:
            status = issue.enhanced_status or STATUS_MEDIA_ERROR
            return REPLY_TRANSACTION_FAILED, f"{status} {ascii_fold(issue.message)}"
    return None
