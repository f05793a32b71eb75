"""Delivery status notifications (DSN, RFC 3464) and disposition notifications (MDN, RFC 8098).

Two kinds of reports travel back to the sender of an MSSanté message (reference
``shared/reference/mssante.md`` §4.4):

* the **DSN** is the operator's: when a message cannot be delivered (unknown mailbox, domain
  outside the liste blanche, too big) or is delayed, or when the sender asked for a success
  notice (ESMTP ``NOTIFY=SUCCESS``, RFC 3461 §4.1). :func:`build_dsn` makes the RFC 3464
  ``multipart/report; report-type=delivery-status`` message (RFC 6522), :func:`parse_dsn` reads
  one back (for the sender's mailbox view and the tests).
* the **MDN** is the receiving software's (a PFI integrating documents into a DPI): it says the
  message was processed, or why it could not be, with the CI-SIS error codes 900–906
  (:data:`MDN_ERROR_CODES`, IG "IG-hl7v2-volet-trans-lps-doc-cda-courriel-mss", pages
  ``struct-msg-mdn`` and ``error-codes``). :func:`mdn_requested` applies the RFC 8098 §2.1 rule
  on when an automatic MDN may be sent at all; :func:`build_mdn` and :func:`parse_mdn` write
  and read them; :func:`build_error_mail` is the "courriel standard" the volet prescribes
  when no MDN was requested (reference §7.5 MDN-3).

Sending is the caller's job, with one rule these builders cannot enforce: a DSN or an MDN goes
out with a **null reverse-path** (``MAIL FROM:<>``; RFC 5321 §4.5.5 for DSNs, RFC 8098 §3 for
MDNs), so that a failure to deliver the report never produces a report in turn.

Every builder returns the message as bytes with CRLF line ends, ready for SMTP ``DATA``.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser, Parser
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime
from types import MappingProxyType
from typing import Final, Literal

from parcours.messagerie.headers import ascii_fold, decoded_subject, header_values

# -- common ------------------------------------------------------------------------------------

#: Headers re-folded only where we wrote them: the embedded original keeps its own lines.
_WIRE_POLICY: Final = policy.SMTP.clone(refold_source="none")
_PARSE_POLICY: Final = policy.default
#: RFC 5322 §2.1.1: a line is at most 998 characters; field values stay well below.
_MAX_FIELD: Final = 900
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: An MTA name for the ``dns`` mta-name-type (RFC 3464 §2.1.2): a host name, ASCII labels.
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
#: RFC 3463 §2: class.subject.detail.
_STATUS = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})$")


class ReportError(ValueError):
    """A message that is not the report :func:`parse_dsn` / :func:`parse_mdn` expected."""


def _serialize(msg: Message) -> bytes:
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=_WIRE_POLICY).flatten(msg)
    return buffer.getvalue()


def _clean(value: str) -> str:
    """One physical line of printable ASCII: what a report field may contain.

    Remote SMTP replies end up in Diagnostic-Code; a CR/LF in them would let the remote server
    write headers into our report, so every control character is dropped.
    """
    text = ascii_fold(re.sub(r"[\x00-\x1f\x7f]+", " ", value)).strip()
    return text[:_MAX_FIELD]


def _ascii_address(address: str, what: str) -> str:
    address = address.strip()
    if not address or not address.isascii() or re.search(r"[\s\x00-\x1f\x7f<>]", address):
        raise ValueError(
            f"{what} « {address} » : adresse ASCII sans espace attendue (les adresses "
            "internationalisées, RFC 6533, ne sont pas prises en charge)"
        )
    return address


def _typed_address(address: str, what: str) -> str:
    """``rfc822;x@y`` (RFC 3464 §2.1.2 address-type); a type already given is kept."""
    address = address.strip()
    if ";" in address:
        kind, _, rest = address.partition(";")
        return f"{kind.strip()};{_ascii_address(rest, what)}"
    return f"rfc822;{_ascii_address(address, what)}"


def _untyped(value: str | None) -> str | None:
    """``x@y`` from ``rfc822; x@y`` (the type is dropped; other types keep their prefix)."""
    if value is None:
        return None
    kind, sep, rest = value.partition(";")
    if sep and kind.strip().lower() in ("rfc822", "dns", "smtp"):
        return rest.strip()
    return value.strip()


def _date(moment: datetime, what: str) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{what} : date sans fuseau horaire")
    return format_datetime(moment)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None


def _field_block(fields: Sequence[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in fields:
        block[name] = value
    return block


def _fields_of(part: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status or disposition-notification part.

    The stdlib parser gives them as a list of header-only messages; when a sender encoded the
    part (base64…) it gives a string, which is split on blank lines here instead.
    """
    payload = part.get_payload()
    blocks: list[Message] = []
    if isinstance(payload, list):
        blocks = [p for p in payload if isinstance(p, Message)]
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else str(payload)
        for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
            if chunk.strip():
                blocks.append(Parser(policy=policy.compat32).parsestr(chunk, headersonly=True))
    groups: list[dict[str, str]] = []
    for block in blocks:
        fields: dict[str, str] = {}
        for name, value in block.raw_items():
            fields.setdefault(name.lower(), re.sub(r"\s*\r?\n\s+", " ", str(value)).strip())
        if fields:
            groups.append(fields)
    return groups


