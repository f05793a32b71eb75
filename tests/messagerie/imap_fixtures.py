"""Fixtures for the IMAP server and the mail store: a test CA with a server certificate
(127.0.0.1) and a client certificate, a fake authenticator, a fresh SQLite (or PostgreSQL)
database holding only the mail tables, and the server running in a background thread.

Imported explicitly by the test modules (``from tests.messagerie.imap_fixtures import ...``)."""

from __future__ import annotations

import datetime as dt
import imaplib
import ipaddress
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from parcours.messagerie.imap import AuthenticationFailed, ImapServer, ImapThread
from parcours.messagerie.mailstore import MailFolder, MailMessage, MailStore
from parcours.storage.blobs import LocalBlobStore
from parcours.storage.crypto import KeyRing
from parcours.storage.db import Database
from parcours.storage.models import Base

ALICE = "alice.martin@hopital-test.mssante.fr"
BOB = "bob.durand@cabinet-test.mssante.fr"
APP = "lab.app@labo-test.mssante.fr"
TOKENS = {"tok-alice": ALICE, "tok-bob": BOB}
EXPIRED = "tok-expired"
CLIENT_CN = "LABO TEST APP"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer if not ca else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA: the TLS layer must refuse it
    stranger_key: Path


def make_pki(directory: Path) -> Pki:
    """A fake IGC-Santé: one root, a server certificate for 127.0.0.1 and an APP
    organisation certificate (client authentication)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _issue("AC RACINE TEST", ca_key, x509.Name([]), ca_key, ca=True)
    server_key = _key()
    server_cert = _issue(
        "127.0.0.1",
        server_key,
        ca_cert.subject,
        ca_key,
        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = _key()
    client_cert = _issue(
        CLIENT_CN,
        client_key,
        ca_cert.subject,
        ca_key,
        usage=x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    other_key = _key()
    other_ca = _issue("AC INCONNUE", other_key, x509.Name([]), other_key, ca=True)
    stranger_key = _key()
    stranger = _issue(
        CLIENT_CN,
        stranger_key,
        other_ca.subject,
        other_key,
        usage=x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    files: dict[str, bytes] = {
        "ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM),
        "server.pem": server_cert.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
        "client.pem": client_cert.public_bytes(serialization.Encoding.PEM),
        "client.key": _pem_key(client_key),
        "stranger.pem": stranger.public_bytes(serialization.Encoding.PEM),
        "stranger.key": _pem_key(stranger_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    d = directory
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "stranger.pem",
        d / "stranger.key",
    )


def server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_OPTIONAL  # EXTERNAL when a certificate is presented
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(pki: Pki, *, cert: bool = False, stranger: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    if stranger:
        context.load_cert_chain(pki.stranger_cert, pki.stranger_key)
    return context


class FakeAuthenticator:
    """Tokens from :data:`TOKENS`; the client certificate with CN :data:`CLIENT_CN` is the
    APP mailbox. Reasons are French, as the real authenticator's."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def token(self, user: str | None, token: str) -> str:
        self.calls.append(("token", user))
        if token == EXPIRED:
            raise AuthenticationFailed("Jeton expiré : reconnectez-vous à Pro Santé Connect")
        address = TOKENS.get(token)
        if address is None:
            raise AuthenticationFailed("Jeton inconnu ou révoqué")
        if user is not None and user.lower() != address:
            raise AuthenticationFailed("Le jeton ne correspond pas à cette boîte aux lettres")
        return address

    def certificate(self, user: str | None, cert_der: bytes) -> str:
        self.calls.append(("certificate", user))
        cert = x509.load_der_x509_certificate(cert_der)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        if cn != CLIENT_CN:
            raise AuthenticationFailed("Certificat non rattaché à une boîte aux lettres")
        return APP


def make_store(url: str, root: Path) -> MailStore:
    db = Database(url)
    Base.metadata.create_all(db.engine, tables=[MailFolder.__table__, MailMessage.__table__])
    blobs = LocalBlobStore(root / "blobs")
    keys = KeyRing.load_or_create(root / "keys")
    return MailStore(db, blobs, keys)


@dataclass
class ImapEnv:
    store: MailStore
    server: ImapServer
    pki: Pki
    root: Path
    authenticator: FakeAuthenticator
    events: list[tuple[str, str | None, dict[str, object]]] = field(default_factory=list)

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    @property
    def tls_port(self) -> int:
        port = self.server.tls_port
        assert port is not None
        return port

    def plain(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=10)

    def tls(self, *, cert: bool = False, stranger: bool = False) -> imaplib.IMAP4_SSL:
        context = client_context(self.pki, cert=cert, stranger=stranger)
        return imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=context, timeout=10)

    def login(self, token: str = "tok-alice") -> imaplib.IMAP4_SSL:
        imap = self.tls()
        imap.login(TOKENS[token], token)
        return imap

    def second_store(self) -> MailStore:
        """Another MailStore on the same database and blobs: a different process's view (its
        deliveries do not go through this store's in-process notifier)."""
        return MailStore(Database(self.store.db.url), self.store.blobs, self.store.keys)


