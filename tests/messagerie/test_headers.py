"""X-MSS headers (Référentiel #2 §3.8, reference ``mssante.md`` §4.2) and RFC 5322 checks.

Cases: §4.2 table (values, when present), §7.1 IN-15 (no X-MSS header: accepted) and IN-16
(X-MSS headers: delivered unchanged), §2.4 / §7.4 PAT-4 (``[FIN]`` and ``X-MSS-MES: FIN``).
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage, Message

import pytest

from parcours.messagerie.headers import (
    HeaderIssue,
    HeaderValueError,
    check_message_headers,
    ends_patient_exchange,
    format_codecda,
    has_xdm_attachment,
    parse_codecda,
    parse_ins_flag,
    read_mss_headers,
    smtp_reply_for,
)

BASE = (
    b"From: Dr Elise Martin <elise.martin@chu.mssante.fr>\r\n"
    b"To: dpi@clinique.mssante.fr\r\n"
    b"Subject: XDM/1.0/DDM+CR consultation DUPONT Jean 15/01/1980\r\n"
    b"Date: Fri, 31 May 2024 14:30:00 +0200\r\n"
    b"Message-ID: <cr-42@chu.mssante.fr>\r\n"
)
BODY = (
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="B"\r\n'
    b"\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Bonjour, ci-joint le compte rendu.\r\n"
    b"--B\r\n"
    b"Content-Type: application/zip\r\n"
    b'Content-Disposition: attachment; filename="IHE_XDM.ZIP"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\r\n"
    b"--B--\r\n"
)
PLAIN_BODY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour.\r\n"


def message(extra: bytes = b"", *, base: bytes = BASE, body: bytes = BODY) -> EmailMessage:
    parsed = email.message_from_bytes(base + extra + body, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def codes(issues: list[HeaderIssue]) -> set[tuple[str, str, str]]:
    return {(i.header, i.code, i.severity) for i in issues}


# -- IN-15 / IN-16 -----------------------------------------------------------------------------


def test_in15_message_without_x_mss_headers_is_clean() -> None:
    msg = message(body=PLAIN_BODY)
    assert check_message_headers(msg) == []
    assert check_message_headers(msg, strict_mss=True) == []
    assert smtp_reply_for(check_message_headers(msg)) is None


def test_in16_x_mss_headers_are_accepted_and_left_unchanged() -> None:
    raw = BASE + b"X-MSS-CODECDA: 11488-4\r\nX-MSS-INS: O\r\nX-MSS-NIL: DEV935997\r\n" + BODY
    msg = email.message_from_bytes(raw, policy=policy.default)
    before = msg.as_bytes()

    assert check_message_headers(msg, strict_mss=True) == []
    assert msg.as_bytes() == before
    assert msg["X-MSS-CODECDA"] == "11488-4" and msg["X-MSS-INS"] == "O"
    assert read_mss_headers(msg).codecda == ("11488-4",)
    assert read_mss_headers(msg).ins_qualified is True
    assert read_mss_headers(msg).nil == "DEV935997"


def test_legacy_message_objects_are_checked_too() -> None:
    msg = email.message_from_bytes(BASE + b"X-MSS-INS: peut-etre\r\n" + BODY)
    assert isinstance(msg, Message)
    assert ("X-MSS-INS", "invalid_value", "warning") in codes(check_message_headers(msg))


# -- the X-MSS values (§4.2) -------------------------------------------------------------------


def test_codecda_values() -> None:
    assert parse_codecda("11488-4") == ("11488-4",)
    assert parse_codecda("34112-3,PRESC-BIO") == ("34112-3", "PRESC-BIO")
    assert parse_codecda(" 34112-3 , CERT_DECL ") == ("34112-3", "CERT_DECL")
    assert parse_codecda("34112-3;EXPPAT_1") == ("34112-3", "EXPPAT_1")
    assert format_codecda(["34112-3", "PRESC-BIO", "34112-3"]) == "34112-3,PRESC-BIO"
    for bad in ("", " , ", "11488-4,<script>", "code avec é"):
        with pytest.raises(HeaderValueError):
            parse_codecda(bad)


def test_ins_flag_values() -> None:
    assert parse_ins_flag("O") is True
    assert parse_ins_flag(" N ") is False
    for bad in ("o", "OUI", "1", "", "Y"):
        with pytest.raises(HeaderValueError) as caught:
            parse_ins_flag(bad)
        assert caught.value.code == "invalid_value"


@pytest.mark.parametrize("value", [b"X", b"oui", b"ON", b""])
def test_ins_with_another_value(value: bytes) -> None:
    msg = message(b"X-MSS-CODECDA: 11488-4\r\nX-MSS-INS: " + value + b"\r\n")
    lenient = check_message_headers(msg)
    assert ("X-MSS-INS", "invalid_value", "warning") in codes(lenient)
    assert smtp_reply_for(lenient) is None  # the operator delivers (IN-15/IN-16 stance)

    strict = check_message_headers(msg, strict_mss=True)
    issue = next(i for i in strict if i.header == "X-MSS-INS")
    assert issue.severity == "error" and issue.enhanced_status == "5.6.0"
    reply = smtp_reply_for(strict)
    assert reply is not None and reply[0] == 554
    assert reply[1].startswith("5.6.0 ") and "X-MSS-INS" in reply[1] and reply[1].isascii()


def test_codecda_without_xdm_attachment() -> None:
    msg = message(b"X-MSS-CODECDA: 11488-4\r\nX-MSS-INS: O\r\n", body=PLAIN_BODY)
    assert ("X-MSS-CODECDA", "without_xdm", "warning") in codes(check_message_headers(msg))
    assert ("X-MSS-CODECDA", "without_xdm", "error") in codes(
        check_message_headers(msg, strict_mss=True)
    )


def test_xdm_attachment_name_is_case_insensitive() -> None:
    body = BODY.replace(b"IHE_XDM.ZIP", b"IHE_XDM.zip")
    msg = message(b"X-MSS-CODECDA: 11488-4\r\nX-MSS-INS: N\r\n", body=body)
    assert has_xdm_attachment(msg)
    assert check_message_headers(msg, strict_mss=True) == []


def test_codecda_and_ins_go_together() -> None:
    only_code = check_message_headers(message(b"X-MSS-CODECDA: 11488-4\r\n"))
    assert ("X-MSS-INS", "missing", "warning") in codes(only_code)
    only_ins = check_message_headers(message(b"X-MSS-INS: O\r\n"))
    assert ("X-MSS-INS", "without_codecda", "warning") in codes(only_ins)


def test_codecda_separator_other_than_comma_is_read_with_a_warning() -> None:
    msg = message(b"X-MSS-CODECDA: 34112-3; PRESC-BIO\r\nX-MSS-INS: O\r\n")
    issues = check_message_headers(msg, strict_mss=True)
    assert codes(issues) == {("X-MSS-CODECDA", "separator", "warning")}
    assert read_mss_headers(msg).codecda == ("34112-3", "PRESC-BIO")


def test_malformed_codecda() -> None:
    msg = message(b"X-MSS-CODECDA: 11488-4,<b>\r\nX-MSS-INS: O\r\n")
    assert ("X-MSS-CODECDA", "invalid_code", "warning") in codes(check_message_headers(msg))
    assert read_mss_headers(msg).codecda is None


def test_malformed_nil() -> None:
    msg = message(b"X-MSS-NIL: DEV 935997\r\n")
    assert ("X-MSS-NIL", "invalid_value", "warning") in codes(check_message_headers(msg))


def test_duplicated_x_mss_headers() -> None:
    msg = message(b"X-MSS-CODECDA: 11488-4\r\nX-MSS-INS: O\r\nX-MSS-INS: N\r\n")
    assert ("X-MSS-INS", "duplicate", "warning") in codes(check_message_headers(msg))
    assert ("X-MSS-INS", "duplicate", "error") in codes(check_message_headers(msg, strict_mss=True))


# -- RFC 5322 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [b"From", b"Date"])
def test_missing_from_or_date_is_refused(missing: bytes) -> None:
    base = b"".join(
        line + b"\r\n"
        for line in BASE.split(b"\r\n")
        if line and not line.startswith(missing + b":")
    )
    issues = check_message_headers(message(base=base, body=PLAIN_BODY))
    assert (missing.decode(), "missing", "error") in codes(issues)
    code, text = smtp_reply_for(issues)  # type: ignore[misc]
    assert code == 554 and text.startswith("5.6.0 ")
    assert text.isascii()  # RFC 5321 §4.2: no SMTPUTF8, ASCII replies


def test_missing_message_id_is_a_warning() -> None:
    base = BASE.replace(b"Message-ID: <cr-42@chu.mssante.fr>\r\n", b"")
    issues = check_message_headers(message(base=base, body=PLAIN_BODY))
    assert codes(issues) == {("Message-ID", "missing", "warning")}
    assert issues[0].enhanced_status is None
    assert smtp_reply_for(issues) is None


@pytest.mark.parametrize(
    "extra",
    [
        b"From: Usurpateur <x@ailleurs.mssante.fr>\r\n",
        b"Date: Sat, 1 Jun 2024 08:00:00 +0200\r\n",
        b"Subject: autre objet\r\n",
        b"Message-ID: <autre@chu.mssante.fr>\r\n",
    ],
)
def test_duplicated_rfc5322_fields_are_refused(extra: bytes) -> None:
    name = extra.split(b":")[0].decode()
    issues = check_message_headers(message(extra, body=PLAIN_BODY))
    assert (name, "duplicate", "error") in codes(issues)
    assert issues[0].severity == "error"  # errors come first


def test_several_authors_need_a_sender() -> None:
    base = BASE.replace(
        b"From: Dr Elise Martin <elise.martin@chu.mssante.fr>",
        b"From: elise.martin@chu.mssante.fr, yann.legall@chu.mssante.fr",
    )
    assert ("From", "sender_required", "error") in codes(
        check_message_headers(message(base=base, body=PLAIN_BODY))
    )
    with_sender = base + b"Sender: elise.martin@chu.mssante.fr\r\n"
    assert check_message_headers(message(base=with_sender, body=PLAIN_BODY)) == []


def test_unreadable_date_is_a_warning() -> None:
    base = BASE.replace(b"Fri, 31 May 2024 14:30:00 +0200", b"hier soir")
    assert codes(check_message_headers(message(base=base, body=PLAIN_BODY))) == {
        ("Date", "invalid", "warning")
    }


# -- [FIN] and X-MSS-MES (§2.4, PAT-4) ---------------------------------------------------------


def _with_subject(subject: bytes, extra: bytes = b"") -> EmailMessage:
    base = BASE.replace(
        b"Subject: XDM/1.0/DDM+CR consultation DUPONT Jean 15/01/1980", b"Subject: " + subject
    )
    return message(extra, base=base, body=PLAIN_BODY)


@pytest.mark.parametrize(
    ("subject", "closes"),
    [
        (b"[FIN]", True),
        (b"  [FIN]  ", True),
        (b"=?utf-8?q?=5BFIN=5D?=", True),
        (b"[fin]", False),
        (b"[FIN] merci", False),
        (b"Re: [FIN]", False),
        (b"FIN", False),
    ],
)
def test_fin_subject(subject: bytes, closes: bool) -> None:
    assert ends_patient_exchange(_with_subject(subject)) is closes


def test_x_mss_mes_fin() -> None:
    msg = message(b"X-MSS-MES: FIN\r\n", body=PLAIN_BODY)
    assert ends_patient_exchange(msg)
    assert check_message_headers(msg, strict_mss=True) == []
    assert read_mss_headers(msg).mes_fin


def test_x_mss_mes_other_values() -> None:
    lower = message(b"X-MSS-MES: fin\r\n", body=PLAIN_BODY)
    assert ends_patient_exchange(lower)  # the professional meant to close: honour it
    assert ("X-MSS-MES", "invalid_value", "warning") in codes(
        check_message_headers(lower, strict_mss=True)
    )
    other = message(b"X-MSS-MES: NON\r\n", body=PLAIN_BODY)
    assert not ends_patient_exchange(other)
    assert ("X-MSS-MES", "invalid_value", "error") in codes(
        check_message_headers(other, strict_mss=True)
    )


def test_ordinary_message_does_not_close() -> None:
    assert not ends_patient_exchange(message(body=PLAIN_BODY))
