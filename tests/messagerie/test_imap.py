"""The IMAP server against Python's own client (imaplib) over real TLS.

Every FETCH item is checked against the exact bytes and against the ``email`` package's
reading of the same message, so BODYSTRUCTURE and BODY[section] agree with an independent MIME
parser. Security rules (no credential before TLS, token-only LOGIN, EXTERNAL with a client
certificate, three failures close the connection, mailbox isolation, encryption at rest) each
have a test.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import imaplib
import json
import re
import socket
import ssl
import threading
import time
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest

from parcours.messagerie.imap import encode_mailbox
from parcours.storage.crypto import DecryptionError
from tests.messagerie.imap_fixtures import (
    ALICE,
    APP,
    BOB,
    EXPIRED,
    ImapEnv,
    ImapFactory,
    Raw,
    client_context,
    fetch,
    imap_env_fixture,  # noqa: F401  (fixture "imap_env")
    imap_factory_fixture,  # noqa: F401  (fixture "imap_factory")
    parse_data,
)

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def sample_message() -> tuple[bytes, EmailMessage]:
    """multipart/mixed [ multipart/alternative [text/plain (QP, accents), text/html],
    application/pdf (base64), message/rfc822 ]."""
    msg = EmailMessage()
    msg["From"] = "Dr Alice Martin <alice.martin@hopital-test.mssante.fr>"
    msg["To"] = "Bob Durand <bob.durand@cabinet-test.mssante.fr>, sec@cabinet-test.mssante.fr"
    msg["Cc"] = "labo@labo-test.mssante.fr"
    msg["Subject"] = "Compte rendu de consultation"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    msg["Message-ID"] = "<cr-123@hopital-test.mssante.fr>"
    msg["In-Reply-To"] = "<q-1@cabinet-test.mssante.fr>"
    msg.set_content("Bonjour Hélène,\nle compte rendu est joint.\n", cte="quoted-printable")
    msg.add_alternative("<p>Bonjour H&eacute;l&egrave;ne</p>\n", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="cr.pdf")
    inner = EmailMessage()
    inner["From"] = "labo@labo-test.mssante.fr"
    inner["Subject"] = "Résultat transmis"
    inner["Message-ID"] = "<inner-1@labo-test.mssante.fr>"
    inner.set_content("Résultat normal.\n", cte="quoted-printable")
    msg.add_attachment(inner)
    raw = msg.as_bytes(policy=email.policy.SMTP)
    return raw, email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def simple(subject: str, body: str = "Texte.\n", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.get("From", "Dr Alice Martin <alice.martin@hopital-test.mssante.fr>")
    msg["To"] = headers.get("To", "bob.durand@cabinet-test.mssante.fr")
    msg["Subject"] = subject
    msg["Message-ID"] = headers.get("Message_ID", email.utils.make_msgid(domain="test.fr"))
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def error_text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode() if isinstance(arg, bytes) else str(arg)


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str) -> bytes:
    return f"n,a={user},\x01host=127.0.0.1\x01port=993\x01auth=Bearer {token}\x01\x01".encode()


def select(imap: imaplib.IMAP4, folder: str = "INBOX") -> int:
    typ, data = imap.select(folder)
    assert typ == "OK", data
    return int(data[0])


# -- transport and authentication --------------------------------------------------------------


def test_plain_port_refuses_credentials_before_starttls(imap_env: ImapEnv) -> None:
    imap = imap_env.plain()
    caps = set(imap.capabilities)
    assert {"STARTTLS", "LOGINDISABLED"} <= caps
    assert not any(c.startswith("AUTH=") for c in caps)
    with pytest.raises(imaplib.IMAP4.error) as refused:
        imap.login(ALICE, "tok-alice")
    assert "[PRIVACYREQUIRED]" in error_text(refused.value)
    raw = Raw(imap)
    assert raw.command(
        "AUTHENTICATE XOAUTH2 " + base64.b64encode(xoauth2(ALICE, "tok-alice")).decode()
    )[-1].startswith(b"R1 NO [PRIVACYREQUIRED]")
    assert raw.command("SELECT INBOX")[-1].startswith(b"R2 BAD")  # still not authenticated
    assert imap_env.authenticator.calls == []  # the token never reached the authenticator
    assert not [e for e in imap_env.events if e[0] == "login"]

    imap.starttls(client_context(imap_env.pki))
    caps = set(imap.capabilities)
    assert {"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "SASL-IR"} <= caps
    assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps
    assert "AUTH=EXTERNAL" not in caps  # no client certificate was presented
    # LOGIN with an access token as the password (clients without OAuth support).
    assert imap.login(ALICE, "tok-alice")[0] == "OK"
    assert select(imap) == 0
    imap.logout()


def test_starttls_refuses_pipelined_plaintext(imap_env: ImapEnv) -> None:
    """Commands sent in clear after STARTTLS (one TCP segment) are never executed."""
    with socket.create_connection(("127.0.0.1", imap_env.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # greeting
        sock.sendall(f"a STARTTLS\r\nb LOGIN {ALICE} tok-alice\r\n".encode())
        assert reader.readline().startswith(b"a BAD")
        assert reader.readline() == b""  # closed: the injected LOGIN was never run
    assert imap_env.authenticator.calls == []


def test_implicit_tls_external_with_client_certificate(imap_env: ImapEnv) -> None:
    imap = imap_env.tls(cert=True)
    assert "AUTH=EXTERNAL" in imap.capabilities
    typ, _ = imap.authenticate("EXTERNAL", lambda _challenge: b"")
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"
    assert ("login", APP) in [(k, m) for k, m, _ in imap_env.events]
    assert imap_env.authenticator.calls[-1] == ("certificate", None)
    imap.logout()

    # SASL-IR with an authorisation identity, on a fresh connection.
    imap = imap_env.tls(cert=True)
    lines = Raw(imap).command("AUTHENTICATE EXTERNAL " + base64.b64encode(APP.encode()).decode())
    assert lines[-1].startswith(b"R1 OK")
    assert imap_env.authenticator.calls[-1] == ("certificate", APP)
    imap.logout()

    # Without a certificate: no EXTERNAL advertised, and refused if tried.
    imap = imap_env.tls()
    assert "AUTH=EXTERNAL" not in imap.capabilities
    with pytest.raises(imaplib.IMAP4.error) as refused:
        imap.authenticate("EXTERNAL", lambda _challenge: b"")
    assert "[AUTHENTICATIONFAILED] Aucun certificat client présenté" in error_text(refused.value)
    imap.logout()


def test_client_certificate_from_another_ca_fails_the_handshake(imap_env: ImapEnv) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, imaplib.IMAP4.abort, OSError)):
        imap = imap_env.tls(stranger=True)
        imap.noop()


def test_xoauth2_success_and_failure_with_reason(imap_env: ImapEnv) -> None:
    imap = imap_env.tls()
    typ, data = imap.authenticate("XOAUTH2", lambda _c: xoauth2(BOB, "tok-bob"))
    assert typ == "OK" and b"[CAPABILITY" in data[0]
    assert select(imap) == 0
    imap.logout()

    challenges: list[bytes] = []

    def respond(challenge: bytes) -> bytes:
        challenges.append(challenge)
        return xoauth2(ALICE, EXPIRED) if len(challenges) == 1 else b""

    imap = imap_env.tls()
    with pytest.raises(imaplib.IMAP4.error) as refused:
        imap.authenticate("XOAUTH2", respond)
    text = error_text(refused.value)
    assert text.startswith("[AUTHENTICATIONFAILED] Jeton expiré")
    # Google-style error challenge before the NO.
    assert json.loads(challenges[1]) == {"status": "401", "schemes": "bearer"}
    failed = [d for k, _, d in imap_env.events if k == "login_failed"]
    assert failed and failed[-1]["method"] == "XOAUTH2"
    assert all(EXPIRED not in str(v) for d in failed for v in d.values())
    imap.logout()


def test_oauthbearer_continuation_and_sasl_ir(imap_env: ImapEnv) -> None:
    imap = imap_env.tls()
    assert imap.authenticate("OAUTHBEARER", lambda _c: oauthbearer(ALICE, "tok-alice"))[0] == "OK"
    imap.logout()

    # SASL-IR (RFC 4959): the initial response in the command itself.
    imap = imap_env.tls()
    raw = Raw(imap)
    encoded = base64.b64encode(oauthbearer(ALICE, "tok-alice")).decode()
    assert raw.command(f"AUTHENTICATE OAUTHBEARER {encoded}")[-1].startswith(b"R1 OK [CAPABILITY")
    assert raw.command("SELECT INBOX")[-1].startswith(b"R2 OK [READ-WRITE]")
    imap.logout()

    # Failure: RFC 7628 §3.2.2 error challenge, the client's %x01, then NO.
    imap = imap_env.tls()
    raw = Raw(imap)
    bad = base64.b64encode(oauthbearer(ALICE, "tok-bob")).decode()
    raw.send(f"A1 AUTHENTICATE OAUTHBEARER {bad}\r\n".encode())
    challenge = raw.line()
    assert challenge.startswith(b"+ ")
    assert json.loads(base64.b64decode(challenge[2:]))["status"] == "invalid_token"
    raw.send(base64.b64encode(b"\x01") + b"\r\n")
    answer = raw.line().decode()
    assert answer == (
        "A1 NO [AUTHENTICATIONFAILED] Le jeton ne correspond pas à cette boîte aux lettres"
    )
    imap.logout()


def test_three_failures_close_the_connection(imap_env: ImapEnv) -> None:
    imap = imap_env.tls()
    for _ in range(3):
        with pytest.raises(imaplib.IMAP4.error) as refused:
            imap.login(ALICE, "tok-wrong")
        assert "[AUTHENTICATIONFAILED] Jeton inconnu ou révoqué" in error_text(refused.value)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        imap.noop()
    assert len([e for e in imap_env.events if e[0] == "login_failed"]) == 3


def test_unknown_mechanism_and_state_errors(imap_env: ImapEnv) -> None:
    imap = imap_env.tls()
    raw = Raw(imap)
    assert raw.command("AUTHENTICATE PLAIN")[-1].startswith(b"R1 NO")
    assert raw.command("FETCH 1 FLAGS")[-1].startswith(b"R2 BAD")
    assert raw.command("FOO")[-1].startswith(b"R3 BAD Commande inconnue")
    assert raw.command("LOGIN")[-1].startswith(b"R4 BAD")
    assert raw.command('LOGIN "a" "tok-alice"')[-1].startswith(b"R5 NO [AUTHENTICATIONFAILED]")
    assert raw.command(f'LOGIN "{ALICE}" "tok-alice"')[-1].startswith(b"R6 OK")
    assert raw.command("FETCH 1 FLAGS")[-1].startswith(b"R7 BAD Aucun dossier")
    assert raw.command("SELECT Inexistant")[-1].startswith(b"R8 NO [NONEXISTENT]")
    assert raw.command("SELECT INBOX")[-1].startswith(b"R9 OK")
    assert raw.command("FETCH 1 FLAGS")[-1].startswith(b"R10 BAD")  # empty folder: no message 1
    assert raw.command('LOGIN "a" "b"')[-1].startswith(b"R11 BAD")  # already authenticated
    assert raw.command("FETCH 1:* (FOO)")[-1].startswith(b"R12 BAD")
    imap.logout()


# -- FETCH --------------------------------------------------------------------------------------


def test_append_then_fetch_every_item(imap_env: ImapEnv) -> None:
    raw_msg, parsed = sample_message()
    imap = imap_env.login()
    typ, data = imap.append("INBOX", r"(\Flagged $Urgent)", '"23-Nov-2026 10:15:30 +0100"', raw_msg)
    assert typ == "OK"
    m = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m and int(m.group(2)) == 1
    assert select(imap) == 1

    got = fetch(imap, "1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")[1]
    assert got["UID"] == "1"
    assert set(got["FLAGS"]) == {"\\Flagged", "$Urgent"}
    assert got["INTERNALDATE"] == b"23-Nov-2026 09:15:30 +0000"
    assert int(got["RFC822.SIZE"]) == len(raw_msg)

    header, _, body = raw_msg.partition(b"\r\n\r\n")
    got = fetch(imap, "1", "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")[1]
    assert got["BODY[]"] == raw_msg
    assert got["BODY[HEADER]"] == header + b"\r\n\r\n"
    assert got["BODY[TEXT]"] == body

    got = fetch(
        imap,
        "1",
        "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])",
    )[1]
    assert got["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        f"From: {parsed['From']}\r\nSubject: {parsed['Subject']}\r\n\r\n".encode()
    )
    assert b"Subject:" not in got["BODY[HEADER.FIELDS.NOT (SUBJECT)]"]
    assert b"Message-ID: <cr-123@" in got["BODY[HEADER.FIELDS.NOT (SUBJECT)]"]

    alternative, pdf_part, rfc822_part = parsed.get_payload()  # type: ignore[misc]
    plain, html = alternative.get_payload()
    inner = rfc822_part.get_payload()[0]
    got = fetch(
        imap,
        "1",
        "(BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[3] "
        "BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BODY.PEEK[4])",
    )[1]
    assert got["BODY[1.1]"].decode() == plain.get_payload()
    assert got["BODY[1.2]"].decode() == html.get_payload()
    assert base64.b64decode(got["BODY[2]"]) == pdf_part.get_content() == PDF
    mime = got["BODY[2.MIME]"]
    assert mime.startswith(b"Content-Type: application/pdf\r\n") and mime.endswith(b"\r\n\r\n")
    assert b'filename="cr.pdf"' in mime
    reparsed = email.message_from_bytes(got["BODY[3]"], policy=email.policy.default)
    assert reparsed["Subject"] == inner["Subject"] == "Résultat transmis"
    assert got["BODY[3.HEADER]"] == got["BODY[3]"].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert got["BODY[3.TEXT]"] == got["BODY[3.1]"] == got["BODY[3]"].partition(b"\r\n\r\n")[2]
    crlf = [m.get_content().replace("\r\n", "\n") for m in (reparsed, inner)]
    assert crlf == ["Résultat normal.\n"] * 2
    assert got["BODY[4]"] is None  # no such part

    # Partial fetches <origin.length>.
    got = fetch(imap, "1", "(BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.20> BODY.PEEK[1.1]<10000.5>)")[1]
    assert got["BODY[]<0>"] == raw_msg[:10]
    assert got["BODY[TEXT]<5>"] == body[5:25]
    assert got["BODY[1.1]<10000>"] == b""

    got = fetch(imap, "1", "(RFC822.HEADER)")[1]
    assert got["RFC822.HEADER"] == header + b"\r\n\r\n"
    assert "\\Seen" not in fetch(imap, "1", "FLAGS")[1]["FLAGS"]  # nothing so far set \Seen

    # ENVELOPE: compared with the email package's reading of the same headers.
    env = fetch(imap, "1", "ENVELOPE")[1]["ENVELOPE"]
    assert env[0] == parsed["Date"].encode()
    assert env[1] == parsed["Subject"].encode()
    expected_from = email.utils.getaddresses([parsed["From"]])
    assert [(a[0].decode(), a[2].decode() + "@" + a[3].decode()) for a in env[2]] == expected_from
    assert env[3] == env[2] and env[4] == env[2]  # sender and reply-to default to from
    to = [(a[0], a[2].decode() + "@" + a[3].decode()) for a in env[5]]
    assert to == [
        (b"Bob Durand", "bob.durand@cabinet-test.mssante.fr"),
        (None, "sec@cabinet-test.mssante.fr"),
    ]
    assert env[6][0][2:] == [b"labo", b"labo-test.mssante.fr"]
    assert env[7] is None
    assert env[8] == b"<q-1@cabinet-test.mssante.fr>"
    assert env[9] == b"<cr-123@hopital-test.mssante.fr>"

    # BODYSTRUCTURE and BODY.
    got = fetch(imap, "1", "(BODYSTRUCTURE BODY)")[1]
    bs = got["BODYSTRUCTURE"]
    alt, pdf, message = bs[0], bs[1], bs[2]
    assert bs[3] == b"mixed" and bs[4][0] == b"boundary"
    assert alt[2] == b"alternative"
    text_part = alt[0]
    assert text_part[:2] == [b"text", b"plain"]
    assert text_part[2] == [b"charset", b"utf-8"]
    assert text_part[5] == b"quoted-printable"
    assert int(text_part[6]) == len(plain.get_payload().encode())
    assert int(text_part[7]) == plain.get_payload().count("\n")
    assert alt[1][:2] == [b"text", b"html"]
    assert pdf[:2] == [b"application", b"pdf"] and pdf[5] == b"base64"
    assert int(pdf[6]) == len(pdf_part.get_payload().encode())
    assert pdf[8] == [b"attachment", [b"filename", b"cr.pdf"]]  # disposition
    assert message[:2] == [b"message", b"rfc822"]
    inner_subject = str(make_header(decode_header(message[7][1].decode())))
    assert inner_subject == inner["Subject"] == "Résultat transmis"  # ENVELOPE of the part
    assert message[8][:2] == [b"text", b"plain"]  # the encapsulated message's structure
    simple_body = got["BODY"]
    assert len(simple_body[1]) == 7 and simple_body[3] == b"mixed"  # BODY: no extension data

    assert "\\Seen" not in fetch(imap, "1", "FLAGS")[1]["FLAGS"]
    # BODY[] without PEEK sets \Seen and reports the new flags (RFC 3501 §6.4.5).
    got = fetch(imap, "1", "BODY[1.1]")[1]
    assert "\\Seen" in got["FLAGS"]
    assert fetch(imap, "1", "RFC822")[1]["RFC822"] == raw_msg
    got = fetch(imap, "1", "RFC822.TEXT")[1]
    assert got["RFC822.TEXT"] == body

    # Macros.
    assert set(fetch(imap, "1", "FAST")[1]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}
    assert set(fetch(imap, "1", "ALL")[1]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}
    reads = [d for k, _, d in imap_env.events if k == "read"]
    assert reads and reads[0] == {
        "folder": "INBOX",
        "uid": 1,
        "message_id": "<cr-123@hopital-test.mssante.fr>",
    }
    imap.logout()


def test_single_part_message_sections(imap_env: ImapEnv) -> None:
    raw_msg = simple("Ordonnance", "Une ligne.\nDeux lignes.\n")
    imap_env.store.deliver(ALICE, raw_msg)
    imap = imap_env.login()
    select(imap)
    body = raw_msg.partition(b"\r\n\r\n")[2]
    got = fetch(imap, "1", "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODYSTRUCTURE)")[1]
    assert got["BODY[1]"] == body  # part 1 of a non-multipart message is its body
    assert got["BODY[1.MIME]"] == raw_msg.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    bs = got["BODYSTRUCTURE"]
    assert bs[:3] == [b"text", b"plain", [b"charset", b"utf-8"]]
    assert int(bs[6]) == len(body) and int(bs[7]) == 2
    imap.logout()


def test_bare_lf_message_is_served_with_crlf(imap_env: ImapEnv) -> None:
    imap_env.store.deliver(ALICE, b"Subject: lf\nFrom: a@b.fr\n\nline\n")
    imap = imap_env.login()
    select(imap)
    got = fetch(imap, "1", "(RFC822.SIZE BODY.PEEK[])")[1]
    assert got["BODY[]"] == b"Subject: lf\r\nFrom: a@b.fr\r\n\r\nline\r\n"
    assert int(got["RFC822.SIZE"]) == len(got["BODY[]"])
    imap.logout()


# -- flags ---------------------------------------------------------------------------------------


def test_store_flags_and_examine_is_read_only(imap_env: ImapEnv) -> None:
    for i in range(3):
        imap_env.store.deliver(ALICE, simple(f"m{i}"))
    imap = imap_env.login()
    select(imap)
    typ, data = imap.store("1:2", "+FLAGS", r"(\Flagged $Suivi)")
    assert typ == "OK"
    assert [re.sub(rb"\s+", b" ", d) for d in data] == [
        b"1 (FLAGS (\\Flagged $Suivi))",
        b"2 (FLAGS (\\Flagged $Suivi))",
    ]
    typ, data = imap.store("1", "-FLAGS.SILENT", r"(\Flagged)")
    assert typ == "OK" and data == [None]  # .SILENT: no untagged FETCH
    typ, data = imap.store("3", "FLAGS", r"(\Answered \Draft)")
    assert data == [b"3 (FLAGS (\\Answered \\Draft))"]
    flags = {seq: set(v["FLAGS"]) for seq, v in fetch(imap, "1:3", "FLAGS").items()}
    assert flags == {1: {"$Suivi"}, 2: {"\\Flagged", "$Suivi"}, 3: {"\\Answered", "\\Draft"}}
    typ, data = imap.uid("STORE", "2", "+FLAGS", r"(\Seen)")
    assert data == [b"2 (UID 2 FLAGS (\\Flagged \\Seen $Suivi))"]
    raw = Raw(imap)
    assert raw.command("STORE 1 +FLAGS (\\Bogus)")[-1].startswith(b"R1 BAD")
    assert raw.command("STORE 9 +FLAGS (\\Seen)")[-1].startswith(b"R2 BAD")
    # The keyword shows in FLAGS and PERMANENTFLAGS on the next SELECT.
    lines = raw.command("SELECT INBOX")
    assert any(b"* FLAGS (" in line and b"$Suivi" in line for line in lines)
    assert any(b"PERMANENTFLAGS (" in line and b"\\*" in line for line in lines)
    assert any(b"[UNSEEN 1]" in line for line in lines)

    typ, data = imap.select("INBOX", readonly=True)
    assert typ == "OK"
    lines = raw.command("STORE 1 +FLAGS (\\Deleted)")
    assert lines[-1].startswith(b"R4 NO")
    got = fetch(imap, "1", "BODY[]")[1]  # no \Seen in read-only mode
    assert "FLAGS" not in got
    assert "\\Seen" not in fetch(imap, "1", "FLAGS")[1]["FLAGS"]
    assert raw.command("EXPUNGE")[-1].startswith(b"R5 NO")
    imap.logout()


# -- COPY / MOVE / EXPUNGE -----------------------------------------------------------------------


def test_expunge_copy_move_renumber(imap_env: ImapEnv) -> None:
    for i in range(1, 6):
        imap_env.store.deliver(ALICE, simple(f"message {i}"))
    imap = imap_env.login()
    select(imap)
    raw = Raw(imap)
    imap.store("2,4", "+FLAGS.SILENT", r"(\Deleted)")
    lines = raw.command("EXPUNGE")
    assert lines == [b"* 4 EXPUNGE", b"* 2 EXPUNGE", lines[-1]]  # descending: numbers stay valid
    seqs = {seq: int(v["UID"]) for seq, v in fetch(imap, "1:*", "UID").items()}
    assert seqs == {1: 1, 2: 3, 3: 5}
    deletes = [d for k, _, d in imap_env.events if k == "delete"]
    assert deletes[-1]["uids"] == [2, 4] and deletes[-1]["folder"] == "INBOX"

    status = imap.status("Trash", "(UIDVALIDITY UIDNEXT MESSAGES)")[1][0]
    validity = int(re.search(rb"UIDVALIDITY (\d+)", status).group(1))  # type: ignore[union-attr]
    typ, data = imap.copy("1:2", "Trash")
    assert typ == "OK"
    assert data[0].startswith(f"[COPYUID {validity} 1,3 1:2]".encode())
    assert select(imap) == 3  # COPY leaves the source alone

    lines = raw.command("MOVE 2 Trash")
    assert lines[0] == f"* OK [COPYUID {validity} 3 3] Messages déplacés".encode()
    assert lines[1] == b"* 2 EXPUNGE"
    assert lines[2].startswith(b"R2 OK MOVE")
    lines = raw.command("UID MOVE 5 Trash")
    assert lines[0].startswith(f"* OK [COPYUID {validity} 5 4]".encode())
    assert lines[1] == b"* 2 EXPUNGE"
    assert fetch(imap, "1:*", "UID") == {1: {"UID": "1"}}
    moves = [d for k, _, d in imap_env.events if k == "move"]
    assert moves[-1] == {"from": "INBOX", "to": "Trash", "uids": [[5, 4]]}

    lines = raw.command("COPY 1 Nulle-part")
    assert lines[-1].startswith(b"R4 NO [TRYCREATE]")
    lines = raw.command("UID COPY 1 Trash")
    assert lines[-1].startswith(f"R5 OK [COPYUID {validity} 1 5]".encode())

    assert select(imap, "Trash") == 5
    subjects = {
        seq: v["BODY[HEADER.FIELDS (SUBJECT)]"].strip()
        for seq, v in fetch(imap, "1:*", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]").items()
    }
    assert subjects == {
        1: b"Subject: message 1",
        2: b"Subject: message 3",
        3: b"Subject: message 3",
        4: b"Subject: message 5",
        5: b"Subject: message 1",
    }
    # UID EXPUNGE (RFC 4315 §2.1) removes only the listed UIDs among the \Deleted ones.
    imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
    lines = raw.command("UID EXPUNGE 2:3")  # R6
    assert lines[:2] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert [int(v["UID"]) for v in fetch(imap, "1:*", "UID").values()] == [1, 4, 5]
    # CLOSE expunges silently.
    lines = raw.command("CLOSE")
    assert lines == [lines[-1]] and lines[-1].startswith(b"R7 OK")
    assert imap.status("Trash", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 0)")
    imap.logout()


def test_other_session_changes_reach_a_selected_session(imap_env: ImapEnv) -> None:
    for i in range(3):
        imap_env.store.deliver(ALICE, simple(f"m{i}"))
    first, second = imap_env.login(), imap_env.login()
    select(first)
    select(second)
    second.store("2", "+FLAGS.SILENT", r"(\Deleted \Flagged)")
    second.expunge()
    raw = Raw(first)
    # FETCH must not announce the expunge (RFC 3501 §7.4.1); the message keeps its number.
    lines = raw.command("FETCH 3 UID")
    assert not any(b"EXPUNGE" in line for line in lines)
    assert lines[-2] == b"* 3 FETCH (UID 3)"
    lines = raw.command("NOOP")
    assert b"* 2 EXPUNGE" in lines
    imap_env.store.deliver(ALICE, simple("nouveau"))
    lines = raw.command("NOOP")
    assert b"* 3 EXISTS" in lines
    second.store("1", "+FLAGS.SILENT", r"(\Seen)")
    lines = raw.command("NOOP")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Seen))" in lines
    first.logout()
    second.logout()


# -- SEARCH -------------------------------------------------------------------------------------


def test_search_criteria(imap_env: ImapEnv) -> None:
    imap = imap_env.login()
    cases = [
        (simple("Compte rendu", "Tension normale.\n"), r"(\Seen)", '"01-Nov-2026 08:00:00 +0000"'),
        (
            simple(
                "=?utf-8?q?R=C3=A9sultats_biologie?=",
                "Glycémie élevée.\n",
                From="Labo <labo@labo-test.mssante.fr>",
            ),
            r"(\Flagged)",
            '"10-Nov-2026 12:00:00 +0000"',
        ),
        (
            simple("Rendez-vous", "x" * 5000 + "\n", To="sec@cabinet-test.mssante.fr"),
            r"(\Answered)",
            '"20-Nov-2026 23:30:00 +0000"',
        ),
        (simple("Suppression", "Vieux.\n"), r"(\Deleted \Seen)", '"20-Nov-2026 00:10:00 +0000"'),
    ]
    for message, flags, when in cases:
        assert imap.append("INBOX", flags, when, message)[0] == "OK"
    select(imap)

    def search(*criteria: str, uid: bool = False) -> list[int]:
        typ, data = imap.uid("SEARCH", *criteria) if uid else imap.search(None, *criteria)
        assert typ == "OK", data
        return [int(x) for x in data[0].split()]

    assert search("ALL") == [1, 2, 3, 4]
    assert search("SEEN") == [1, 4]
    assert search("UNSEEN") == [2, 3]
    assert search("FLAGGED") == [2]
    assert search("DELETED") == [4]
    assert search("UNDELETED") == [1, 2, 3]
    assert search("ANSWERED") == [3]
    assert search("2:3") == [2, 3]
    assert search("UID", "3:*") == [3, 4]
    assert search("UID", "3:*", uid=True) == [3, 4]
    assert search("FROM", "labo-test") == [2]
    assert search("TO", "SEC@cabinet") == [3]
    assert search("SUBJECT", "rendu") == [1]
    assert search("SUBJECT", "resultats") == []  # accents matter, case does not
    assert search("BODY", "tension") == [1]
    assert search("TEXT", "rendez") == [3]
    assert search("SINCE", "10-Nov-2026") == [2, 3, 4]
    assert search("BEFORE", "10-Nov-2026") == [1]
    assert search("ON", "20-Nov-2026") == [3, 4]
    assert search("LARGER", "3000") == [3]
    assert search("SMALLER", "3000") == [1, 2, 4]
    assert search("NOT", "SEEN") == [2, 3]
    assert search("OR", "FLAGGED", "ANSWERED") == [2, 3]
    assert search("(OR SEEN FLAGGED)", "UNDELETED") == [1, 2]
    assert search("HEADER", "Message-ID", '""') == [1, 2, 3, 4]
    # A UTF-8 search string sent as a literal matches the RFC 2047 encoded subject.
    imap.literal = "RÉSULTATS".encode()
    typ, data = imap.search("UTF-8", "SUBJECT")
    assert typ == "OK" and data[0].split() == [b"2"]
    imap.literal = "glycémie".encode()
    typ, data = imap.uid("SEARCH", "CHARSET", "UTF-8", "BODY")
    assert typ == "OK" and data[0].split() == [b"2"]
    raw = Raw(imap)
    assert raw.command("SEARCH CHARSET KOI8-R ALL")[-1].startswith(b"R1 NO [BADCHARSET")
    assert raw.command("SEARCH FOO")[-1].startswith(b"R2 BAD")
    imap.logout()


# -- folders --------------------------------------------------------------------------------------


def list_names(imap: imaplib.IMAP4, pattern: str = "*", verb: str = "LIST") -> dict[str, set[str]]:
    typ, data = imap.list('""', pattern) if verb == "LIST" else imap.lsub('""', pattern)
    assert typ == "OK", data
    out = {}
    for line in data:
        if line is None:
            continue
        attrs, _, name = parse_data(b"(" + line + b")")[0]
        out[name.decode() if isinstance(name, bytes) else name] = set(attrs)
    return out


def test_folders_create_rename_delete_list(imap_env: ImapEnv) -> None:
    imap = imap_env.login()
    listed = list_names(imap)
    assert listed == {
        "INBOX": {"\\HasNoChildren"},
        "Drafts": {"\\HasNoChildren", "\\Drafts"},
        "Junk": {"\\HasNoChildren", "\\Junk"},
        "Sent": {"\\HasNoChildren", "\\Sent"},
        "Trash": {"\\HasNoChildren", "\\Trash"},
    }
    assert imap.create("Projets/Cardio")[0] == "OK"  # the parent is created too
    assert imap.create("R&AOk-sultats")[0] == "OK"  # "Résultats" in modified UTF-7
    typ, data = imap.create("Projets")
    assert typ == "NO" and data[0].startswith(b"[ALREADYEXISTS]")
    listed = list_names(imap)
    assert listed["Projets"] == {"\\HasChildren"}
    assert listed["Projets/Cardio"] == {"\\HasNoChildren"}
    assert "R&AOk-sultats" in listed
    top = {"INBOX", "Drafts", "Junk", "Sent", "Trash", "Projets", "R&AOk-sultats"}
    assert set(list_names(imap, "%")) == top
    assert set(list_names(imap, "Projets/%")) == {"Projets/Cardio"}
    assert set(list_names(imap, "inbox")) == {"INBOX"}
    raw = Raw(imap)
    assert raw.command('LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'
    special = raw.command('LIST (SPECIAL-USE) "" "*"')
    assert len(special) == 5 and b"\\Sent" in special[2]

    imap_env.store.deliver(ALICE, simple("dans projets"), folder="Projets/Cardio")
    typ, data = imap.rename("Projets", "Archives/Projets")
    assert typ == "OK", data
    listed = list_names(imap)
    assert "Projets" not in listed and "Projets/Cardio" not in listed
    assert {"Archives", "Archives/Projets", "Archives/Projets/Cardio"} <= set(listed)
    assert select(imap, "Archives/Projets/Cardio") == 1
    typ, data = imap.rename("Inexistant", "X")
    assert typ == "NO" and data[0].startswith(b"[NONEXISTENT]")

    status = imap.status("R&AOk-sultats", "(MESSAGES UNSEEN UIDNEXT)")[1][0]
    assert status == b'"R&AOk-sultats" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)'

    assert imap.subscribe("R&AOk-sultats")[0] == "OK"
    assert imap.unsubscribe("Junk")[0] == "OK"
    subscribed = list_names(imap, verb="LSUB")
    assert "Junk" not in subscribed and "R&AOk-sultats" in subscribed

    typ, data = imap.delete("INBOX")
    assert typ == "NO"
    assert imap.delete("Archives/Projets/Cardio")[0] == "OK"
    assert "Archives/Projets/Cardio" not in list_names(imap)
    typ, data = imap.select("Archives/Projets/Cardio")
    assert typ == "NO" and data[0].startswith(b"[NONEXISTENT]")
    # Deleting a parent keeps its children; the parent then lists as \Noselect.
    imap.create("A/B")
    imap.delete("A")
    listed = list_names(imap)
    assert listed["A"] == {"\\Noselect", "\\HasChildren"} and "A/B" in listed

    assert raw.command("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert raw.command('ID ("name" "test")')[0].startswith(b'* ID ("name" "parcours"')
    # Deleting the folder this session has selected leaves the selected state, said so.
    imap.create("Temp")
    raw.command("SELECT Temp")
    assert raw.command("DELETE Temp")[0] == "* OK [CLOSED] Dossier sélectionné fermé".encode()
    assert raw.command("FETCH 1:* FLAGS")[-1].startswith(b"R7 BAD Aucun dossier")
    assert raw.command('CREATE "bad*name"')[-1].startswith(b"R8 NO")
    imap.logout()


def test_rename_inbox_moves_its_messages(imap_env: ImapEnv) -> None:
    imap_env.store.deliver(ALICE, simple("a"))
    imap_env.store.deliver(ALICE, simple("b"))
    imap = imap_env.login()
    assert imap.rename("INBOX", "INBOX/2025")[0] == "OK"  # RFC 3501 §6.3.5
    assert select(imap, "INBOX") == 0
    assert select(imap, "INBOX/2025") == 2
    imap.logout()


def test_a_mailbox_owner_sees_only_his_folders(imap_env: ImapEnv) -> None:
    imap_env.store.deliver(BOB, simple("pour bob", "Confidentiel bob.\n"))
    private = encode_mailbox("Privé Alice")
    alice = imap_env.login()
    assert alice.create(f'"{private}"')[0] == "OK"
    bob = imap_env.login("tok-bob")
    assert private not in list_names(bob)
    assert private in list_names(alice)
    assert select(alice) == 0  # alice's INBOX does not show bob's message
    assert alice.search(None, "TEXT", "bob")[1] == [b""]
    assert select(bob) == 1
    assert bob.select(f'"{private}"')[0] == "NO"
    assert bob.status(f'"{private}"', "(MESSAGES)")[0] == "NO"
    assert bob.delete(f'"{private}"')[0] == "NO"
    assert private in list_names(alice)
    alice.logout()
    bob.logout()


def test_uidvalidity_and_uidnext_are_stable(imap_env: ImapEnv) -> None:
    imap = imap_env.login()
    raw = Raw(imap)
    first = b" ".join(raw.command("SELECT INBOX"))
    imap.state = "SELECTED"  # selected through the raw connection
    validity = re.search(rb"UIDVALIDITY (\d+)", first).group(1)  # type: ignore[union-attr]
    assert b"[UIDNEXT 1]" in first
    imap_env.store.deliver(ALICE, simple("x"))
    imap_env.store.deliver(ALICE, simple("y"))
    assert b"* 2 EXISTS" in raw.command("NOOP")  # the session learns of them first
    imap.store("1", "+FLAGS.SILENT", r"(\Deleted)")
    imap.expunge()
    again = b" ".join(raw.command("SELECT INBOX"))
    assert re.search(rb"UIDVALIDITY (\d+)", again).group(1) == validity  # type: ignore[union-attr]
    assert b"[UIDNEXT 3]" in again and b"* 1 EXISTS" in again
    imap.logout()


# -- literals, IDLE, limits ----------------------------------------------------------------------


def test_literal_plus_and_synchronising_literals(imap_env: ImapEnv) -> None:
    imap = imap_env.login()
    raw = Raw(imap)
    message = simple("littéral plus")
    raw.send(b"P1 APPEND INBOX (\\Seen) {%d+}\r\n" % len(message) + message + b"\r\n")
    answer = raw.until(b"P1")
    assert answer[-1].startswith(b"P1 OK [APPENDUID ") and answer[-1].split()[4] == b"1]"
    # A synchronising literal waits for "+ Ready"; a quoted/literal mix in LOGIN-style args.
    raw.send(b"P2 APPEND INBOX {%d}\r\n" % len(message))
    assert raw.line() == b"+ Ready"
    raw.send(message + b"\r\n")
    assert raw.until(b"P2")[-1].startswith(b"P2 OK [APPENDUID ")
    raw.send(b"P3 CREATE {7+}\r\nDossier\r\n")
    assert raw.until(b"P3")[-1].startswith(b"P3 OK")
    assert "Dossier" in list_names(imap)
    # A literal far larger than the stream buffer limit (64 KiB) goes through whole.
    big = simple("gros", ("0123456789" * 10 + "\n") * 20_000)
    assert len(big) > 2_000_000
    assert imap.append("INBOX", None, None, big)[0] == "OK"
    assert select(imap) == 3
    assert fetch(imap, "3", "BODY.PEEK[]")[3]["BODY[]"] == big
    assert fetch(imap, "1", "BODY.PEEK[]")[1]["BODY[]"] == message
    assert set(fetch(imap, "1", "FLAGS")[1]["FLAGS"]) == {"\\Seen"}
    imap.logout()


def test_literal_over_the_maximum_is_refused(imap_factory: ImapFactory) -> None:
    env = imap_factory(max_literal=10_000)
    imap = env.login()
    assert "APPENDLIMIT=10000" in imap.capabilities  # RFC 7889, from the greeting
    raw = Raw(imap)
    raw.send(b"T1 APPEND INBOX {50000}\r\n")
    answer = raw.line()
    assert answer.startswith(b"T1 NO [TOOBIG]")  # refused before any byte is sent
    # A non-synchronising one arrives anyway: read and dropped, then refused.
    raw.send(b"T2 APPEND INBOX {50000+}\r\n" + b"x" * 50000 + b"\r\n")
    assert raw.line().startswith(b"T2 NO [TOOBIG]")
    assert raw.command("NOOP")[-1].startswith(b"R1 OK")  # the connection is still in sync
    typ, _ = imap.append("INBOX", None, None, simple("big", "y" * 20000))
    assert typ == "NO"
    assert env.store.status(ALICE, "INBOX").messages == 0
    imap.logout()


def test_line_too_long_closes(imap_factory: ImapFactory) -> None:
    env = imap_factory(max_line=1024)
    imap = env.login()
    raw = Raw(imap)
    raw.send(b"L1 NOOP " + b"a" * 5000 + b"\r\n")
    assert raw.line().startswith(b"* BYE")
    with pytest.raises((EOFError, OSError)):
        raw.line()


def test_idle_timeout_disconnects(imap_factory: ImapFactory) -> None:
    env = imap_factory(idle_timeout=0.5)
    imap = env.login()
    raw = Raw(imap)
    time.sleep(0.8)
    assert raw.line() == "* BYE Délai d'inactivité dépassé".encode()
    with pytest.raises((EOFError, OSError)):
        raw.line()


def test_idle_woken_by_delivery(imap_factory: ImapFactory) -> None:
    """RFC 2177: the poll is set to 30 s, so an EXISTS within 3 s proves the in-process
    notifier woke the session."""
    env = imap_factory(idle_poll=30.0)
    env.store.deliver(ALICE, simple("premier"))
    imap = env.login()
    select(imap)
    raw = Raw(imap)
    raw.send(b"I1 IDLE\r\n")
    assert raw.line() == b"+ idling"
    started = time.monotonic()
    threading.Thread(target=env.store.deliver, args=(ALICE, simple("pendant idle"))).start()
    assert raw.line() == b"* 2 EXISTS"
    assert time.monotonic() - started < 3
    # Flag changes and expunges by another session arrive during IDLE too.
    env.store.add_flags(ALICE, "INBOX", [1], ["\\Deleted"])
    assert raw.line() == b"* 1 FETCH (UID 1 FLAGS (\\Deleted))"
    env.store.expunge(ALICE, "INBOX")
    assert raw.line() == b"* 1 EXPUNGE"
    raw.send(b"DONE\r\n")
    assert raw.line() == "I1 OK IDLE terminé".encode()
    raw.send(b"I2 IDLE\r\n")
    assert raw.line() == b"+ idling"
    raw.send(b"NOOP\r\n")
    assert raw.line().startswith(b"I2 BAD")
    imap.logout()


def test_idle_polls_for_other_processes(imap_env: ImapEnv) -> None:
    """A delivery by another process (another store object: no in-process notification) is
    found by the periodic poll (0.3 s in the fixture)."""
    imap = imap_env.login()
    select(imap)
    raw = Raw(imap)
    raw.send(b"I1 IDLE\r\n")
    assert raw.line() == b"+ idling"
    other = imap_env.second_store()
    other.deliver(ALICE, simple("autre processus"))
    assert raw.line() == b"* 1 EXISTS"
    raw.send(b"DONE\r\n")
    assert raw.line().startswith(b"I1 OK")
    other.db.dispose()
    imap.logout()


# -- encryption at rest --------------------------------------------------------------------------


def test_bytes_are_encrypted_at_rest_and_tampering_is_detected(imap_env: ImapEnv) -> None:
    secret = "Diagnostic confidentiel : cardiopathie ischémique"
    uid = imap_env.store.deliver(ALICE, simple("Dossier Dupont Jeanne", secret + "\n"))
    root = imap_env.store.blobs.root  # type: ignore[attr-defined]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1
    stored = files[0].read_bytes()
    for needle in (b"Dupont", b"cardiopathie", b"Subject", secret.encode()):
        assert needle not in stored

    imap = imap_env.login()
    select(imap)
    assert secret.encode() in fetch(imap, "1", "BODY.PEEK[TEXT]")[1]["BODY[TEXT]"]
    tampered = bytearray(stored)
    tampered[len(tampered) // 2] ^= 0x01
    files[0].write_bytes(bytes(tampered))
    with pytest.raises(DecryptionError):
        imap_env.store.fetch_raw(ALICE, "INBOX", uid)
    typ, data = imap.fetch("1", "BODY.PEEK[]")
    assert typ == "NO" and data[0].startswith(b"[CORRUPTION]")
    # Metadata still answers: the folder stays usable.
    assert fetch(imap, "1", "(UID RFC822.SIZE)")[1]["UID"] == "1"
    imap.logout()


def test_events_carry_no_content(imap_env: ImapEnv) -> None:
    imap_env.store.deliver(ALICE, simple("Sujet très confidentiel", "Corps secret.\n"))
    imap = imap_env.login()
    select(imap)
    fetch(imap, "1", "BODY[]")
    imap.store("1", "+FLAGS", r"(\Deleted)")
    imap.expunge()
    imap.logout()
    kinds = [k for k, _, _ in imap_env.events]
    assert kinds[:3] == ["login", "read", "delete"]
    text = repr(imap_env.events)
    assert "confidentiel" not in text and "secret" not in text and "tok-alice" not in text