def _text_of(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _text_part(text: str, language: str) -> MIMEPart:
    part = MIMEPart(policy=_PARSE_POLICY)
    # Quoted-printable keeps the French text 7-bit clean through any relay (RFC 2045 §6.7).
    part.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    part["Content-Language"] = language
    return part


def _report_envelope(
    report_type: str,
    *,
    from_address: str,
    to_address: str,
    subject: str,
    date: datetime | None,
    domain: str,
    auto: bool,
    message_id: str | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=_PARSE_POLICY)
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Subject"] = subject
    msg["Date"] = _date(date or datetime.now(UTC), "Date")
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    msg["MIME-Version"] = "1.0"
    if auto:
        # RFC 3834 §5: generated automatically in answer to a message; auto-responders and
        # other report generators must not answer it.
        msg["Auto-Submitted"] = "auto-replied"
    msg["Content-Type"] = f"multipart/report; report-type={report_type}"
    return msg


def _message_part(original: Message) -> MIMEPart:
    part = MIMEPart(policy=_PARSE_POLICY)
    # message/rfc822 may only be 7bit/8bit/binary (RFC 2046 §5.2.1): never base64.
    part.set_content(copy.deepcopy(original), subtype="rfc822")
    return part


def _parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=_PARSE_POLICY).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def _report_parts(msg: Message, report_type: str) -> list[Message]:
    if msg.get_content_type() != "multipart/report":
        raise ReportError(f"pas un rapport : type {msg.get_content_type()}")
    kind = str(msg.get_param("report-type", "") or "").lower()
    if kind != report_type:
        raise ReportError(f"rapport de type « {kind} », « {report_type} » attendu")
    parts = msg.get_payload()
    if not isinstance(parts, list) or len(parts) < 2:
        raise ReportError("rapport incomplet : au moins deux parties attendues (RFC 6522 §3)")
    return parts


# -- DSN (RFC 3464) ----------------------------------------------------------------------------

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
#: RFC 3464 §2.3.3 actions and the status class each must carry (§2.3.4, RFC 3463 §3.1).
ACTION_STATUS_CLASS: Final[Mapping[str, str]] = MappingProxyType(
    {"failed": "5", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
)
RET_HEADERS: Final = "HDRS"
RET_FULL: Final = "FULL"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientStatus:
    """One per-recipient group of a DSN (RFC 3464 §2.3).

    ``recipient`` is the Final-Recipient address; ``original_recipient`` the ORCPT value
    received with ``RCPT TO`` (RFC 3461 §4.2, after xtext decoding); ``diagnostic`` the SMTP
    reply text of the remote server (written as ``Diagnostic-Code: smtp; <text>``);
    ``remote_mta`` its host name. ``will_retry_until`` only goes with ``delayed`` (§2.3.9).
    """

    recipient: str
    action: str
    status: str
    original_recipient: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Dsn:
    """A delivery status notification as read by :func:`parse_dsn`.

    ``returned`` says what came back of the original: ``"headers"`` (text/rfc822-headers),
    ``"message"`` (message/rfc822) or ``None``; ``original_headers`` holds its header section
    either way, ``original`` the whole message only in the second case.
    """

    subject: str | None
    reporting_mta: str | None
    envid: str | None
    arrival_date: datetime | None
    recipients: tuple[RecipientStatus, ...]
    human_text: str
    returned: Literal["headers", "message"] | None
    original_headers: Message | None
    original: Message | None


_DSN_SUBJECTS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "fr": {
            "failed": "Échec de distribution du message",
            "delayed": "Distribution du message retardée",
            "success": "Accusé de distribution du message",
        },
        "en": {
            "failed": "Delivery Status Notification (Failure)",
            "delayed": "Delivery Status Notification (Delay)",
            "success": "Delivery Status Notification (Success)",
        },
    }
)
_DSN_LINES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "fr": {
            "intro": "Ceci est un message automatique du serveur de messagerie {mta}.",
            "failed": "Votre message n'a pas pu être distribué au destinataire suivant, "
            "définitivement :",
            "delayed": "La distribution de votre message au destinataire suivant est retardée ; "
            "de nouvelles tentatives sont en cours, vous n'avez rien à faire pour l'instant :",
            "delivered": "Votre message a été distribué dans la boîte du destinataire suivant :",
            "relayed": "Votre message a été transmis au serveur suivant, qui ne renvoie pas "
            "d'accusé de distribution, pour le destinataire :",
            "expanded": "Votre message a été distribué à la liste suivante, puis redistribué à "
            "ses membres :",
            "retry": "Nouvelles tentatives jusqu'au {until}.",
            "reply": "Réponse du serveur distant : {reply}",
            "headers": "Les en-têtes du message d'origine sont joints.",
            "message": "Le message d'origine est joint.",
        },
        "en": {
            "intro": "This is an automatically generated message from the mail server {mta}.",
            "failed": "Your message could not be delivered to the following recipient:",
            "delayed": "Delivery of your message to the following recipient is delayed; the "
            "server keeps trying, no action is needed yet:",
            "delivered": "Your message was delivered to the following recipient:",
            "relayed": "Your message was relayed to a server that sends no delivery "
            "notification, for the recipient:",
            "expanded": "Your message was delivered to the following list and redistributed:",
            "retry": "Retrying until {until}.",
            "reply": "Remote server reply: {reply}",
            "headers": "The headers of the original message are attached.",
            "message": "The original message is attached.",
        },
    }
)


