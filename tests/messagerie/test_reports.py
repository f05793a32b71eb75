"""DSN (RFC 3464 / RFC 3461) and MDN (RFC 8098, CI-SIS form): reference ``mssante.md`` §4.4,
§7.2 OUT-6/OUT-7 and §7.5 MDN-1..MDN-4.

Reports are read back with the standard library's ``email`` parser, not with our own parsers
only, so the structure is checked the way any mail client will see it.
"""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message

import pytest

from parcours.messagerie.reports import (
    MDN_ERROR_CODES,
    RecipientStatus,
    ReportError,
    build_dsn,
    build_error_mail,
    build_mdn,
    mdn_error,
    mdn_requested,
    parse_dsn,
    parse_mdn,
)

SENDER = "elise.martin@chu.mssante.fr"
PFI = "dpi@clinique.mssante.fr"
SUBJECT = "XDM/1.0/DDM+CR consultation DUPONT Jean 15/01/1980"
XDM_BYTES = b"PK\x05\x06" + b"\0" * 18
PDF_BYTES = b"%PDF-1.4\n%%EOF\n"
BODY_MARK = "Texte du corps qui ne doit pas revenir avec RET=HDRS"
ARRIVAL = datetime(2024, 5, 31, 12, 30, 0, tzinfo=UTC)


def original_bytes(*, dnt: str | None = SENDER, return_path: str | None = SENDER) -> bytes:
    lines = []
    if return_path is not None:
        lines.append(f"Return-Path: <{return_path}>")
    lines += [
        f"From: Dr Elise Martin <{SENDER}>",
        f"To: {PFI}",
        f"Subject: {SUBJECT}",
        "Date: Fri, 31 May 2024 14:30:00 +0200",
        "Message-ID: <cr-42@chu.mssante.fr>",
        f"Original-Recipient: rfc822;{PFI}",
    ]
    if dnt is not None:
        lines.append(f"Disposition-Notification-To: {dnt}")
    lines += [
        "X-MSS-CODECDA: 11488-4",
        "X-MSS-INS: O",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="B"',
        "",
        "--B",
        "Content-Type: text/plain; charset=utf-8",
        "",
        BODY_MARK,
        "--B",
        'Content-Type: application/zip; name="IHE_XDM.ZIP"',
        'Content-Disposition: attachment; filename="IHE_XDM.ZIP"',
        "Content-Transfer-Encoding: base64",
        "",
        "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==",
        "--B",
        'Content-Type: application/pdf; name="CR_consultation.pdf"',
        'Content-Disposition: attachment; filename="CR_consultation.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0xLjQKJSVFT0YK",
        "--B--",
        "",
    ]
    return "\r\n".join(lines).encode()


def original(**kwargs: str | None) -> EmailMessage:
    parsed = email.message_from_bytes(original_bytes(**kwargs), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(msg: Message) -> list[Message]:
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return payload


def blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part, as the stdlib parses them."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    return payload


FAILED = RecipientStatus(
    recipient="inconnu@clinique.mssante.fr",
    original_recipient="inconnu@clinique.mssante.fr",
    action="failed",
    status="5.1.1",
    diagnostic="550 5.1.1 <inconnu@clinique.mssante.fr>: Recipient address rejected",
    remote_mta="mx.clinique.mssante.fr",
    last_attempt=datetime(2024, 5, 31, 12, 31, 0, tzinfo=UTC),
)
DELAYED = RecipientStatus(
    recipient=PFI,
    action="delayed",
    status="4.4.1",
    diagnostic="421 4.4.1 Connection timed out",
    remote_mta="mx.clinique.mssante.fr",
    last_attempt=datetime(2024, 5, 31, 16, 31, 0, tzinfo=UTC),
    will_retry_until=datetime(2024, 6, 5, 12, 30, 0, tzinfo=UTC),
)
DELIVERED = RecipientStatus(recipient=PFI, action="delivered", status="2.0.0")


def dsn(recipients: list[RecipientStatus], **kwargs: object) -> bytes:
    arguments: dict[str, object] = {
        "reporting_mta": "mx.parcours.mssante.fr",
        "recipients": recipients,
        "to_address": SENDER,
        "arrival_date": ARRIVAL,
    }
    arguments.update(kwargs)
    return build_dsn(original_bytes(), **arguments)  # type: ignore[arg-type]


# -- DSN ---------------------------------------------------------------------------------------


def test_failure_dsn_with_headers_only() -> None:
    data = dsn([FAILED], envid="ENV-0042", ret="HDRS")
    msg = parse(data)

    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "MAILER-DAEMON@mx.parcours.mssante.fr"
    assert msg["To"] == SENDER
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] and msg["Date"]
    human, status, returned = parts(msg)
    assert human.get_content_type() == "text/plain"
    assert "n'a pas pu être distribué" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    assert returned.get_content_type() == "text/rfc822-headers"

    per_message, per_recipient = blocks(status)
    assert per_message["Reporting-MTA"] == "dns; mx.parcours.mssante.fr"
    assert per_message["Original-Envelope-Id"] == "ENV-0042"
    assert per_message["Arrival-Date"] == "Fri, 31 May 2024 12:30:00 +0000"
    assert per_recipient["Final-Recipient"] == "rfc822;inconnu@clinique.mssante.fr"
    assert per_recipient["Original-Recipient"] == "rfc822;inconnu@clinique.mssante.fr"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.clinique.mssante.fr"
    assert per_recipient["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <inconnu@clinique.mssante.fr>: Recipient address rejected"
    )

    headers = returned.get_content()
    assert "Message-ID: <cr-42@chu.mssante.fr>" in headers
    assert BODY_MARK not in headers
    assert BODY_MARK.encode() not in data
    assert b"\r\n" in data and not re.search(rb"[^\r]\n", data)  # CRLF, ready for DATA


