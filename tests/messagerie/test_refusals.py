"""What the operator refuses, with which SMTP reply, traced, nothing stored (issue #6 tests §2;
reference mssante.md §7.1 IN-*, §7.2 OUT-1, §7.3 SUB-*, §7.4 PAT-*)."""

from __future__ import annotations

import base64
import datetime as dt
import smtplib
import ssl
import time

import pytest
from sqlalchemy import func, select

from parcours.audit.models import AuditEvent
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.dossier.samples import PATIENT_INS
from parcours.messagerie.mailstore import MailMessage
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.operator import Operator
from tests.messagerie.conftest import (
    DOMAIN_B,
    DPI_B,
    DUPONT_A,
    LEGALL_A,
    MARTIN_B,
    PATIENT_A,
    Pair,
)
from tests.messagerie.test_exchange import letter, wait_for
from tests.scenario import DUPONT, MARTIN


def _stored(op: Operator) -> tuple[int, int]:
    with op.db.session() as session:
        messages = session.execute(select(func.count()).select_from(MailMessage)).scalar_one()
        queued = session.execute(select(func.count()).select_from(QueuedMessage)).scalar_one()
    return messages, queued


def _refusals(op: Operator) -> list[AuditEvent]:
    with op.db.session() as session:
        rows = list(
            session.execute(select(AuditEvent).where(AuditEvent.action == "mss-refus")).scalars()
        )
        session.expunge_all()
    return rows


def _relay(pair: Pair, op: Operator, cert: object | None) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", op.ports["relay"], timeout=20)
    context = ssl.create_default_context(cafile=str(pair.pki.bundle))
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))  # type: ignore[attr-defined]
    client.starttls(context=context)
    client.ehlo("peer.test")
    return client


def test_submission_refusals(operators: Pair) -> None:
    pair = operators
    a = pair.a
    dupont = pair.token("8" + DUPONT)

    # SUB-1: no AUTH (nor anything else) before TLS.
    plain = smtplib.SMTP("127.0.0.1", a.ports["submission"], timeout=20)
    plain.ehlo()
    assert "auth" not in plain.esmtp_features
    blob = base64.b64encode(f"user={DUPONT_A}\x01auth=Bearer {dupont}\x01\x01".encode()).decode()
    code, _ = plain.docmd("AUTH", f"XOAUTH2 {blob}")
    assert code in (530, 538)
    code, _ = plain.docmd("MAIL", f"FROM:<{DUPONT_A}>")
    assert code == 530
    plain.quit()

    # OUT-1: a recipient outside the trust space is refused at RCPT, never relayed.
    with pair.smtp(a, DUPONT_A, dupont) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(letter(DUPONT_A, "someone@gmail.com"))
        code, text = refused.value.recipients["someone@gmail.com"]
        assert code == 550 and b"5.7.1" in text and b"confiance" in text
        # IN-8 on our own domain: unknown mailbox.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
            client.send_message(letter(DUPONT_A, "personne@territoire.mssante.test"))
        assert unknown.value.recipients["personne@territoire.mssante.test"][0] == 550
        # SUB-2: the envelope sender is the authenticated mailbox, nobody else's.
        with pytest.raises(smtplib.SMTPSenderRefused) as spoofed:
            client.sendmail(LEGALL_A, [MARTIN_B], letter(LEGALL_A, MARTIN_B).as_bytes())
        assert spoofed.value.smtp_code == 553
        # …and the From header too.
        with pytest.raises(smtplib.SMTPDataError) as header:
            client.sendmail(DUPONT_A, [MARTIN_B], letter(LEGALL_A, MARTIN_B).as_bytes())
        assert header.value.smtp_code == 553
        # Oversized: announced with SIZE (refused at MAIL), or sent anyway (refused at DATA).
        with pytest.raises(smtplib.SMTPSenderRefused) as big:
            client.sendmail(DUPONT_A, [MARTIN_B], b"x", mail_options=["SIZE=20000000"])
        assert big.value.smtp_code == 552
        huge = letter(DUPONT_A, MARTIN_B)
        huge.set_content(("a" * 76 + "\n") * (a.config.max_message_bytes // 77 + 100))
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:
            client.send_message(huge)  # smtplib announces SIZE itself: refused at MAIL
        assert announced.value.smtp_code == 552
        client.rset()
        assert client.mail(DUPONT_A)[0] == 250  # without SIZE: refused after DATA
        assert client.rcpt(MARTIN_B)[0] == 250
        code, _ = client.data(huge.as_bytes(policy=huge.policy.clone(linesep="\r\n")))
        assert code == 552

    # SUB-5 / SUB-6: a weak login, an expired token, another audience.
    weak = pair.token("8" + DUPONT, acr="pwd")
    key = keys.load_or_create(pair.settings.keys_dir)
    expired = mint_token(
        key,
        issuer=pair.settings.dev_issuer,
        audience=pair.settings.audience,
        subject="8" + DUPONT,
        claims={"actor": "professional", "idnat_ps": "8" + DUPONT},
        ttl_seconds=60,
        now=time.time() - 3600,
    )
    other = mint_token(
        key,
        issuer=pair.settings.dev_issuer,
        audience="autre-service",
        subject="8" + DUPONT,
        claims={"actor": "professional", "idnat_ps": "8" + DUPONT},
        ttl_seconds=600,
    )
    for token, reason in ((weak, "forte"), (expired, "expire"), (other, "audience")):
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            pair.smtp(a, DUPONT_A, token)
        assert failed.value.smtp_code == 535
        assert reason in failed.value.smtp_error.decode()
    # A professional's token does not open somebody else's mailbox.
    with pytest.raises(smtplib.SMTPAuthenticationError):
        pair.smtp(a, LEGALL_A, dupont)

    assert _stored(a) == (0, 0)
    # Each refusal is traced with its code (authentication failures under their own action).
    codes = sorted(e.outcome for e in _refusals(a))
    assert codes == [550, 550, 552, 552, 552, 553, 553]
    with a.db.session() as session:
        failures = session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "mss-authentification", AuditEvent.outcome == 535)
        ).scalar_one()
    assert failures == 4


def test_applicative_mailboxes_authenticate_with_their_certificate(operators: Pair) -> None:
    pair = operators
    b = pair.b
    # SUB-3: the DPI's organisation certificate opens its APP mailbox (SASL EXTERNAL).
    client = smtplib.SMTP("127.0.0.1", b.ports["submission"], timeout=20)
    client.starttls(context=pair.client_context(pair.certs["dpi"]))
    client.ehlo()
    assert "EXTERNAL" in client.esmtp_features["auth"]
    code, _ = client.docmd("AUTH", "EXTERNAL =")
    assert code == 235
    refused = client.sendmail(DPI_B, [MARTIN_B], letter(DPI_B, MARTIN_B).as_bytes())
    assert refused == {}
    client.quit()
    # SUB-4: another structure's certificate opens nothing.
    intruder = smtplib.SMTP("127.0.0.1", b.ports["submission"], timeout=20)
    intruder.starttls(context=pair.client_context(pair.certs["rogue"]))
    intruder.ehlo()
    code, text = intruder.docmd("AUTH", "EXTERNAL =")
    assert code == 535 and "Certificat inconnu" in text.decode()
    intruder.quit()
    # EXTERNAL without any certificate.
    bare = smtplib.SMTP("127.0.0.1", b.ports["submission"], timeout=20)
    bare.starttls(context=pair.client_context())
    bare.ehlo()
    code, _ = bare.docmd("AUTH", "EXTERNAL =")
    assert code == 535
    bare.quit()