def _check_recipient(status: RecipientStatus) -> None:
    action = status.action.lower()
    if action not in ACTION_STATUS_CLASS:
        raise ValueError(
            f"action « {status.action} » inconnue (RFC 3464 §2.3.3 : "
            f"{', '.join(ACTION_STATUS_CLASS)})"
        )
    match = _STATUS.match(status.status.strip())
    if not match:
        raise ValueError(f"statut « {status.status} » : code X.Y.Z attendu (RFC 3463)")
    if match.group(1) != ACTION_STATUS_CLASS[action]:
        raise ValueError(
            f"statut {status.status} incohérent avec l'action {action} (classe "
            f"{ACTION_STATUS_CLASS[action]}.x.x attendue, RFC 3464 §2.3.4)"
        )
    if status.will_retry_until is not None and action != "delayed":
        raise ValueError("Will-Retry-Until n'a de sens qu'avec l'action delayed (RFC 3464 §2.3.9)")
    if status.remote_mta is not None and not _HOST.match(status.remote_mta.strip()):
        raise ValueError(f"Remote-MTA « {status.remote_mta} » : nom d'hôte attendu")


def _recipient_fields(status: RecipientStatus) -> list[tuple[str, str]]:
    # Field order of RFC 3464 §2.3.
    fields: list[tuple[str, str]] = []
    if status.original_recipient:
        fields.append(
            ("Original-Recipient", _typed_address(status.original_recipient, "Original-Recipient"))
        )
    fields.append(("Final-Recipient", _typed_address(status.recipient, "Final-Recipient")))
    fields.append(("Action", status.action.lower()))
    fields.append(("Status", status.status.strip()))
    if status.remote_mta:
        fields.append(("Remote-MTA", f"dns; {status.remote_mta.strip()}"))
    if status.diagnostic:
        fields.append(("Diagnostic-Code", f"smtp; {_clean(status.diagnostic)}"))
    if status.last_attempt is not None:
        fields.append(("Last-Attempt-Date", _date(status.last_attempt, "Last-Attempt-Date")))
    if status.will_retry_until is not None:
        fields.append(("Will-Retry-Until", _date(status.will_retry_until, "Will-Retry-Until")))
    return fields


def _header_section(original: bytes) -> bytes:
    match = re.search(rb"\r?\n\r?\n", original)
    return original if match is None else original[: match.start()] + b"\r\n"