def test_failure_dsn_with_full_message() -> None:
    msg = parse(dsn([FAILED], ret="FULL"))
    returned = parts(msg)[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Message-ID"] == "<cr-42@chu.mssante.fr>"
    assert BODY_MARK in inner.as_string()


def test_success_dsn_returns_headers_even_with_ret_full() -> None:
    # RFC 3461 §4.3: the content only comes back when delivery failed.
    msg = parse(dsn([DELIVERED], ret="FULL"))
    assert parts(msg)[2].get_content_type() == "text/rfc822-headers"
    assert "Accusé de distribution" in str(msg["Subject"])


def test_full_return_falls_back_to_headers_when_too_big() -> None:
    msg = parse(dsn([FAILED], ret="FULL", max_returned_bytes=100))
    assert parts(msg)[2].get_content_type() == "text/rfc822-headers"


def test_recipient_groups_are_separated_by_blank_lines() -> None:
    data = dsn([FAILED, DELAYED])
    text = data.decode()
    start = text.index("Content-Type: message/delivery-status")
    section = text[start:].split("\r\n\r\n", 1)[1].split("\r\n--", 1)[0]
    groups = [g for g in section.split("\r\n\r\n") if g.strip()]
    assert len(groups) == 3  # per-message + one per recipient (RFC 3464 §2.1)
    assert groups[0].startswith("Reporting-MTA:")
    assert "Final-Recipient: rfc822;inconnu@clinique.mssante.fr" in groups[1]
    assert "Action: delayed" in groups[2]
    assert "Will-Retry-Until: Wed, 05 Jun 2024 12:30:00 +0000" in groups[2]
    assert "Échec" in str(parse(data)["Subject"])


def test_delay_dsn() -> None:
    msg = parse(dsn([DELAYED]))
    assert "retardée" in str(msg["Subject"])
    assert "nouvelles tentatives" in parts(msg)[0].get_content()


def test_parse_dsn_round_trip() -> None:
    report = parse_dsn(dsn([FAILED, DELAYED], envid="ENV-0042", ret="FULL"))
    assert report.reporting_mta == "mx.parcours.mssante.fr"
    assert report.envid == "ENV-0042"
    assert report.arrival_date == ARRIVAL
    assert report.recipients == (FAILED, DELAYED)
    assert report.returned == "message"
    assert report.original is not None and report.original["Subject"] == SUBJECT
    assert report.original_headers is not None
    headers_only = parse_dsn(dsn([FAILED]))
    assert headers_only.returned == "headers" and headers_only.original is None
    assert headers_only.original_headers is not None
    assert headers_only.original_headers["Message-ID"] == "<cr-42@chu.mssante.fr>"


def test_diagnostic_cannot_inject_fields() -> None:
    hostile = RecipientStatus(
        recipient=PFI,
        action="failed",
        status="5.0.0",
        diagnostic="550 non\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822;x@y",
    )
    report = parse_dsn(dsn([hostile]))
    assert len(report.recipients) == 1
    assert report.recipients[0].action == "failed"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (RecipientStatus(recipient=PFI, action="failed", status="4.4.1"), "incohérent"),
        (RecipientStatus(recipient=PFI, action="delivered", status="5.1.1"), "incohérent"),
        (RecipientStatus(recipient=PFI, action="bounced", status="5.1.1"), "inconnue"),
        (RecipientStatus(recipient=PFI, action="failed", status="550"), "X.Y.Z"),
        (
            RecipientStatus(
                recipient=PFI, action="failed", status="5.1.1", will_retry_until=ARRIVAL
            ),
            "delayed",
        ),
        (RecipientStatus(recipient="x y@z", action="failed", status="5.1.1"), "adresse"),
    ],
)
def test_dsn_refuses_inconsistent_statuses(status: RecipientStatus, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dsn([status])


def test_no_dsn_for_a_null_sender() -> None:
    with pytest.raises(ValueError, match="nul"):
        dsn([FAILED], to_address="<>")


def test_parse_dsn_refuses_other_messages() -> None:
    with pytest.raises(ReportError):
        parse_dsn(original_bytes())


# -- MDN: when (RFC 8098 §2.1) -----------------------------------------------------------------


def test_mdn_requested_when_dnt_equals_return_path() -> None:
    assert mdn_requested(original(), f"<{SENDER}>") == SENDER
    assert mdn_requested(original(), SENDER.upper()) == SENDER
    assert mdn_requested(original(), None) == SENDER  # read from the Return-Path header


def test_mdn4_no_automatic_mdn_when_dnt_differs_from_return_path() -> None:
    assert mdn_requested(original(), "bounces@chu.mssante.fr") is None
    assert mdn_requested(original(dnt="secretariat@chu.mssante.fr"), None) is None


def test_no_automatic_mdn_without_return_path_or_with_a_null_one() -> None:
    assert mdn_requested(original(return_path=None), None) is None
    assert mdn_requested(original(), "<>") is None


def test_no_automatic_mdn_to_several_addresses() -> None:
    both = f"{SENDER}, secretariat@chu.mssante.fr"
    assert mdn_requested(original(dnt=both), SENDER) is None


def test_mdn3_no_mdn_without_dnt() -> None:
    assert mdn_requested(original(dnt=None), SENDER) is None
    with pytest.raises(ValueError, match="courriel standard"):
        build_mdn(original(dnt=None), final_recipient=PFI)


def test_no_mdn_about_a_report() -> None:
    report = original_bytes().replace(
        b'Content-Type: multipart/mixed; boundary="B"',
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="B"',
    )
    assert mdn_requested(parse(report), SENDER) is None


# -- MDN: content ------------------------------------------------------------------------------


def test_mdn1_processed() -> None:
    data = build_mdn(original(), final_recipient=PFI, reporting_ua="pfi.clinique.mssante.fr")
    msg = parse(data)

    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    assert msg["Subject"] == SUBJECT
    assert msg["To"] == SENDER and msg["From"] == PFI
    assert msg["Disposition-Notification-To"] is None  # an MDN never asks for an MDN
    human, notification, returned, *attachments = parts(msg)
    assert human.get_content_type() == "text/plain"
    assert notification.get_content_type() == "message/disposition-notification"
    assert returned.get_content_type() == "message/rfc822"
    fields = notification.get_payload()[0]
    assert fields["Original-Message-ID"] == "<cr-42@chu.mssante.fr>"
    assert fields["Final-Recipient"] == f"rfc822;{PFI}"
    assert fields["Original-Recipient"] == f"rfc822;{PFI}"
    assert fields["Disposition"] == "automatic-action/MDN-sent-automatically; processed"
    assert fields["Reporting-UA"] == "pfi.clinique.mssante.fr"
    assert fields["Error"] is None
    assert returned.get_payload()[0]["Message-ID"] == "<cr-42@chu.mssante.fr>"
    assert [a.get_filename() for a in attachments] == ["IHE_XDM.ZIP", "CR_consultation.pdf"]

    read = parse_mdn(data)
    assert not read.is_error
    assert read.disposition_type == "processed"
    assert read.original_message_id == "<cr-42@chu.mssante.fr>"


def test_mdn2_integration_error() -> None:
    data = build_mdn(original(), final_recipient=PFI, error=("902", "Identifiant patient inconnu"))
    msg = parse(data)

    assert msg["Subject"] == f"[KO Intégration système !][902] {SUBJECT}"
    human, notification, returned, *attachments = parts(msg)
    fields = notification.get_payload()[0]
    assert fields["Disposition"] == (
        "automatic-action/MDN-sent-automatically; processed/Error: 902^Identifiant patient inconnu"
    )
    text = human.get_content()
    assert "902" in text and "Identifiant patient inconnu" in text
    # The original and its attachments come back so that the sender can fix and resubmit.
    assert returned.get_payload()[0]["Subject"] == SUBJECT
    contents = {a.get_filename(): a.get_content() for a in attachments}
    assert contents == {"IHE_XDM.ZIP": XDM_BYTES, "CR_consultation.pdf": PDF_BYTES}
    assert all(a["Content-Transfer-Encoding"] == "base64" for a in attachments)

    read = parse_mdn(data)
    assert read.is_error
    assert (read.error_code, read.error_label) == ("902", "Identifiant patient inconnu")
    assert read.final_recipient == PFI
    assert read.attachments == ("IHE_XDM.ZIP", "CR_consultation.pdf")


def test_mdn_error_label_is_ascii_in_the_machine_part() -> None:
    code, label = mdn_error(904)
    data = build_mdn(original(), final_recipient=PFI, error=(code, label))
    notification = parts(parse(data))[1]
    disposition = notification.get_payload()[0]["Disposition"]
    assert disposition.isascii()
    assert disposition.endswith(
        "processed/Error: 904^L'INS transmis ne correspond pas exactement a celui stocke dans "
        "la base du consommateur"
    )
    assert label in parts(parse(data))[0].get_content()  # accents kept for the human


def test_mdn_parses_the_ig_example_form() -> None:
    # The IG's own example carries the HL7 ERR-5 tail after the label.
    data = build_mdn(original(), final_recipient=PFI).replace(
        b"MDN-sent-automatically; processed",
        b"MDN-sent-automatically; processed/Error: 902^Identifiant de patient inconnu"
        b"^messageErrorCondition| E^Error^errorSeverity",
    )
    read = parse_mdn(data)
    assert (read.error_code, read.error_label) == ("902", "Identifiant de patient inconnu")


def test_manual_mdn() -> None:
    data = build_mdn(
        original(),
        final_recipient=PFI,
        disposition="displayed",
        mode="manual-action/MDN-sent-manually",
    )
    msg = parse(data)
    assert msg["Auto-Submitted"] is None
    assert parts(msg)[1].get_payload()[0]["Disposition"] == (
        "manual-action/MDN-sent-manually; displayed"
    )


def test_mdn_refuses_unknown_dispositions() -> None:
    with pytest.raises(ValueError):
        build_mdn(original(), final_recipient=PFI, disposition="read")
    with pytest.raises(ValueError):
        build_mdn(original(), final_recipient=PFI, mode="automatic-action/MDN-sent-manually")


def test_mdn3_standard_mail_when_no_mdn_was_requested() -> None:
    data = build_error_mail(
        original(dnt=None), from_address=PFI, to_address=SENDER, error=mdn_error(902)
    )
    msg = parse(data)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Subject"] == f"[KO Intégration système !][902] {SUBJECT}"
    kinds = [p.get_content_type() for p in parts(msg)]
    assert "message/disposition-notification" not in kinds
    assert kinds == ["text/plain", "message/rfc822", "application/zip", "application/pdf"]
    text = parts(msg)[0].get_content()
    assert "902" in text and "Identifiant patient inconnu" in text
    with pytest.raises(ReportError):
        parse_mdn(data)


def test_error_code_table() -> None:
    assert sorted(MDN_ERROR_CODES) == [str(c) for c in range(900, 907)]
    assert MDN_ERROR_CODES["902"].label == "Identifiant patient inconnu"
    assert MDN_ERROR_CODES["903"].label == "INS non présent dans le document"
    assert MDN_ERROR_CODES["906"].label == "Erreur 'Autre'"
    assert mdn_error("901") == ("901", "Auteur non autorisé à remplacer ou supprimer un document")
    with pytest.raises(ValueError):
        mdn_error(999)
