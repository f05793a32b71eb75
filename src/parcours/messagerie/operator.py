"""One MSSanté operator instance: SMTP submission (STARTTLS and implicit TLS), the inbound relay
(mutual TLS), IMAP (STARTTLS and implicit TLS), the outbound relay worker and the liste
blanche refresh, all over one database, one sealed blob store and one certificate.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parcours.auth.tokens import TokenVerifier
from parcours.config import Settings
from parcours.dossier.store import DocumentStore
from parcours.messagerie import queue
from parcours.messagerie.context import DEFAULT_MAX_MESSAGE_BYTES, OperatorContext
from parcours.messagerie.listeblanche import ListeBlancheSource
from parcours.messagerie.mailstore import MailStore
from parcours.messagerie.service import MailboxAuthenticator
from parcours.messagerie.smtp import (
    RelayHandler,
    SubmissionHandler,
    free_port,
    server_context,
    start_controller,
)
from parcours.storage.blobs import LocalBlobStore
from parcours.storage.crypto import KeyRing
from parcours.storage.db import Database

log = logging.getLogger("parcours.messagerie")


@dataclass
class OperatorConfig:
    name: str
    hostname: str
    domains: tuple[str, ...]
    database_url: str
    data_dir: Path  # sealed messages and the key ring live under it
    cert: Path
    key: Path
    ca_bundle: Path
    liste_blanche: Path  # a file (the demo's) or the cached copy of the ANS download
    patient_domains: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    # 0 = pick a free port (tests, demo); the bound port is on the Operator afterwards.
    submission_port: int = 0
    submissions_port: int = 0
    relay_port: int = 0
    imap_port: int = 0
    imaps_port: int = 0
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    liste_refresh_seconds: float = 3600.0
    relay_poll_seconds: float = 2.0
    first_retry_seconds: float = 30.0


def parse_routes(text: str) -> dict[str, tuple[str, int]]:
    """``"a.mssante.fr=10.0.0.5:25 b.mssante.fr=mx.b:2525"`` → {domain: (host, port)}."""
    routes: dict[str, tuple[str, int]] = {}
    for item in text.split():
        domain, sep, target = item.partition("=")
        host, colon, port = target.rpartition(":")
        if not sep or not colon or not host or not port.isdigit():
            raise ValueError(f"route MSSanté illisible « {item} » (attendu domaine=hôte:port)")
        routes[domain.lower()] = (host, int(port))
    return routes


def config_from_settings(settings: Settings, name: str = "operateur") -> OperatorConfig:
    """The operator of ``parcours mss serve``, from ``PARCOURS_MSS_*``."""
    missing = [
        label
        for label, value in (
            ("PARCOURS_MSS_DOMAINS", settings.mss_domains),
            ("PARCOURS_MSS_CERT", settings.mss_cert),
            ("PARCOURS_MSS_KEY", settings.mss_key),
            ("PARCOURS_MSS_CA_BUNDLE", settings.mss_ca_bundle),
            ("PARCOURS_MSS_LISTE_BLANCHE", settings.mss_liste_blanche),
        )
        if not value
    ]
    if missing:
        raise ValueError("configuration MSSanté incomplète : " + ", ".join(missing))
    return OperatorConfig(
        name=name,
        hostname=settings.mss_hostname,
        domains=tuple(settings.mss_domains.split()),
        patient_domains=tuple(settings.mss_patient_domains.split()),
        database_url=settings.resolved_database_url,
        data_dir=settings.data_dir,
        cert=Path(settings.mss_cert),
        key=Path(settings.mss_key),
        ca_bundle=Path(settings.mss_ca_bundle),
        liste_blanche=Path(settings.mss_liste_blanche),
        host=settings.mss_host,
        submission_port=settings.mss_submission_port,
        submissions_port=settings.mss_submissions_port,
        relay_port=settings.mss_relay_port,
        imap_port=settings.mss_imap_port,
        imaps_port=settings.mss_imaps_port,
        routes=parse_routes(settings.mss_routes),
        max_message_bytes=settings.mss_max_message_bytes,
        first_retry_seconds=settings.mss_first_retry_seconds,
    )


class Operator:
    """``document_store``: the DMP's, when this operator files XDM mail sent to its
    ``dmp@<domain>`` applicative mailboxes into the DMP (same database)."""

    def __init__(
        self,
        config: OperatorConfig,
        verifier: TokenVerifier,
        document_store: DocumentStore | None = None,
    ) -> None:
        self.config = config
        self.db = Database(config.database_url, durable=True)
        blobs = LocalBlobStore(config.data_dir / "mss-blobs")
        keys = KeyRing.load_or_create(config.data_dir / "keys" / "messagerie")
        liste = ListeBlancheSource.from_file(
            config.liste_blanche, cache=config.data_dir / "listeblanche.xml"
        )
        liste.refresh()
        self.ctx = OperatorContext(
            name=config.name,
            hostname=config.hostname,
            domains=frozenset(d.lower() for d in config.domains),
            patient_domains=frozenset(d.lower() for d in config.patient_domains),
            db=self.db,
            mailstore=MailStore(self.db, blobs, keys),
            keys=keys,
            blobs=blobs,
            liste=liste,
            authenticator=MailboxAuthenticator(self.db, verifier),
            cert=config.cert,
            key=config.key,
            ca_bundle=config.ca_bundle,
            routes=dict(config.routes),
            max_message_bytes=config.max_message_bytes,
            first_retry_seconds=config.first_retry_seconds,
            document_store=document_store,
        )
        self.relay = queue.RelayWorker(self.ctx, poll_seconds=config.relay_poll_seconds)

        self._controllers: list[Any] = []
        self._imap: Any = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self.ports: dict[str, int] = {}

    def start(self, *, relay_worker: bool = True) -> Operator:
        c = self.config
        # One context for both faces: it asks every client for a certificate (CERT_OPTIONAL);
        # the relay refuses peers without one, submission uses it for EXTERNAL only.
        submit_tls = relay_tls = server_context(self.ctx)
        specs = [
            ("submission", c.submission_port, SubmissionHandler, False, True, submit_tls),
            ("submissions", c.submissions_port, SubmissionHandler, True, True, submit_tls),
            ("relay", c.relay_port, RelayHandler, False, False, relay_tls),
        ]
        for name, port, handler_cls, implicit, auth, tls in specs:
            port = port or free_port(c.host)
            handler = handler_cls(self.ctx, on_accept=self.relay.kick)
            self._controllers.append(
                start_controller(
                    handler,
                    host=c.host,
                    port=port,
                    tls=tls,
                    implicit_tls=implicit,
                    auth=auth,
                    max_bytes=c.max_message_bytes,
                )
            )
            self.ports[name] = port
        self._start_imap(submit_tls)
        if relay_worker:
            self.relay.start()
        self._refresher = threading.Thread(target=self._refresh_loop, daemon=True)
        self._refresher.start()
        return self

    def _start_imap(self, tls: Any) -> None:
        from parcours.messagerie import service
        from parcours.messagerie.imap import ImapServer, ImapThread

        def on_event(kind: str, mailbox: str | None, detail: dict[str, object]) -> None:
            outcome = 403 if kind.endswith("failed") else 200
            text = "; ".join(f"{k}={v}" for k, v in sorted(detail.items()) if k != "message_id")
            message_id = detail.get("message_id")
            service.trace(
                self.db,
                f"mss-imap-{kind}",
                mailbox,
                outcome=outcome,
                message_id=str(message_id) if message_id else None,
                detail=text or None,
            )

        server = ImapServer(
            self.ctx.mailstore,
            _ImapAuth(self.ctx),
            tls,
            host=self.config.host,
            port=self.config.imap_port or free_port(self.config.host),
            tls_port=self.config.imaps_port or free_port(self.config.host),
            on_event=on_event,
            hostname=self.config.hostname,
        )
        self._imap = ImapThread(server)
        self._imap.start()
        self.ports["imap"] = server.port
        self.ports["imaps"] = server.tls_port

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.liste_refresh_seconds):
            outcome = self.ctx.liste.refresh()
            if not outcome.replaced:
                log.error(
                    "liste blanche de %s non rafraîchie : %s", self.config.name, outcome.reason
                )

    def stop(self) -> None:
        self._stop.set()
        self.relay.stop()
        for controller in self._controllers:
            controller.stop()
        self._controllers.clear()
        if self._imap is not None:
            self._imap.stop()
            self._imap = None
        self.db.dispose()


class _ImapAuth:
    """The IMAP server's authenticator: the same decisions as SMTP submission's."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def token(self, user: str | None, token: str) -> str:
        from parcours.messagerie.imap import AuthenticationFailed
        from parcours.messagerie.service import AccessDenied

        try:
            return self.ctx.authenticator.token(user, token)
        except AccessDenied as exc:
            raise AuthenticationFailed(str(exc)) from None

    def certificate(self, user: str | None, cert_der: bytes) -> str:
        from parcours.messagerie.imap import AuthenticationFailed
        from parcours.messagerie.service import AccessDenied

        try:
            return self.ctx.authenticator.certificate(user, cert_der)
        except AccessDenied as exc:
            raise AuthenticationFailed(str(exc)) from None