def build_dsn(
    original: bytes,
    *,
    reporting_mta: str,
    recipients: Sequence[RecipientStatus],
    to_address: str,
    envid: str | None = None,
    ret: str = RET_HEADERS,
    arrival_date: datetime | None = None,
    from_address: str | None = None,
    language: str = "fr",
    date: datetime | None = None,
    max_returned_bytes: int | None = None,
    message_id: str | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification about ``original`` (the message as received).

    Parts (RFC 6522 §3): a French (or English) explanation, the ``message/delivery-status``
    fields — per-message (Original-Envelope-Id, Reporting-MTA, Arrival-Date) then one group per
    recipient, separated by blank lines (RFC 3464 §2.1) — and the original: its header section
    as ``text/rfc822-headers`` for ``ret="HDRS"``, the whole message as ``message/rfc822`` for
    ``ret="FULL"``. The whole message is only returned when some recipient *failed* (RFC 3461
    §4.3: a success or delay notice returns headers at most) and when it fits in
    ``max_returned_bytes``.

    ``to_address`` is the original envelope sender; a message received with a null sender gets
    no DSN (RFC 5321 §4.5.5), so an empty ``to_address`` raises ``ValueError``. ``envid`` is the
    ENVID parameter after xtext decoding. The report is sent from ``from_address``
    (``MAILER-DAEMON@<reporting_mta>`` by default) with a null reverse-path: the caller's job.
    """
    if not recipients:
        raise ValueError("une notification d'état concerne au moins un destinataire")
    if not to_address.strip().strip("<>"):
        raise ValueError(
            "expéditeur nul (MAIL FROM:<>) : pas de notification d'état (RFC 5321 §4.5.5)"
        )
    if not _HOST.match(reporting_mta):
        raise ValueError(f"Reporting-MTA « {reporting_mta} » : nom d'hôte attendu")
    ret = ret.upper()
    if ret not in (RET_HEADERS, RET_FULL):
        raise ValueError(f"RET « {ret} » : HDRS ou FULL attendu (RFC 3461 §4.3)")
    if language not in _DSN_LINES:
        raise ValueError(f"langue « {language} » non prise en charge ({', '.join(_DSN_LINES)})")
    for status in recipients:
        _check_recipient(status)

    actions = {r.action.lower() for r in recipients}
    worst = "failed" if "failed" in actions else "delayed" if "delayed" in actions else "success"
    full = (
        ret == RET_FULL
        and "failed" in actions
        and (max_returned_bytes is None or len(original) <= max_returned_bytes)
    )
    lines = _DSN_LINES[language]
    text = [lines["intro"].format(mta=reporting_mta), ""]
    for status in recipients:
        text.append(lines[status.action.lower()])
        text.append(f"  {status.recipient}  ({status.status})")
        if status.diagnostic:
            text.append("  " + lines["reply"].format(reply=_clean(status.diagnostic)))
        if status.will_retry_until is not None:
            until = status.will_retry_until.strftime("%d/%m/%Y %H:%M %Z").strip()
            text.append("  " + lines["retry"].format(until=until))
        text.append("")
    text.append(lines["message" if full else "headers"])

    msg = _report_envelope(
        "delivery-status",
        from_address=from_address or f"MAILER-DAEMON@{reporting_mta}",
        to_address=_ascii_address(to_address.strip().strip("<>"), "destinataire"),
        subject=_DSN_SUBJECTS[language][worst],
        date=date,
        domain=reporting_mta,
        auto=True,
        message_id=message_id,
    )
    msg.attach(_text_part("\n".join(text) + "\n", language))

    per_message: list[tuple[str, str]] = []
    if envid:
        per_message.append(("Original-Envelope-Id", _clean(envid)))
    per_message.append(("Reporting-MTA", f"dns; {reporting_mta}"))
    if arrival_date is not None:
        per_message.append(("Arrival-Date", _date(arrival_date, "Arrival-Date")))
    status_part = MIMEPart(policy=_PARSE_POLICY)
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload(
        [_field_block(per_message)] + [_field_block(_recipient_fields(r)) for r in recipients]
    )
    msg.attach(status_part)

    if full:
        msg.attach(_message_part(BytesParser(policy=_PARSE_POLICY).parsebytes(original)))
    else:
        headers = MIMEPart(policy=_PARSE_POLICY)
        section = _header_section(original).decode("utf-8", errors="replace")
        headers.set_content(section, subtype="rfc822-headers", charset="utf-8")
        msg.attach(headers)
    return _serialize(msg)


def _recipient_from(fields: Mapping[str, str]) -> RecipientStatus:
    diagnostic = fields.get("diagnostic-code")
    if diagnostic is not None:
        kind, sep, rest = diagnostic.partition(";")
        if sep and kind.strip().lower() == "smtp":
            diagnostic = rest.strip()
    return RecipientStatus(
        recipient=_untyped(fields.get("final-recipient")) or "",
        action=fields.get("action", "").strip().lower(),
        status=fields.get("status", "").strip(),
        original_recipient=_untyped(fields.get("original-recipient")),
        diagnostic=diagnostic,
        remote_mta=_untyped(fields.get("remote-mta")),
        last_attempt=_parse_date(fields.get("last-attempt-date")),
        will_retry_until=_parse_date(fields.get("will-retry-until")),
    )


def parse_dsn(data: bytes) -> Dsn:
    """Read an RFC 3464 DSN; raises :class:`ReportError` if ``data`` is not one."""
    msg = _parse(data)
    parts = _report_parts(msg, "delivery-status")
    status_parts = [
        p
        for p in parts
        if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
    ]
    if not status_parts:
        raise ReportError("partie message/delivery-status absente (RFC 3464 §2.1)")
    groups = _fields_of(status_parts[0])
    if not groups:
        raise ReportError("partie message/delivery-status vide")
    per_message, per_recipient = groups[0], groups[1:]
    if "reporting-mta" not in per_message and "final-recipient" in per_message:
        per_message, per_recipient = {}, groups
    returned: Literal["headers", "message"] | None = None
    original_headers: Message | None = None
    original: Message | None = None
    for part in parts:
        kind = part.get_content_type()
        if kind in ("text/rfc822-headers", "text/global-headers"):
            returned = "headers"
            original_headers = Parser(policy=_PARSE_POLICY).parsestr(
                _text_of(part), headersonly=True
            )
        elif kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                returned = "message"
                original = inner[0]
                original_headers = inner[0]
    human = _text_of(parts[0]) if parts[0].get_content_maintype() == "text" else ""
    return Dsn(
        subject=decoded_subject(msg),
        reporting_mta=_untyped(per_message.get("reporting-mta")),
        envid=per_message.get("original-envelope-id"),
        arrival_date=_parse_date(per_message.get("arrival-date")),
        recipients=tuple(_recipient_from(g) for g in per_recipient),
        human_text=human,
        returned=returned,
        original_headers=original_headers,
        original=original,
    )


# -- MDN (RFC 8098) and the CI-SIS error codes -------------------------------------------------


@dataclass(frozen=True, slots=True)
class MdnErrorCode:
    """One row of the CI-SIS "applicationErrorCondition" table (IG page ``error-codes``)."""

    code: str
    label: str
    description: str


#: Codes 900–906, labels and descriptions as published in the IG (the IG says the table is
#: indicative and may grow: :func:`build_mdn` accepts other numeric codes too).
MDN_ERROR_CODES: Final[Mapping[str, MdnErrorCode]] = MappingProxyType(
    {
        row.code: row
        for row in (
            MdnErrorCode(
                "900",
                "Version du document incorrecte lors d'une demande de remplacement/suppression",
                "Lors d'une demande de remplacement ou suppression d'un document, la version de "
                "document transmise ne correspond pas à la version la plus récente du document "
                "existant au niveau de l'application réceptrice (consommateur).",
            ),
            MdnErrorCode(
                "901",
                "Auteur non autorisé à remplacer ou supprimer un document",
                "L'acteur qui demande le remplacement ou la suppression doit être l'auteur du "
                "document ou appartenir à la même organisation que l'auteur du document "
                "original ; sinon le message est rejeté.",
            ),
            MdnErrorCode(
                "902",
                "Identifiant patient inconnu",
                "Le patient pour lequel le traitement sur le document est demandé est inconnu "
                "de l'application réceptrice (consommateur).",
            ),
            MdnErrorCode(
                "903",
                "INS non présent dans le document",
                "Le document CDA contient une liste d'identifiants de patient mais pas l'INS : "
                "le traitement ne peut pas être réalisé de façon automatique.",
            ),
            MdnErrorCode(
                "904",
                "L'INS transmis ne correspond pas exactement à celui stocké dans la base du "
                "consommateur",
                "L'INS est présent dans le document CDA mais les traits ou le matricule ne "
                "correspondent pas exactement à ceux du système consommateur : le traitement "
                "ne peut pas être réalisé de façon automatique.",
            ),
            MdnErrorCode(
                "905",
                "L’INS transmis n’est pas complet",
                "Le matricule INS est présent dans le document CDA mais tous les traits de "
                "l'INS ne le sont pas : le traitement ne peut pas être réalisé de façon "
                "automatique.",
            ),
            MdnErrorCode(
                "906",
                "Erreur 'Autre'",
                "Code à utiliser quand aucun autre code ne correspond au cas d'erreur rencontré.",
            ),
        )
    }
)

DISPOSITION_TYPES: Final = ("displayed", "dispatched", "processed", "deleted")
MODE_AUTOMATIC: Final = "automatic-action/MDN-sent-automatically"
MODE_MANUAL: Final = "manual-action/MDN-sent-manually"
#: RFC 8098 §3.2.6.1–2; "automatic-action/MDN-sent-manually" is meaningless and refused.
DISPOSITION_MODES: Final = (MODE_AUTOMATIC, MODE_MANUAL, "manual-action/MDN-sent-automatically")
#: Subject prefix of a failed integration (IG ``struct-msg-mdn``, "Objet du MDN").
KO_SUBJECT_PREFIX: Final = "[KO Intégration système !]"
#: The IHE XDM e-mail subject (ITI TF-2b §3.32, ZIP over e-mail), echoed when there was none.
XDM_SUBJECT: Final = "XDM/1.0/DDM"


def mdn_error(code: str | int) -> tuple[str, str]:
    """``(code, label)`` of a CI-SIS error code of :data:`MDN_ERROR_CODES`."""
    row = MDN_ERROR_CODES.get(str(code))
    if row is None:
        raise ValueError(f"code d'erreur {code} absent de la table CI-SIS (900–906)")
    return row.code, row.label


@dataclass(frozen=True, slots=True)
class Mdn:
    """A message disposition notification as read by :func:`parse_mdn`.

    ``error_code``/``error_label`` come from the CI-SIS form of the disposition modifier
    (``processed/Error: 902^Identifiant patient inconnu``) or, failing that, from an RFC 8098
    ``Error`` field. ``attachments`` are the file names re-attached after the report parts.
    """

    subject: str | None
    final_recipient: str | None
    original_recipient: str | None
    original_message_id: str | None
    reporting_ua: str | None
    disposition: str
    action_mode: str | None
    sending_mode: str | None
    disposition_type: str | None
    error_code: str | None
    error_label: str | None
    human_text: str
    original: Message | None
    attachments: tuple[str, ...]

    @property
    def is_error(self) -> bool:
        return self.error_code is not None


def _address_of(value: str | None) -> str | None:
    if not value:
        return None
    found = [addr for _, addr in getaddresses([value]) if "@" in addr]
    return found[0] if found else None


def _same_mailbox(a: str, b: str) -> bool:
    # Case-insensitive on purpose: RFC 5321 §2.4 allows case-sensitive local parts, but no
    # MSSanté operator uses them (the Annuaire publishes lower-case addresses), and refusing
    # the MDN over "Dupont@" vs "dupont@" would break the integration loop for nothing.
    return a.strip().casefold() == b.strip().casefold()


def mdn_requested(msg: Message, return_path: str | None) -> str | None:
    """The address an *automatic* MDN for ``msg`` may be sent to, or ``None``.

    ``return_path`` is the envelope sender the message was delivered with (the Return-Path
    header is read when it is ``None``). RFC 8098 §2.1: no automatic MDN when the single
    ``Disposition-Notification-To`` address differs from the Return-Path, when there is no
    Return-Path, or when the return path is null — and never in answer to a report (a DSN or an
    MDN), which would start a loop. Several addresses, or several such headers, would need the
    user's consent, which an automatic integration cannot give: ``None`` too (reference §7.5
    MDN-4).
    """
    if msg.get_content_type() == "multipart/report":
        return None
    values = header_values(msg, "Disposition-Notification-To")
    if len(values) != 1:
        return None
    addresses = [addr for _, addr in getaddresses(values) if "@" in addr]
    if len(addresses) != 1:
        return None
    if return_path is None:
        paths = header_values(msg, "Return-Path")
        return_path = paths[-1] if paths else None
    if return_path is None:
        return None
    sender = return_path.strip().strip("<>").strip()
    if not sender or "@" not in sender or not _same_mailbox(sender, addresses[0]):
        return None
    return addresses[0]


def _error_pair(error: tuple[str | int, str] | None) -> tuple[str, str] | None:
    if error is None:
        return None
    code, label = str(error[0]).strip(), error[1].strip()
    if not re.fullmatch(r"\d{1,5}", code):
        raise ValueError(f"code d'erreur « {code} » : nombre attendu (table CI-SIS 900–906)")
    if not label:
        label = MDN_ERROR_CODES[code].label if code in MDN_ERROR_CODES else ""
    return code, label


def _original_subject(original: Message) -> str:
    subject = decoded_subject(original)
    return subject.strip() if subject and subject.strip() else XDM_SUBJECT


def _ko_subject(code: str, original: Message) -> str:
    return f"{KO_SUBJECT_PREFIX}[{code}] {_original_subject(original)}"


def _reattached(original: Message) -> list[MIMEPart]:
    """Copies of the original's attachments (IHE_XDM.ZIP, the PDF…), base64-encoded."""
    copies: list[MIMEPart] = []
    for part in original.walk():
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        filename = part.get_filename()
        if not filename:
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        duplicate = MIMEPart(policy=_PARSE_POLICY)
        duplicate.set_content(
            data,
            maintype=part.get_content_maintype(),
            subtype=part.get_content_subtype(),
            cte="base64",
            disposition="attachment",
            filename=filename,
        )
        copies.append(duplicate)
    return copies


_MDN_TEXT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "processed": "Le message ci-dessous a été traité (intégré) automatiquement par le "
        "logiciel du destinataire {recipient}.",
        "displayed": "Le message ci-dessous a été affiché au destinataire {recipient}.",
        "dispatched": "Le message ci-dessous a été transmis (transféré, imprimé…) par le "
        "destinataire {recipient}, sans avoir nécessairement été lu.",
        "deleted": "Le message ci-dessous a été supprimé par le destinataire {recipient}.",
        "error": "Le message ci-dessous n’a pas pu être intégré automatiquement dans le "
        "logiciel du destinataire {recipient} pour la raison suivante : {label} "
        "(code d’erreur {code}).",
        "attached": "Le message d’origine et ses pièces jointes sont joints à cette notification.",
    }
)


def build_mdn(
    original: Message,
    *,
    final_recipient: str,
    disposition: str = "processed",
    mode: str = MODE_AUTOMATIC,
    error: tuple[str | int, str] | None = None,
    reporting_ua: str | None = None,
    original_recipient: str | None = None,
    to_address: str | None = None,
    from_address: str | None = None,
    date: datetime | None = None,
    reattach: bool = True,
) -> bytes:
    """An RFC 8098 MDN about ``original``, in the CI-SIS form (IG ``struct-msg-mdn``).

    Parts: a French explanation (with the error code and label on failure), the
    ``message/disposition-notification`` fields (Reporting-UA, Original-Recipient,
    Final-Recipient, Original-Message-ID, Disposition and, on failure, an RFC 8098 §3.2.7
    ``Error`` field), the original message (``message/rfc822``, required by the volet) and,
    when ``reattach``, copies of its attachments so the sender can correct and resubmit
    (reference §7.5 MDN-2).

    ``error`` = ``("902", "Identifiant patient inconnu")`` gives ``Disposition:
    automatic-action/MDN-sent-automatically; processed/Error: 902^Identifiant patient inconnu``
    and the subject ``[KO Intégration système !][902] <original subject>``; without it the
    subject echoes the original's (``XDM/1.0/DDM+…``, MDN-1). The label is reduced to ASCII in
    the Disposition field (RFC 8098 §3.1 fields are US-ASCII) and kept as is in the text part.

    ``original_recipient`` defaults to the original's ``Original-Recipient`` header (added at
    final delivery from ORCPT, RFC 8098 §2.3); the field is omitted when neither exists
    (§3.2.3). ``to_address`` defaults to the ``Disposition-Notification-To`` address; call
    :func:`mdn_requested` first to know whether an automatic MDN may be sent at all.
    """
    if disposition not in DISPOSITION_TYPES:
        raise ValueError(
            f"type de disposition « {disposition} » inconnu ({', '.join(DISPOSITION_TYPES)})"
        )
    if mode not in DISPOSITION_MODES:
        raise ValueError(f"mode « {mode} » inconnu ({', '.join(DISPOSITION_MODES)})")
    pair = _error_pair(error)
    final = _ascii_address(final_recipient, "Final-Recipient")
    if to_address is None:
        requested = header_values(original, "Disposition-Notification-To")
        to_address = _address_of(requested[0]) if requested else None
        if to_address is None:
            raise ValueError(
                "pas de Disposition-Notification-To : pas de MDN, envoyer un courriel "
                "standard (build_error_mail)"
            )
    if original_recipient is None:
        values = header_values(original, "Original-Recipient")
        original_recipient = values[0] if values else None

    disposition_value = f"{mode}; {disposition}"
    if pair is not None:
        disposition_value += f"/Error: {pair[0]}^{_clean(pair[1])}"
    fields: list[tuple[str, str]] = []
    if reporting_ua:
        fields.append(("Reporting-UA", _clean(reporting_ua)))
    if original_recipient:
        fields.append(
            ("Original-Recipient", _typed_address(original_recipient, "Original-Recipient"))
        )
    fields.append(("Final-Recipient", _typed_address(final, "Final-Recipient")))
    message_ids = header_values(original, "Message-ID")
    if message_ids:
        fields.append(("Original-Message-ID", _clean(message_ids[0])))
    fields.append(("Disposition", disposition_value))
    if pair is not None:
        fields.append(("Error", _clean(f"{pair[0]}^{pair[1]}")))

    if pair is not None:
        subject = _ko_subject(pair[0], original)
        text = _MDN_TEXT["error"].format(recipient=final, code=pair[0], label=pair[1])
    else:
        subject = _original_subject(original)
        text = _MDN_TEXT[disposition].format(recipient=final)
    msg = _report_envelope(
        "disposition-notification",
        from_address=from_address or final,
        to_address=_ascii_address(to_address, "destinataire"),
        subject=subject,
        date=date,
        domain=final.rpartition("@")[2] or "localhost",
        auto=mode.endswith("MDN-sent-automatically"),
    )
    msg.attach(_text_part(f"{text}\n\n{_MDN_TEXT['attached']}\n", "fr"))
    notification = MIMEPart(policy=_PARSE_POLICY)
    notification["Content-Type"] = "message/disposition-notification"
    notification.set_payload([_field_block(fields)])
    msg.attach(notification)
    msg.attach(_message_part(original))
    if reattach:
        for part in _reattached(original):
            msg.attach(part)
    return _serialize(msg)