ImapFactory = Callable[..., ImapEnv]


@pytest.fixture(name="imap_factory")
def imap_factory_fixture(tmp_path: Path) -> Iterator[ImapFactory]:
    """Builds servers (each with its own store) with the given ``ImapServer`` options."""
    pki = make_pki(tmp_path / "pki")
    threads: list[ImapThread] = []
    stores: list[MailStore] = []
    lock = threading.Lock()

    def build(**options: Any) -> ImapEnv:
        root = tmp_path / f"env{len(stores)}"
        store = make_store(f"sqlite:///{root / 'mail.sqlite3'}", root)
        for address in (ALICE, BOB):
            store.ensure_mailbox(address)
        authenticator = FakeAuthenticator()
        events: list[tuple[str, str | None, dict[str, object]]] = []

        def on_event(kind: str, mailbox: str | None, details: dict[str, object]) -> None:
            with lock:
                events.append((kind, mailbox, dict(details)))

        options.setdefault("idle_poll", 0.3)
        server = ImapServer(store, authenticator, server_context(pki), on_event=on_event, **options)
        thread = ImapThread(server)
        thread.start()
        threads.append(thread)
        stores.append(store)
        return ImapEnv(store, server, pki, root, authenticator, events)

    yield build
    for thread in threads:
        thread.stop()
    for store in stores:
        store.db.dispose()


@pytest.fixture(name="imap_env")
def imap_env_fixture(imap_factory: ImapFactory) -> ImapEnv:
    return imap_factory()


# ---------------------------------------------------------------------------------------------
# Client-side helpers: a reader for IMAP response data, and raw protocol over imaplib's socket


def parse_data(data: bytes, i: int = 0) -> tuple[Any, int]:
    """One IMAP value from ``data[i:]``: lists, quoted strings and literals as bytes, NIL as
    None, atoms as str (a ``BODY[...]<n>`` item name is one atom)."""
    while data[i : i + 1] == b" ":
        i += 1
    c = data[i : i + 1]
    if c == b"(":
        out: list[Any] = []
        i += 1
        while True:
            while data[i : i + 1] == b" ":
                i += 1
            if data[i : i + 1] == b")":
                return out, i + 1
            value, i = parse_data(data, i)
            out.append(value)
    if c == b'"':
        j, buf = i + 1, bytearray()
        while data[j : j + 1] != b'"':
            if data[j : j + 1] == b"\\":
                j += 1
            buf += data[j : j + 1]
            j += 1
        return bytes(buf), j + 1
    if c == b"{":
        end = data.index(b"}", i)
        size = int(data[i + 1 : end])
        start = end + 3
        return data[start : start + size], start + size
    j = i
    while j < len(data) and data[j : j + 1] not in (b" ", b")", b"("):
        if data[j : j + 1] == b"[":
            j = data.index(b"]", j)
        j += 1
    atom = data[i:j]
    return (None if atom == b"NIL" else atom.decode()), j


def fetch_responses(data: list[Any]) -> dict[int, dict[str, Any]]:
    """imaplib FETCH data -> {sequence number: {ITEM NAME: value}}."""
    chunks: list[bytes] = []
    for piece in data:
        head = piece[0] if isinstance(piece, tuple) else piece
        if head is None:
            continue
        text = head + b"\r\n" + piece[1] if isinstance(piece, tuple) else head
        if re.match(rb"\d+ \(", head):
            chunks.append(text)
        else:
            chunks[-1] += text
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        seq, rest = chunk.split(b" ", 1)
        items, _ = parse_data(rest)
        out[int(seq)] = {items[k].upper(): items[k + 1] for k in range(0, len(items), 2)}
    return out


def fetch(imap: imaplib.IMAP4, which: str, items: str, *, uid: bool = False) -> dict[int, Any]:
    typ, data = imap.uid("FETCH", which, items) if uid else imap.fetch(which, items)
    assert typ == "OK", data
    return fetch_responses(data)


class Raw:
    """Speak the protocol directly on an imaplib connection (``send``/``readline``/``read`` are
    public imaplib methods): for LITERAL+, IDLE, SASL-IR and exact response order."""

    def __init__(self, imap: imaplib.IMAP4) -> None:
        self.imap = imap
        self.count = 0

    def send(self, data: bytes) -> None:
        self.imap.send(data)

    def line(self) -> bytes:
        """One logical response line (literals inlined), without CRLF."""
        out = b""
        while True:
            line = self.imap.readline()
            if not line:
                raise EOFError("connection closed")
            m = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if not m:
                return out + line.rstrip(b"\r\n")
            out += line + self.imap.read(int(m.group(1)))

    def command(self, text: bytes | str) -> list[bytes]:
        self.count += 1
        tag = b"R%d" % self.count
        data = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines
