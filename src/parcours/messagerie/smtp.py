"""The operator's two SMTP faces, on aiosmtpd.

* **Submission** (587 STARTTLS / 465 implicit TLS): its users' mail clients. TLS before
  anything (``require_starttls``, AUTH refused in clear: SUB-1), authentication by access token
  (SASL XOAUTH2 / OAUTHBEARER, or the token as the PLAIN/LOGIN password) or, for applicative
  mailboxes, by organisation certificate (SASL EXTERNAL). The envelope sender is the
  authenticated mailbox (SUB-2); recipients outside the trust space are refused at RCPT (OUT-1).
* **Relay** (25, STARTTLS, mutual TLS): other operators. The peer certificate must chain to the
  trust anchors (the TLS handshake checks chain and dates) and its DN must be in the liste
  blanche (IN-2..IN-4, checked in ``handle_STARTTLS``); the sender domain must be listed for
  that DN (IN-5, IN-6); recipients must be ours (IN-7) and exist (IN-8).

Both answer 250 only after ``queue.accept`` made the message durable. Every refusal is traced
(in the mailbox's chain when one is concerned) with its code, never with a body or subject.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import logging
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from typing import Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509

from parcours.messagerie import queue, service
from parcours.messagerie.context import OperatorContext
from parcours.messagerie.headers import ascii_fold
from parcours.messagerie.listeblanche import ListeBlancheError
from parcours.messagerie.models import HostedMailbox
from parcours.messagerie.pki import liste_blanche_dn

log = logging.getLogger("parcours.messagerie.smtp")

PS_KINDS = frozenset({"PER", "ORG", "APP", "CAB"})
NULL_SENDER = "<>"  # the null reverse-path of reports (RFC 5321 §4.5.5)
_PATIENT_REPLY_ONLY = "550 5.7.1 Un patient ne peut que répondre à un professionnel qui lui a écrit"


def _r(text: str) -> str:
    """SMTP reply text is ASCII (RFC 5321 §4.2.1; SMTPUTF8 is not offered): accents folded."""
    return ascii_fold(text)


class _Smtp(SMTP):
    """aiosmtpd refuses every MAIL/RCPT parameter it does not know with 555; the DSN extension
    (RFC 3461: RET, ENVID, NOTIFY, ORCPT) is ours to handle, so those pass through to the
    handler in ``mail_options``/``rcpt_options``."""

    # RFC 4954 §4: an AUTH line may reach 12,288 octets (a bearer token in the initial response
    # is ~1 kB); every other command keeps RFC 5321's 512.
    line_length_limit = 12288

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.command_size_limits["AUTH"] = 12288

    async def push(self, status: AnyStr) -> None:
        """Refusals aiosmtpd decides by itself (size, line length) are traced like ours."""
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        hook = getattr(self.event_handler, "on_protocol_refusal", None)
        if hook is not None and text.startswith(("552", "500 Line too long")):
            await hook(self, text)
        await super().push(status)

    def _getparams(self, params: Any) -> dict[str, Any] | None:  # type: ignore[override]
        result = super()._getparams(params)
        if result is None:
            return None
        for key in (*queue.DSN_MAIL_KEYS, *queue.DSN_RCPT_KEYS):
            result.pop(key, None)
        return result


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)


def _peer_der(server: SMTP, session: Session) -> bytes | None:
    ssl_object = None
    if session.ssl:
        ssl_object = session.ssl.get("ssl_object")
    if ssl_object is None and server.transport is not None:
        ssl_object = server.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)


def _ip(session: Session) -> str | None:
    peer = session.peer
    return peer[0] if isinstance(peer, tuple) else None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _received(ctx: OperatorContext, session: Session, protocol: str) -> bytes:
    stamp = format_datetime(datetime.now(UTC))
    helo = (session.host_name or "inconnu").replace("\r", "").replace("\n", "")
    return (
        f"Received: from {helo} ([{_ip(session) or '?'}])\r\n"
        f"\tby {ctx.hostname} (parcours) with {protocol}; {stamp}\r\n"
    ).encode()


def _sasl_token(data: bytes, mechanism: str) -> tuple[str | None, str]:
    """(user, token) from an XOAUTH2 or OAUTHBEARER (RFC 7628 §3.1) client response."""
    text = data.decode("utf-8", "replace")
    user: str | None = None
    fields = text.split("\x01")
    if mechanism == "OAUTHBEARER":
        gs2, _, _rest = text.partition("\x01")
        for part in gs2.split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        fields = text.split("\x01")[1:]
    token = ""
    for item in fields:
        if item.startswith("user="):
            user = item[5:]
        elif item.lower().startswith("auth="):
            value = item[5:].strip()
            if value.lower().startswith("bearer "):
                token = value[7:].strip()
    return user, token


class _Base:
    def __init__(self, ctx: OperatorContext, on_accept: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self.on_accept = on_accept

    async def _trace(self, event: str, mailbox: str | None, outcome: int, **kw: Any) -> None:
        await asyncio.to_thread(service.trace, self.ctx.db, event, mailbox, outcome=outcome, **kw)

    async def _trace_after_accept(
        self, event: str, mailbox: str | None, outcome: int, **kw: Any
    ) -> None:
        """The message is durable already: a trace that cannot be written now must not turn
        the 250 into an error (the client would send it again and it would go twice). The
        failure is logged loudly; the relay and delivery traces still follow."""
        try:
            await self._trace(event, mailbox, outcome, **kw)
        except Exception:
            log.exception("trace %s non écrite après acceptation", event)

    async def on_protocol_refusal(self, server: SMTP, status: str) -> None:
        session = server.session
        mailbox = session.auth_data if session is not None else None
        await self._trace(
            "mss-refus",
            mailbox if isinstance(mailbox, str) else None,
            int(status[:3]),
            detail=status[4:80],
        )

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        # Advertise the DSN extension (RFC 3461 §4) before the final line.
        if responses:
            last = responses[-1]
            responses[-1] = "250-DSN"
            responses.append(last)
        return responses

    async def _accept(
        self, session: Session, envelope: Envelope, protocol: str, mailbox: str | None
    ) -> str:
        raw = _received(self.ctx, session, protocol) + envelope.original_content
        recipients = getattr(envelope, "parcours_rcpts", [])
        sender = "" if envelope.mail_from in (None, NULL_SENDER) else envelope.mail_from
        mail_dsn = queue.dsn_options(envelope.mail_options, queue.DSN_MAIL_KEYS)
        try:
            await asyncio.to_thread(
                queue.accept,
                self.ctx,
                sender,
                recipients,
                raw,
                mail_dsn=mail_dsn,
            )
        except queue.AcceptError:
            await self._trace("mss-refus", mailbox, 451, detail="stockage impossible")
            return _r("451 4.3.0 Stockage temporairement impossible, réessayez")
        if self.on_accept is not None:
            self.on_accept()
        return _r("250 2.0.0 Message accepté")


class SubmissionHandler(_Base):
    """Port 587/465: the operator's own users."""

    # --- authentication (RFC 4954) --------------------------------------------------------

    async def _token_auth(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        if len(args) > 1:
            try:
                data = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(
                    success=False, handled=False, message=_r("501 5.5.2 Base64 illisible")
                )
        else:
            response = await server.challenge_auth("")
            if not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
            data = response
        user, token = _sasl_token(data, mechanism)
        return await self._check_token(server, user, token, mechanism)

    async def _check_token(
        self, server: SMTP, user: str | None, token: str, mechanism: str
    ) -> AuthResult:
        session = server.session
        assert session is not None
        try:
            mailbox = await asyncio.to_thread(self.ctx.authenticator.token, user, token)
        except service.AccessDenied as exc:
            await self._trace(
                "mss-authentification",
                None,
                535,
                detail=f"mécanisme={mechanism}; motif={exc}",
                client_ip=_ip(session),
            )
            return AuthResult(success=False, handled=False, message=_r(f"535 5.7.8 {exc}"))
        await self._trace(
            "mss-authentification",
            mailbox,
            235,
            detail=f"mécanisme={mechanism}",
            client_ip=_ip(session),
        )
        return AuthResult(success=True, auth_data=mailbox)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._token_auth(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._token_auth(server, args, "OAUTHBEARER")

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """PLAIN whose password is an access token (clients without OAuth); never a stored
        password: parcours keeps none for human mailboxes."""
        if len(args) > 1:
            try:
                data = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(
                    success=False, handled=False, message=_r("501 5.5.2 Base64 illisible")
                )
        else:
            response = await server.challenge_auth("")
            if not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
            data = response
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return AuthResult(
                success=False, handled=False, message=_r("501 5.5.2 Réponse PLAIN mal formée")
            )
        user = parts[1].decode("utf-8", "replace") or parts[0].decode("utf-8", "replace")
        return await self._check_token(server, user, parts[2].decode("utf-8", "replace"), "PLAIN")

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        user_raw = await server.challenge_auth("Username:")
        if not isinstance(user_raw, bytes):
            return AuthResult(success=False, handled=True)
        token_raw = await server.challenge_auth("Password:")
        if not isinstance(token_raw, bytes):
            return AuthResult(success=False, handled=True)
        login = LoginPassword(user_raw, token_raw)
        return await self._check_token(
            server, login.login.decode("utf-8", "replace"), login.password.decode(), "LOGIN"
        )

    async def auth_EXTERNAL(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4422 appendix A: the TLS client certificate is the credential (applicative
        mailboxes, SUB-3/SUB-4); the optional authorization identity picks the mailbox."""
        session = server.session
        assert session is not None
        der = _peer_der(server, session)
        if der is None:
            return AuthResult(
                success=False,
                handled=False,
                message=_r("535 5.7.8 Aucun certificat client présenté (EXTERNAL)"),
            )
        user = None
        if len(args) > 1 and args[1] != "=":
            try:
                user = base64.b64decode(args[1], validate=True).decode() or None
            except (binascii.Error, UnicodeDecodeError):
                return AuthResult(
                    success=False, handled=False, message=_r("501 5.5.2 Base64 illisible")
                )
        try:
            mailbox = await asyncio.to_thread(self.ctx.authenticator.certificate, user, der)
        except service.AccessDenied as exc:
            await self._trace(
                "mss-authentification",
                None,
                535,
                detail=f"mécanisme=EXTERNAL; motif={exc}",
                client_ip=_ip(session),
            )
            return AuthResult(success=False, handled=False, message=_r(f"535 5.7.8 {exc}"))
        await self._trace(
            "mss-authentification",
            mailbox,
            235,
            detail="mécanisme=EXTERNAL",
            client_ip=_ip(session),
        )
        return AuthResult(success=True, auth_data=mailbox)

    # --- envelope -------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        mailbox = session.auth_data
        try:
            sender = service.normalise(address)
        except service.MailboxError:
            return _r("553 5.1.7 Adresse d'expéditeur invalide")
        if sender != mailbox:
            await self._trace("mss-refus", mailbox, 553, detail=f"expéditeur usurpé ({sender})")
            return _r(f"553 5.7.1 Vous n'êtes autorisé à émettre que depuis {mailbox}")
        envelope.mail_from = sender
        envelope.mail_options.extend(options)
        envelope.parcours_rcpts = []  # type: ignore[attr-defined]
        envelope.parcours_kind = await asyncio.to_thread(self._kind, sender)  # type: ignore[attr-defined]
        return _r("250 2.1.0 Expéditeur accepté")

    def _kind(self, address: str) -> str | None:
        with self.ctx.db.session() as s:
            row = s.get(HostedMailbox, address)
            return row.kind if row is not None else None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        sender = envelope.mail_from or ""
        try:
            rcpt = service.normalise(address)
        except service.MailboxError:
            return _r("553 5.1.3 Adresse de destinataire invalide")
        domain = _domain(rcpt)
        verdict = await asyncio.to_thread(self._recipient_verdict, sender, envelope, rcpt, domain)
        if verdict is not None:
            await self._trace("mss-refus", sender, int(verdict[:3]), detail=f"destinataire={rcpt}")
            return _r(verdict)
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(options)
        envelope.parcours_rcpts.append(  # type: ignore[attr-defined]
            queue.Recipient(rcpt, queue.dsn_options(options, queue.DSN_RCPT_KEYS))
        )
        return _r("250 2.1.5 Destinataire accepté")

    def _recipient_verdict(
        self, sender: str, envelope: Envelope, rcpt: str, domain: str
    ) -> str | None:
        kind = getattr(envelope, "parcours_kind", None)
        if self.ctx.hosts(domain):
            with self.ctx.db.session() as s:
                target = service.get_mailbox(s, rcpt)
                if target is None:
                    return _r("550 5.1.1 Boîte aux lettres inconnue")
                if target.kind == "PAT" and kind not in PS_KINDS:
                    return _r("550 5.7.1 Seul un professionnel peut écrire à une BAL patient")
                if kind == "PAT" and not service.patient_may_write(s, sender, rcpt):
                    return _r(_PATIENT_REPLY_ONLY)
            return None
        try:
            listed = self.ctx.liste.current.is_listed(domain)
        except ListeBlancheError:
            return _r("451 4.3.0 Liste blanche indisponible")
        if not listed:
            return _r("550 5.7.1 Domaine du destinataire hors de l'espace de confiance MSSanté")
        if self.ctx.is_patient_domain(domain) and kind not in PS_KINDS:
            return _r("550 5.7.1 Seul un professionnel peut écrire à une BAL patient")
        if kind == "PAT":
            with self.ctx.db.session() as s:
                if not service.patient_may_write(s, sender, rcpt):
                    return _r(_PATIENT_REPLY_ONLY)
        return None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mailbox = envelope.mail_from
        envelope.original_content = complete_headers(
            envelope.original_content, _domain(mailbox or self.ctx.hostname)
        )
        problem = await asyncio.to_thread(
            check_content, envelope.original_content, mailbox, strict_mss=True
        )
        if problem is not None:
            await self._trace("mss-refus", mailbox, int(problem[:3]), detail=problem[4:])
            return _r(problem)
        await asyncio.to_thread(self._patient_threads, envelope)
        answer = await self._accept(session, envelope, "ESMTPSA", mailbox)
        if answer.startswith("250"):
            await self._trace_after_accept(
                "mss-soumission",
                mailbox,
                250,
                message_id=queue.message_id_of(envelope.original_content),
                detail=(
                    f"destinataires={len(envelope.rcpt_tos)}; "
                    f"taille={len(envelope.original_content)}"
                ),
                client_ip=_ip(session),
            )
        return answer

    def _patient_threads(self, envelope: Envelope) -> None:
        """A professional writing to patients opens (or, with [FIN], closes) the thread."""
        from parcours.messagerie import headers

        kind = getattr(envelope, "parcours_kind", None)
        if kind not in PS_KINDS:
            return
        targets = [
            r
            for r in envelope.rcpt_tos
            if self.ctx.is_patient_domain(_domain(r)) or self._is_local_patient(r)
        ]
        if not targets:
            return
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        ends = headers.ends_patient_exchange(msg)  # type: ignore[arg-type]
        with self.ctx.db.session() as s:
            for patient in targets:
                service.open_or_close_thread(s, envelope.mail_from or "", patient, ends)

    def _is_local_patient(self, address: str) -> bool:
        if not self.ctx.hosts(_domain(address)):
            return False
        with self.ctx.db.session() as s:
            row = service.get_mailbox(s, address)
            return row is not None and row.kind == "PAT"


def complete_headers(raw: bytes, domain: str) -> bytes:
    """RFC 6409 §8.1 and §8.3: a submission server may add the Date and Message-ID a client
    left out (scripts built on ``smtplib.send_message`` do) rather than refuse the message."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    added = b""
    if not head.startswith(b"date:") and b"\ndate:" not in head:
        added += f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode()
    if not head.startswith(b"message-id:") and b"\nmessage-id:" not in head:
        added += f"Message-ID: {make_msgid(domain=domain)}\r\n".encode()
    return added + raw


def check_content(raw: bytes, mail_from: str | None, *, strict_mss: bool) -> str | None:
    """Header rules at DATA: RFC 5322 fields, From = the envelope sender at submission (no
    spoofing), and the X-MSS headers. ``strict_mss`` at submission: a malformed X-MSS header
    from our own user's software is refused (5.6.0) before it enters the trust space; on the
    relay they are delivered unchanged (IN-15/IN-16: the headers are the LPS's business).
    Returns the SMTP refusal, or None."""
    from email import message_from_bytes, policy

    from parcours.messagerie import headers

    try:
        msg = message_from_bytes(raw, policy=policy.default)
        issues = headers.check_message_headers(msg, strict_mss=strict_mss)  # type: ignore[arg-type]
        from_header = msg.get("From")
        from_addresses = [a.addr_spec.lower() for a in from_header.addresses] if from_header else []
    except Exception as exc:  # a header the parser cannot read is itself the refusal
        return f"554 5.6.0 En-têtes illisibles ({type(exc).__name__})"
    refusal = headers.smtp_reply_for(issues)
    if refusal is not None:
        return f"{refusal[0]} {refusal[1]}"
    if mail_from and from_addresses and mail_from.lower() not in from_addresses:
        return f"553 5.7.1 L'en-tête From doit être {mail_from}"
    return None


class RelayHandler(_Base):
    """Port 25: other operators of the liste blanche, over mutual TLS only."""

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        """Called synchronously by aiosmtpd after the handshake (which already checked the
        chain and dates against the trust anchors). Returning False makes every later command
        answer 554."""
        der = _peer_der(server, session)
        if der is None:
            session.parcours_refusal = "pas de certificat client"  # type: ignore[attr-defined]
            return False
        dn = liste_blanche_dn(x509.load_der_x509_certificate(der).subject)
        try:
            domains = self.ctx.liste.current.domains_of(dn)
        except ListeBlancheError:
            domains = frozenset()
        if not domains:
            session.parcours_refusal = f"DN {dn} absent de la liste blanche"  # type: ignore[attr-defined]
            log.warning("relais entrant refusé : %s", session.parcours_refusal)  # type: ignore[attr-defined]
            return False
        session.parcours_dn = dn  # type: ignore[attr-defined]
        session.parcours_cert = hashlib.sha256(der).hexdigest()  # type: ignore[attr-defined]
        return True

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        dn = getattr(session, "parcours_dn", None)
        if dn is None:  # implicit TLS or a hook that did not run: check now
            if not self.handle_STARTTLS(server, session, envelope):
                return _r("554 5.7.1 Certificat d'opérateur absent ou non inscrit en liste blanche")
            dn = session.parcours_dn  # type: ignore[attr-defined]
        if address in ("", "<>"):  # null reverse-path: DSN/MDN from a listed operator (IN-17)
            # "<>", not "": aiosmtpd reads an empty sender as "no MAIL yet" and answers 503
            # to every RCPT that follows.
            envelope.mail_from = NULL_SENDER
        else:
            try:
                sender = service.normalise(address)
            except service.MailboxError:
                return _r("553 5.1.7 Adresse d'expéditeur invalide")
            domain = _domain(sender)
            liste = self.ctx.liste.current
            if not liste.is_listed(domain):
                await self._trace("mss-refus", None, 550, detail=f"domaine {domain} non listé")
                return _r("550 5.7.1 Domaine de l'expéditeur hors de la liste blanche MSSanté")
            if not liste.allows(domain, dn):
                await self._trace(
                    "mss-refus", None, 550, detail=f"domaine {domain} non autorisé pour {dn}"
                )
                return _r("550 5.7.1 Ce certificat n'est pas autorisé à émettre pour ce domaine")
            envelope.mail_from = sender
        envelope.mail_options.extend(options)
        envelope.parcours_rcpts = []  # type: ignore[attr-defined]
        return _r("250 2.1.0 Expéditeur accepté")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        try:
            rcpt = service.normalise(address)
        except service.MailboxError:
            return _r("553 5.1.3 Adresse de destinataire invalide")
        if not self.ctx.hosts(_domain(rcpt)):
            await self._trace("mss-refus", None, 550, detail=f"relais refusé vers {rcpt}")
            return _r("550 5.7.1 Relais refusé : domaine non hébergé ici")
        verdict = await asyncio.to_thread(self._verdict, envelope.mail_from or "", rcpt)
        if verdict is not None:
            await self._trace("mss-refus", rcpt, int(verdict[:3]), detail="destinataire refusé")
            return _r(verdict)
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(options)
        envelope.parcours_rcpts.append(  # type: ignore[attr-defined]
            queue.Recipient(rcpt, queue.dsn_options(options, queue.DSN_RCPT_KEYS))
        )
        return _r("250 2.1.5 Destinataire accepté")

    def _verdict(self, sender: str, rcpt: str) -> str | None:
        with self.ctx.db.session() as s:
            target = service.get_mailbox(s, rcpt)
            if target is None:
                return _r("550 5.1.1 Boîte aux lettres inconnue")
            if target.kind == "PAT" and sender and self.ctx.is_patient_domain(_domain(sender)):
                return _r("550 5.7.1 Seul un professionnel peut écrire à une BAL patient")
        return None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        problem = await asyncio.to_thread(
            check_content, envelope.original_content, None, strict_mss=False
        )
        if problem is not None:
            await self._trace("mss-refus", None, int(problem[:3]), detail=problem[4:])
            return _r(problem)
        await asyncio.to_thread(self._patient_threads, envelope)
        answer = await self._accept(session, envelope, "ESMTPS", None)
        if answer.startswith("250"):
            message_id = queue.message_id_of(envelope.original_content)
            for rcpt in envelope.rcpt_tos:
                await self._trace_after_accept(
                    "mss-relais-entrant",
                    rcpt,
                    250,
                    message_id=message_id,
                    detail=(
                        f"expéditeur={envelope.mail_from or '<>'}; "
                        f"pair={getattr(session, 'parcours_dn', '?')}; "
                        f"taille={len(envelope.original_content)}"
                    ),
                    client_ip=_ip(session),
                )
        return answer

    def _patient_threads(self, envelope: Envelope) -> None:
        from email import message_from_bytes, policy

        from parcours.messagerie import headers

        sender = envelope.mail_from or ""
        if sender in ("", NULL_SENDER) or self.ctx.is_patient_domain(_domain(sender)):
            return
        with self.ctx.db.session() as s:
            patients = [
                r
                for r in envelope.rcpt_tos
                if (row := service.get_mailbox(s, r)) is not None and row.kind == "PAT"
            ]
        if not patients:
            return
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        ends = headers.ends_patient_exchange(msg)  # type: ignore[arg-type]
        with self.ctx.db.session() as s:
            for patient in patients:
                service.open_or_close_thread(s, sender, patient, ends)


# --- TLS contexts and servers ---------------------------------------------------------------


def server_context(ctx: OperatorContext) -> ssl.SSLContext:
    """TLS 1.2 minimum (reference §1.3). A client certificate is asked for and verified against
    the trust anchors only; CERT_OPTIONAL so that a relay peer without one gets a clean 554
    instead of a reset (IN-2), and a submission client without one can still use a token."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ctx.ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(ctx.cert), str(ctx.key))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.check_hostname = False
    return context


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_controller(
    handler: _Base,
    *,
    host: str,
    port: int,
    tls: ssl.SSLContext,
    implicit_tls: bool,
    auth: bool,
    max_bytes: int,
) -> Controller:
    kwargs: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "data_size_limit": max_bytes,
        "enable_SMTPUTF8": False,
        "server_hostname": handler.ctx.hostname,
        "ident": "parcours MSSante",  # the banner is ASCII (RFC 5321 §4.2)
        "timeout": 300,
    }
    if implicit_tls:
        kwargs["ssl_context"] = tls
    else:
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = True
    if auth:
        kwargs["auth_required"] = True
        kwargs["auth_require_tls"] = True
        kwargs["auth_exclude_mechanism"] = ["CRAM-MD5"]
    controller = _Controller(handler, **kwargs)
    controller.start()
    return controller