def build_error_mail(
    original: Message,
    *,
    from_address: str,
    to_address: str,
    error: tuple[str | int, str],
    date: datetime | None = None,
) -> bytes:
    """The "courriel standard" reporting an integration error when no MDN was requested.

    IG page ``struct-email-standard`` (reference §7.5 MDN-3): an ordinary RFC 5322
    ``multipart/mixed`` message — not a report, no Disposition field — whose subject is
    ``[KO Intégration système !][<code>] <original subject>``, whose text gives the code and
    label, with the original message and its attachments (base64) joined.
    """
    pair = _error_pair(error)
    assert pair is not None
    msg = EmailMessage(policy=_PARSE_POLICY)
    msg["From"] = _ascii_address(from_address, "expéditeur")
    msg["To"] = _ascii_address(to_address, "destinataire")
    msg["Subject"] = _ko_subject(pair[0], original)
    msg["Date"] = _date(date or datetime.now(UTC), "Date")
    msg["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(
        "Bonjour,\n\n"
        "Le document envoyé n’a pas pu être intégré automatiquement dans le système.\n\n"
        f"- Erreur détectée : {pair[1]}\n"
        f"- Code d’erreur : {pair[0]}\n\n"
        "Vous trouverez en pièces jointes le message d’origine et ses fichiers (archive "
        "IHE_XDM.ZIP, PDF). Veuillez vérifier les informations et renvoyer les documents "
        "après correction.\n",
        charset="utf-8",
        cte="quoted-printable",
    )
    original_part = _message_part(original)
    original_part["Content-Disposition"] = 'attachment; filename="message_original.eml"'
    msg.make_mixed()
    msg.attach(original_part)
    for part in _reattached(original):
        msg.attach(part)
    return _serialize(msg)


_DISPOSITION = re.compile(
    r"^\s*(?P<action>[A-Za-z-]+)\s*/\s*(?P<sending>[A-Za-z-]+)\s*;\s*(?P<type>[A-Za-z-]+)"
    r"\s*(?:/\s*(?P<modifier>.*))?$"
)


def _split_error(text: str) -> tuple[str | None, str | None]:
    """``(code, label)`` of ``902^Identifiant patient inconnu^…`` (HL7 ERR-5-like)."""
    pieces = [p.strip() for p in text.split("^")]
    code = pieces[0] if pieces and pieces[0] else None
    label = pieces[1] if len(pieces) > 1 and pieces[1] else None
    return code, label


def parse_mdn(data: bytes) -> Mdn:
    """Read an RFC 8098 MDN (CI-SIS form included); raises :class:`ReportError` otherwise."""
    msg = _parse(data)
    parts = _report_parts(msg, "disposition-notification")
    notifications = [
        p
        for p in parts
        if p.get_content_type()
        in ("message/disposition-notification", "message/global-disposition-notification")
    ]
    if not notifications:
        raise ReportError("partie message/disposition-notification absente (RFC 8098 §3)")
    groups = _fields_of(notifications[0])
    fields = groups[0] if groups else {}
    disposition = fields.get("disposition", "")
    match = _DISPOSITION.match(disposition)
    action = sending = kind = None
    code = label = None
    if match:
        action, sending = match.group("action"), match.group("sending")
        kind = match.group("type").lower()
        modifier = match.group("modifier") or ""
        head, sep, rest = modifier.partition(":")
        if head.strip().lower() == "error" and sep:
            code, label = _split_error(rest)
    if code is None and fields.get("error"):
        code, label = _split_error(fields["error"])
    original: Message | None = None
    attachments: list[str] = []
    for part in parts[1:]:
        if part.get_content_type() in ("message/rfc822", "message/global") and original is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = inner[0]
        elif part not in notifications and part.get_filename():
            attachments.append(str(part.get_filename()))
    return Mdn(
        subject=decoded_subject(msg),
        final_recipient=_untyped(fields.get("final-recipient")),
        original_recipient=_untyped(fields.get("original-recipient")),
        original_message_id=fields.get("original-message-id"),
        reporting_ua=fields.get("reporting-ua"),
        disposition=disposition,
        action_mode=action,
        sending_mode=sending,
        disposition_type=kind,
        error_code=code,
        error_label=label,
        human_text=_text_of(parts[0]) if parts[0].get_content_maintype() == "text" else "",
        original=original,
        attachments=tuple(attachments),
    )