def test_relay_refusals(operators: Pair) -> None:
    pair = operators
    a = pair.a
    # IN-1: nothing before STARTTLS; nothing is ever relayed in clear.
    plain = smtplib.SMTP("127.0.0.1", a.ports["relay"], timeout=20)
    plain.ehlo()
    code, _ = plain.docmd("MAIL", "FROM:<paul.martin@chu.mssante.test>")
    assert code == 530
    plain.quit()

    # IN-2: TLS without a client certificate: every command refused.
    anonymous = _relay(pair, a, None)
    code, _ = anonymous.docmd("MAIL", "FROM:<paul.martin@chu.mssante.test>")
    assert code == 554
    anonymous.quit()

    # IN-4: a certificate of the trust anchors whose DN is not in the liste blanche.
    stranger = pair.pki.issue("inconnu", cn="mx.inconnu.test", ou="39999999999999", o="INCONNU")
    unknown = _relay(pair, a, stranger)
    code, _ = unknown.docmd("MAIL", "FROM:<x@inconnu.test>")
    assert code == 554
    unknown.quit()

    # IN-5 / IN-6 / IN-7 / IN-8 with a listed certificate (the "voyou" operator's).
    rogue = _relay(pair, a, pair.certs["rogue"])
    code, text = rogue.docmd("MAIL", f"FROM:<paul.martin@{DOMAIN_B}>")
    assert code == 550 and b"5.7.1" in text  # IN-5: not allowed to speak for the CHU
    code, _ = rogue.docmd("MAIL", "FROM:<x@gmail.com>")
    assert code == 550  # IN-6: sender domain not listed at all
    code, _ = rogue.docmd("MAIL", "FROM:<dr.voyou@voyou.mssante.test>")
    assert code == 250
    code, text = rogue.docmd("RCPT", f"TO:<{MARTIN_B}>")
    assert code == 550 and b"Relais refuse" in text  # IN-7: open relay attempt
    code, _ = rogue.docmd("RCPT", "TO:<personne@territoire.mssante.test>")
    assert code == 550  # IN-8
    rogue.docmd("RSET")
    # IN-17: a null reverse-path (DSN/MDN) from a listed operator is accepted.
    code, _ = rogue.docmd("MAIL", "FROM:<>")
    assert code == 250
    code, _ = rogue.docmd("RCPT", f"TO:<{DUPONT_A}>")
    assert code == 250  # and its recipient too (a report is only useful delivered)
    rogue.docmd("RSET")
    rogue.quit()

    # IN-3 / IN-11 / IN-12: foreign CA, expired certificate, TLS 1.1: no handshake.
    from tests.notify.conftest import self_signed

    foreign_cert, foreign_key = self_signed(pair.settings.data_dir)
    expired = pair.pki.issue(
        "perime",
        cn="mx.chu.mssante.test",
        ou="1350000014",
        o="CHU DE TEST",
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
        valid_days=2,
    )
    for cert, key in ((foreign_cert, foreign_key), (expired.cert, expired.key)):
        client = smtplib.SMTP("127.0.0.1", a.ports["relay"], timeout=20)
        context = ssl.create_default_context(cafile=str(pair.pki.bundle))
        context.check_hostname = False
        context.load_cert_chain(str(cert), str(key))
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            client.starttls(context=context)
            client.ehlo()
            code, _ = client.docmd("MAIL", f"FROM:<paul.martin@{DOMAIN_B}>")
            assert code != 250
            raise smtplib.SMTPServerDisconnected("refusé sans poignée de main")
    old = smtplib.SMTP("127.0.0.1", a.ports["relay"], timeout=20)
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.load_verify_locations(str(pair.pki.bundle))
    legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        old.starttls(context=legacy)

    assert _stored(a) == (0, 0)
    assert len(_refusals(a)) >= 4


def test_malformed_mss_headers_are_refused_at_data(operators: Pair) -> None:
    pair = operators
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        bad = letter(DUPONT_A, MARTIN_B, X_MSS_INS="peut-etre")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(bad)
        assert refused.value.smtp_code == 554
        assert b"5.6" in refused.value.smtp_error
    assert _stored(pair.a) == (0, 0)


def test_patient_mailboxes_only_answer_professionals_who_wrote_first(operators: Pair) -> None:
    pair = operators
    a = pair.a
    patient = pair.token(ins=PATIENT_INS)
    dupont = pair.token("8" + DUPONT)
    # PAT-3: the patient cannot start a conversation.
    with pair.smtp(a, PATIENT_A, patient) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(letter(PATIENT_A, DUPONT_A))
        assert refused.value.recipients[DUPONT_A][0] == 550
    # PAT-1: the professional writes first…
    with pair.smtp(a, DUPONT_A, dupont) as client:
        assert client.send_message(letter(DUPONT_A, PATIENT_A)) == {}
    # PAT-2: …then the patient may answer him (and only him).
    with pair.smtp(a, PATIENT_A, patient) as client:
        assert client.send_message(letter(PATIENT_A, DUPONT_A, subject="Re: résultats")) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(letter(PATIENT_A, LEGALL_A))
    # PAT-4: [FIN] ends the exchange.
    with pair.smtp(a, DUPONT_A, dupont) as client:
        assert client.send_message(letter(DUPONT_A, PATIENT_A, subject="[FIN]")) == {}
    with (
        pair.smtp(a, PATIENT_A, patient) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        client.send_message(letter(PATIENT_A, DUPONT_A, subject="Re: merci"))
    # A patient cannot write to another patient mailbox either (not a professional).
    with (
        pair.smtp(a, PATIENT_A, patient) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        client.send_message(letter(PATIENT_A, PATIENT_A))
    # A professional of the other operator writes to the patient through the relay.
    with pair.smtp(pair.b, MARTIN_B, pair.token("8" + MARTIN)) as client:
        assert client.send_message(letter(MARTIN_B, PATIENT_A)) == {}
    wait_for(lambda: _stored(a)[0] >= 4)
