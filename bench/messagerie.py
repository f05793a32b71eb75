"""MSSanté benchmark (issue #6, « Performance »): relay A→B over mutual TLS, IMAP latency in a
10,000-message mailbox, beside a reference relay (Debian's Postfix) run by the same script.

    python bench/messagerie.py [--database-url URL] [--messages 300] [--connections 1,2,4,8,16]
        [--size 10000] [--mailbox 10000] [--reference postfix|none] [--b-process]
        [--profile relay|none] [--steps submission,relay,imap,reference,profile] [--keep]

Two operators are built as ``tests/messagerie/conftest.py`` builds them: one test PKI playing
IGC-Santé, a liste blanche naming both, the tests' annuaire scenario in migrated databases,
mailboxes made by ``service.create_mailbox``, tokens from the development IdP. Operator A runs
on ``--database-url`` (a scratch database is created on that PostgreSQL server, CREATEDB
needed, and dropped at the end unless ``--keep``) or on a new SQLite file; B on SQLite. Both
run in this process, as in the tests and the demo (they share its GIL); ``--b-process`` serves
B from a child process instead. Messages are letters of ``--size`` bytes with a PDF-like
attachment, each with its own Message-ID.

1. submission: ``smtplib`` clients (STARTTLS, XOAUTH2) send to A's submission port, 1 and 4
   connections; messages/s acknowledged (250 = sealed, fsync'd and committed in A's queue),
   refusals counted with their reply, queued rows compared with acknowledged messages;
2. relay: A's queue is filled with ``--messages`` messages through ``queue.enqueue``; then
   ``queue.lease`` takes them all and N asyncio tasks drive ``queue.relay_one`` over disjoint
   slices (at most ``--batch`` messages per connection, ``run_once`` takes 200) and settle
   each connection's outcomes as ``run_once`` does (``queue.settle_many`` where the queue has
   it, else ``queue.settle`` per message), for N in ``--connections``. The rate is end to
   end: from the lease until every message is sent by A, durably stored at B (B answers 250
   after its commit; the count in B's database is checked) and settled at A. The same volume
   then goes through the worker as it is (``queue.run_once`` rounds: one connection per
   domain). Each parcours round is followed by the Postfix rounds of the same N, so that the
   load of the machine weighs on both alike;
3. IMAP: 500 messages delivered by A's ``MailStore.deliver`` (the durable delivery rate),
   the rest of ``--mailbox`` by the same code on a view of A's database and blob directory
   without the durability syncs (a bulk fill, not a figure); over implicit TLS with
   ``imaplib``: SELECT, UID SEARCH ALL, ``UID FETCH <random uid> (BODY.PEEK[])`` p50/p99 (the
   server's threads sampled meanwhile), ``FETCH 1:* (FLAGS)``, ``UID SEARCH SUBJECT <one
   subject>``; at a tenth of the size too, to show how the figures grow;
4. reference: two throw-away Postfix instances (``postfix -c <dir>/etc``, their own queue,
   data directory and log under the temporary directory, loopback ports, no chroot). Postfix
   A receives the same messages over SMTP (STARTTLS, 4 connections) and holds them
   (``check_client_access static:HOLD``); the clock starts when the hold queue is released
   (``postsuper -H ALL`` + ``postqueue -f``): A relays over TLS 1.2+ with its certificate from
   the same PKI (policy ``verify match=<B's name>``) to Postfix B, which requires a client
   certificate (``smtpd_tls_req_ccert``), accepts only A's fingerprint (``check_ccert_access``)
   and delivers with ``virtual`` into a Maildir (fsync'd); it stops when B's Maildir holds
   every message. Concurrency: ``smtp_destination_concurrency_limit`` and
   ``initial_destination_concurrency`` = N. Two settings of A (``--postfix-modes``): Postfix's
   default (``sans-reuse``: a TLS handshake per message) and ``smtp_tls_connection_reuse``
   (``reuse``: connections kept, through tlsproxy); the faster is the reference for each N.
   Skipped, with the reason, when Postfix is absent or we are not root (``apt-get install
   postfix``);
5. profile of the relay: the per-message work of the relay replayed synchronously in this
   thread (A opens the sealed copy; B checks, stores and traces as its DATA handler does; A
   settles; no SMTP, no TLS) under pyinstrument, with SQL statements, COMMITs and blob fsyncs
   counted; then a wall-clock sampler over every thread during a real relay round with 4
   connections (pyinstrument samples only the thread that starts it, and the relay runs in
   the event loop, aiosmtpd's thread and the ``to_thread`` workers).

A table of figures and targets ends the run (target: relay ≥ 50 % of the reference rate). The
machine's load is printed: clients, servers and Postfix share its cores with whatever else
runs there.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import imaplib
import json
import logging
import os
import pwd
import random
import shutil
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, localtime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import Envelope
from cryptography.hazmat.primitives import hashes
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import make_url

from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.auth.tokens import StaticJwks, TokenVerifier
from parcours.config import Settings
from parcours.messagerie import queue, service
from parcours.messagerie.listeblanche import Entry, to_xml
from parcours.messagerie.mailstore import MailFolder, MailMessage, MailStore
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.operator import Operator, OperatorConfig
from parcours.messagerie.pki import Issued, TestPki
from parcours.messagerie.smtp import RelayHandler, check_content
from parcours.storage import migrate
from parcours.storage.blobs import LocalBlobStore
from parcours.storage.db import Database, normalise_url

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the tests' annuaire scenario is reused, not copied
    sys.path.insert(0, str(ROOT))


def _scenario() -> tuple[Any, str, str, str]:
    with warnings.catch_warnings():  # tests.scenario imports starlette's TestClient
        warnings.simplefilter("ignore")
        from tests.scenario import DUPONT, LEGALL, MARTIN, load_scenario

    return load_scenario, DUPONT, LEGALL, MARTIN


load_scenario, DUPONT, LEGALL, MARTIN = _scenario()
# The operators of tests/messagerie/conftest.py.
DOMAIN_A, PATIENTS_A, DOMAIN_B = (
    "territoire.mssante.test",
    "patient.mssante.test",
    "chu.mssante.test",
)
DUPONT_A = f"elise.dupont@{DOMAIN_A}"
LEGALL_A = f"yann.legall@{DOMAIN_A}"
MARTIN_B = f"paul.martin@{DOMAIN_B}"
HOST_A, HOST_B = "mx.territoire.mssante.test", "mx.chu.mssante.test"
STEPS = ("submission", "relay", "imap", "reference", "profile")
PARAGRAPH = (
    "Madame, Monsieur, cher confrère,\n\nJe vous adresse le compte rendu de la consultation "
    "de ce jour pour votre patiente, revue pour le suivi d'une hypertension artérielle "
    "essentielle traitée depuis 2019. Tension artérielle à 13/8 aux deux bras, fréquence "
    "cardiaque régulière à 72 par minute, pas de douleur thoracique ni de dyspnée d'effort. "
    "Le bilan biologique montre une fonction rénale normale et une kaliémie à 4,1 mmol/l. "
    "Poursuite de l'amlodipine 5 mg le matin, contrôle dans six mois.\n\n"
    "Bien confraternellement,\nDr Élise Dupont\n"
)
MID_HOLE = b"0" * 32  # replaced by a fresh hex UUID: every message has its own Message-ID
SUBJECT_HOLE = b"CR00000"  # replaced by CR<n>: what the IMAP SEARCH looks for


# --- small helpers ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50_p99(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.2f} ms  p99 {percentile(values, 0.99):7.2f} ms"


def verdict(ok: bool) -> str:
    return "atteint" if ok else "NON atteint"


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, label: str, value: str, target: str = "") -> None:
        self.rows.append((label, value, target))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        print()
        print(f"{'mesure':<{width}}  {'valeur':<{vwidth}}  objectif")
        print("-" * (width + vwidth + 30))
        for label, value, target in self.rows:
            print(f"{label:<{width}}  {value:<{vwidth}}  {target}")


@contextmanager
def scratch_database(url: str, keep: bool, workdir: Path) -> Iterator[str]:
    """A fresh database for operator A: on the PostgreSQL server of ``url``, or a new SQLite
    file (``sqlite:///`` URL, or a temporary file without URL)."""
    if not url or make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database) if url else workdir / "a.sqlite3"
        if path.exists():
            raise SystemExit(f"{path} existe déjà : donnez un nouveau fichier SQLite.")
        try:
            yield f"sqlite:///{path}"
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            else:
                print(f"base conservée : sqlite:///{path}")
        return
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    name = f"parcours_bench_messagerie_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(normalise_url(url)).set(database=name)
    try:
        yield scratch.render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"base conservée : {scratch.render_as_string(hide_password=True)}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def message_template(size: int) -> bytes:
    """A letter of about ``size`` bytes (CRLF): French text and a PDF-like attachment, with a
    hole for the Message-ID and one for a subject number."""
    msg = EmailMessage()
    msg["From"] = DUPONT_A
    msg["To"] = MARTIN_B
    msg["Subject"] = f"Compte rendu de consultation {SUBJECT_HOLE.decode()}"
    msg["Date"] = format_datetime(localtime())
    msg["Message-ID"] = f"<{MID_HOLE.decode()}@{DOMAIN_A}>"
    msg.set_content(PARAGRAPH)
    base = len(msg.as_bytes(policy=policy.SMTP))
    room = max(0, size - base - 400)  # MIME boundaries and part headers
    if room:
        rng = random.Random(7)
        payload = rng.randbytes(room * 3 // 4 * 76 // 78)
        msg.add_attachment(
            payload, maintype="application", subtype="pdf", filename="compte-rendu.pdf"
        )
    return msg.as_bytes(policy=policy.SMTP)


def personalise(template: bytes, n: int) -> bytes:
    raw = template.replace(MID_HOLE, uuid.uuid4().hex.encode(), 1)
    return raw.replace(SUBJECT_HOLE, b"CR%05d" % (n % 100_000), 1)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- the two operators of tests/messagerie/conftest.py -----------------------------------------


@dataclass
class Pair:
    a: Operator
    b: Operator  # with --b-process: built here (database, sealed store) but served by a child
    settings: Settings
    pki: TestPki
    certs: dict[str, Issued]
    child: subprocess.Popen[str] | None = None

    def token(self, idnat: str) -> str:
        key = keys.load_or_create(self.settings.keys_dir)
        return mint_token(
            key,
            issuer=self.settings.dev_issuer,
            audience=self.settings.audience,
            subject=idnat,
            claims={"actor": "professional", "idnat_ps": idnat, "profession": "10"},
            ttl_seconds=3600,
        )

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.bundle))

    def smtp(self, who: str, token: str) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.a.ports["submission"], timeout=60)
        client.starttls(context=self.client_context())
        client.ehlo()
        client.auth("XOAUTH2", lambda _=None: f"user={who}\x01auth=Bearer {token}\x01\x01")
        return client

    def imap(self, op: Operator, who: str, token: str) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", op.ports["imaps"], ssl_context=self.client_context(), timeout=600
        )
        client.authenticate(
            "XOAUTH2", lambda _: f"user={who}\x01auth=Bearer {token}\x01\x01".encode()
        )
        return client

    def stop(self) -> None:
        self.a.stop()
        if self.child is not None:
            assert self.child.stdin is not None
            self.child.stdin.close()  # the child stops B when its standard input closes
            try:
                self.child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.child.kill()
        self.b.stop()


def _database(url: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    db = Database(url)
    migrate.upgrade(db)
    load_scenario(db, directory)
    db.dispose()


def _verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        {settings.dev_issuer: StaticJwks.from_signing_key(keys.load_or_create(settings.keys_dir))},
        audience=settings.audience,
    )


def _settings(work: Path, url: str) -> Settings:
    return Settings(env="development", data_dir=work, database_url=url, base_url="http://bench")


def operator_b(work: Path, settings: Settings) -> Operator:
    """Operator B of the conftest (its certificate, SQLite database and data directory are
    under ``work``): the same in this process and in the child of ``--b-process``."""
    pki = TestPki(work / "pki")
    cert = pki.load("operateur-b")
    assert cert is not None
    return Operator(
        OperatorConfig(
            name="b",
            hostname=HOST_B,
            domains=(DOMAIN_B,),
            database_url=f"sqlite:///{work / 'b.sqlite3'}",
            data_dir=work / "op-b",
            cert=cert.cert,
            key=cert.key,
            ca_bundle=pki.bundle,
            liste_blanche=work / "listeblanche.xml",
        ),
        _verifier(settings),
    )


def serve_b(work: Path) -> None:
    """``--serve-b``: run operator B until standard input closes; its ports on stdout."""
    b = operator_b(work, _settings(work, f"sqlite:///{work / 'b.sqlite3'}"))
    b.start()
    print(json.dumps(b.ports), flush=True)
    sys.stdin.read()
    b.stop()


def build_operators(url_a: str, work: Path, b_process: bool) -> Pair:
    pki = TestPki(work / "pki")
    certs = {
        "a": pki.issue("operateur-a", cn=HOST_A, ou="33528293200013", o="GCS TERRITOIRE"),
        "b": pki.issue("operateur-b", cn=HOST_B, ou="1350000014", o="CHU DE TEST"),
    }
    liste = work / "listeblanche.xml"
    liste.write_bytes(
        to_xml(
            [
                Entry(DOMAIN_A, "Opérateur du territoire", certs["a"].dn),
                Entry(PATIENTS_A, "Messagerie des patients", certs["a"].dn),
                Entry(DOMAIN_B, "CHU de test", certs["b"].dn),
            ]
        )
    )
    _database(url_a, work / "annuaire-a")
    _database(f"sqlite:///{work / 'b.sqlite3'}", work / "annuaire-b")
    settings = _settings(work, url_a)
    a = Operator(
        OperatorConfig(
            name="a",
            hostname=HOST_A,
            domains=(DOMAIN_A, PATIENTS_A),
            patient_domains=(PATIENTS_A,),
            database_url=url_a,
            data_dir=work / "op-a",
            cert=certs["a"].cert,
            key=certs["a"].key,
            ca_bundle=pki.bundle,
            liste_blanche=liste,
        ),
        _verifier(settings),
    )
    b = operator_b(work, settings)
    service.create_mailbox(
        b.db, address=MARTIN_B, kind="PER", owner="8" + MARTIN, hosted_domains=(DOMAIN_B,)
    )
    child = None
    if b_process:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve-b", str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        b.ports = json.loads(child.stdout.readline())
    else:
        b.start()
    a.config.routes[DOMAIN_B] = ("127.0.0.1", b.ports["relay"])
    a.ctx.routes[DOMAIN_B] = ("127.0.0.1", b.ports["relay"])
    # A's own worker stays off: the benchmark drives the relay functions itself.
    a.start(relay_worker=False)
    b.ctx.routes[DOMAIN_A] = ("127.0.0.1", a.ports["relay"])
    hosted_a = (DOMAIN_A, PATIENTS_A)
    service.create_mailbox(
        a.db, address=DUPONT_A, kind="PER", owner="8" + DUPONT, hosted_domains=hosted_a
    )
    service.create_mailbox(
        a.db, address=LEGALL_A, kind="PER", owner="8" + LEGALL, hosted_domains=hosted_a
    )
    return Pair(a, b, settings, pki, certs, child)


def stored_in(op: Operator, address: str) -> int:
    with op.db.session() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(MailMessage)
                .join(MailFolder, MailFolder.id == MailMessage.folder_id)
                .where(MailFolder.mailbox == address)
            ).scalar_one()
        )


def queue_status(op: Operator) -> dict[str, int]:
    with op.db.session() as session:
        return dict(
            session.execute(  # type: ignore[arg-type]
                select(QueuedMessage.status, func.count()).group_by(QueuedMessage.status)
            ).all()
        )


# --- 1. submission ------------------------------------------------------------------------------


@dataclass
class Submission:
    rate: float  # messages acknowledged per second
    latencies: list[float]  # ms, acknowledged messages
    failures: collections.Counter[str]  # refusal or error -> count


def bench_submission(pair: Pair, template: bytes, clients: int, count: int) -> Submission:
    """``count`` messages over ``clients`` authenticated connections (opened before the clock
    starts). A refused message is counted with its reply; its connection is replaced."""
    token = pair.token("8" + DUPONT)
    connections = [pair.smtp(DUPONT_A, token) for _ in range(clients)]
    messages = [personalise(template, i) for i in range(count)]
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        client = connections[k]
        mine: list[float] = []
        failed: list[str] = []
        start.wait()
        for raw in messages[k::clients]:
            t0 = time.perf_counter()
            try:
                refused = client.sendmail(DUPONT_A, [MARTIN_B], raw)
            except smtplib.SMTPResponseException as exc:
                failed.append(f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')[:90]}")
                # After aiosmtpd's 500 the replies are out of step: a new connection.
                client.close()
                client = connections[k] = pair.smtp(DUPONT_A, token)
                continue
            if refused:
                failed.append(str(refused)[:100])
                continue
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)
            failures.update(failed)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    for client in connections:
        client.quit()
    return Submission(len(latencies) / elapsed, latencies, failures)


def park_queued(pair: Pair) -> int:
    """Submitted messages are not part of the relay rounds: out of the queue's way. Returns
    how many there were (each acknowledged submission left one row)."""
    with pair.a.db.session() as session:
        done = session.execute(
            update(QueuedMessage)
            .where(QueuedMessage.status == "queued")
            .values(status="bench-soumis")
        )
        return int(done.rowcount or 0)


# --- 2. relay -----------------------------------------------------------------------------------


def fill_queue(pair: Pair, template: bytes, count: int, threads: int = 4) -> float:
    """``count`` messages for MARTIN_B into A's queue through ``queue.enqueue``: seconds."""
    ctx = pair.a.ctx
    recipients = [queue.Recipient(MARTIN_B, {})]

    def one(i: int) -> None:
        queue.enqueue(ctx, DUPONT_A, recipients, personalise(template, i), {})

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def load_rows(pair: Pair, ids: list[int]) -> list[QueuedMessage]:
    with pair.a.db.session() as session:
        rows = list(
            session.execute(
                select(QueuedMessage).where(QueuedMessage.id.in_(ids)).order_by(QueuedMessage.id)
            ).scalars()
        )
        session.expunge_all()
    return rows


def settle_outcomes(ctx: Any, worker: str, outcomes: dict[int, queue.Attempt]) -> None:
    """As ``run_once`` does: one ``settle_many`` per connection's batch where the queue has
    it, else one ``settle`` (and its transaction) per message."""
    many = getattr(queue, "settle_many", None)
    if many is not None:
        many(ctx, worker, outcomes)
        return
    for row_id, attempt in outcomes.items():
        queue.settle(ctx, worker, row_id, attempt)


async def relay_round(
    pair: Pair, connections: int, batch: int, expected: int
) -> tuple[float, collections.Counter[int]]:
    """Lease every due row, relay them over ``connections`` concurrent connections (each a
    slice of the rows, ``batch`` per ``relay_one`` call), settle each outcome: seconds and
    reply codes."""
    ctx = pair.a.ctx
    worker = f"bench-{uuid.uuid4().hex[:8]}"
    codes: collections.Counter[int] = collections.Counter()
    t0 = time.perf_counter()
    ids = await asyncio.to_thread(queue.lease, ctx, worker, expected, 3600.0)
    rows = await asyncio.to_thread(load_rows, pair, ids)
    tls = queue.client_context(ctx)

    async def one(part: list[QueuedMessage]) -> None:
        for start in range(0, len(part), batch):
            outcome = await queue.relay_one(ctx, tls, DOMAIN_B, part[start : start + batch])
            codes.update(attempt.code for attempt in outcome.values())
            await asyncio.to_thread(settle_outcomes, ctx, worker, outcome)

    await asyncio.gather(*(one(rows[k::connections]) for k in range(connections)))
    return time.perf_counter() - t0, codes


async def worker_rounds(pair: Pair) -> tuple[float, int]:
    """The worker as it is: ``run_once`` until the queue is empty."""
    worker = f"bench-worker-{uuid.uuid4().hex[:6]}"
    total = 0
    t0 = time.perf_counter()
    while count := await queue.run_once(pair.a.ctx, worker):
        total += count
    return time.perf_counter() - t0, total


@dataclass
class RelayFigure:
    label: str
    connections: int
    rate: float
    fill_rate: float
    reference: dict[str, float] = field(default_factory=dict)  # Postfix mode -> msg/s


def parcours_round(pair: Pair, template: bytes, n: int, messages: int, batch: int) -> RelayFigure:
    """Fill A's queue, relay it with ``n`` connections (0: the worker's ``run_once``)."""
    fill = fill_queue(pair, template, messages)
    before = stored_in(pair.b, MARTIN_B)
    if n:
        elapsed, codes = asyncio.run(relay_round(pair, n, batch, messages))
    else:
        elapsed, done = asyncio.run(worker_rounds(pair))
        codes = collections.Counter({250: done})
    stored = stored_in(pair.b, MARTIN_B) - before
    status = queue_status(pair.a)
    ok = stored == messages and codes.get(250, 0) == messages and not status.get("queued")
    rate = messages / elapsed
    label = f"{n} conn." if n else "worker actuel (run_once)"
    print(
        f"    parcours {label:>24} : {messages} en {elapsed:6.2f} s = {rate:6.1f} msg/s"
        f"  (mise en file {messages / fill:5.0f} msg/s ; stockés chez B : {stored}"
        f"{'' if ok else f' ; ANOMALIE codes={dict(codes)} file={status}'})"
    )
    return RelayFigure(label, n, rate if ok else 0.0, messages / fill)


def bench_relay(
    pair: Pair,
    pf: PostfixPair | None,
    template: bytes,
    counts: list[int],
    messages: int,
    batch: int,
    modes: list[str],
) -> tuple[list[RelayFigure], list[float]]:
    """parcours and Postfix one after the other for each connection count, so that the load
    of the machine weighs on both alike."""
    out, injections = [], []
    for n in counts:
        figure = parcours_round(pair, template, n, messages, batch)
        if pf is not None:
            for mode in modes:
                rate, injected = postfix_round(pf, template, n, messages, mode)
                figure.reference[mode] = rate
                injections.append(injected)
        out.append(figure)
    out.append(parcours_round(pair, template, 0, messages, batch))
    return out, injections


# --- 3. IMAP ------------------------------------------------------------------------------------


class UnsyncedBlobs(LocalBlobStore):
    """The operator's mail blob directory written without fsync: only to fill a mailbox for
    the read figures (the bytes, keys and rows are those ``MailStore.deliver`` writes)."""

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def filling_store(pair: Pair) -> MailStore:
    """A ``MailStore`` on A's database and blobs without the durability syncs (SQLite
    ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``, blobs not fsync'd)."""
    db = Database(pair.a.db.url)
    if db.dialect == "postgresql":

        def no_sync(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET synchronous_commit TO off")
            cursor.close()
            dbapi_connection.commit()

        event.listen(db.engine, "connect", no_sync)
    return MailStore(db, UnsyncedBlobs(pair.a.config.data_dir / "mss-blobs"), pair.a.ctx.keys)


def fill_mailbox(store: MailStore, template: bytes, first: int, last: int) -> float:
    """Messages ``first``..``last - 1`` into LEGALL_A's INBOX, 4 threads: seconds."""
    store.ensure_mailbox(LEGALL_A)

    def one(i: int) -> None:
        store.deliver(LEGALL_A, personalise(template, i))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(first, last)))
    return time.perf_counter() - t0


def timed(call: Callable[[], tuple[str, Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    typ, data = call()
    took = (time.perf_counter() - t0) * 1000
    if typ != "OK":
        raise RuntimeError(f"IMAP : {typ} {data!r}")
    return took, data


def bench_imap(
    pair: Pair, fetches: int, searches: int, count: int, seed: int, sample: bool
) -> dict[str, Any]:
    """Over implicit TLS: SELECT ×5, UID SEARCH ALL, ``fetches`` × UID FETCH of a random
    message (sampled over every thread when ``sample``), FETCH 1:* (FLAGS) ×3 and
    ``searches`` × UID SEARCH SUBJECT."""
    client = pair.imap(pair.a, LEGALL_A, pair.token("8" + LEGALL))
    out: dict[str, Any] = {"select": [], "fetch": [], "flags": [], "subject": [], "found": set()}
    try:
        for _ in range(5):
            took, data = timed(lambda: client.select("INBOX"))
            out["select"].append(took)
        out["exists"] = int(data[0])
        took, data = timed(lambda: client.uid("SEARCH", "ALL"))
        out["search_all"] = took
        uids = [int(u) for u in data[0].split()]
        rng = random.Random(seed)
        sizes = set()
        sampler = ThreadSampler(skip_main=True) if sample else None
        with sampler if sampler is not None else contextlib.nullcontext():
            for _ in range(fetches):
                uid = rng.choice(uids)
                took, data = timed(lambda u=uid: client.uid("FETCH", str(u), "(BODY.PEEK[])"))
                out["fetch"].append(took)
                sizes.add(len(next(p[1] for p in data if isinstance(p, tuple))))
        out["sampler"], out["fetch_sizes"] = sampler, sizes
        for _ in range(3):
            took, data = timed(lambda: client.fetch("1:*", "(FLAGS)"))
            out["flags"].append(took)
        out["flags_lines"] = sum(1 for p in data if p)
        for _ in range(searches):
            wanted = rng.randrange(count)
            took, data = timed(lambda w=wanted: client.uid("SEARCH", "SUBJECT", f"CR{w:05d}"))
            out["subject"].append(took)
            out["found"].add(len(data[0].split()))
    finally:
        client.logout()
    return out


def imap_step(pair: Pair, template: bytes, args: argparse.Namespace, figures: Figures) -> None:
    total = args.mailbox
    durable = min(500, total)
    print(f"[3] IMAP : {total:,} messages remis dans l'INBOX de {LEGALL_A}")
    took = fill_mailbox(pair.a.ctx.mailstore, template, 0, durable)
    print(f"    remise durable (MailStore.deliver de A, 4 fils) : {durable / took:,.1f} msg/s")
    figures.add(
        f"[3] remise locale durable (MailStore.deliver, 4 fils, {durable})",
        f"{durable / took:,.1f} msg/s",
    )
    store = filling_store(pair)
    done, small = durable, None
    try:
        if total >= 5_000:  # the same figures at a tenth of the size: how they grow
            took = fill_mailbox(store, template, done, total // 10)
            done = total // 10
            small = bench_imap(pair, 50, 0, done, args.seed, False)
        t0 = time.perf_counter()
        fill_mailbox(store, template, done, total)
        print(
            f"    remplissage sans fsync (MailStore.deliver) : "
            f"{(total - done) / (time.perf_counter() - t0):,.0f} msg/s"
        )
    finally:
        store.db.dispose()
    im = bench_imap(pair, args.fetches, args.searches, total, args.seed, True)
    label = f"[3] IMAP ({im['exists']:,} messages)"
    figures.add(f"{label} SELECT INBOX, médiane de 5", f"{statistics.median(im['select']):,.1f} ms")
    figures.add(f"{label} UID SEARCH ALL", f"{im['search_all']:,.1f} ms")
    figures.add(
        f"{label} UID FETCH <uid> (BODY.PEEK[]) ×{args.fetches}",
        p50_p99(im["fetch"]),
        f"à {small['exists']:,} messages : {p50_p99(small['fetch'])}" if small else "",
    )
    figures.add(
        f"{label} FETCH 1:* (FLAGS), médiane de 3",
        f"{statistics.median(im['flags']):,.1f} ms",
        f"à {small['exists']:,} messages : {statistics.median(small['flags']):,.1f} ms"
        if small
        else "",
    )
    if small:
        figures.add(
            f"[3] IMAP ({small['exists']:,} messages) SELECT INBOX, médiane de 5",
            f"{statistics.median(small['select']):,.1f} ms",
        )
    if im["subject"]:
        figures.add(
            f"{label} UID SEARCH SUBJECT CRnnnnn",
            f"{statistics.median(im['subject']):,.0f} ms",
            f"messages trouvés : {sorted(im['found'])}",
        )
    print(
        f"    SELECT {statistics.median(im['select']):.1f} ms, FETCH {p50_p99(im['fetch'])}, "
        f"FLAGS {statistics.median(im['flags']):.1f} ms ({im['flags_lines']} lignes), "
        f"SEARCH SUBJECT {[round(t) for t in im['subject']]} ms, "
        f"tailles servies {sorted(im['fetch_sizes'])}"
    )
    print(f"    échantillonnage des fils du serveur pendant les {args.fetches} UID FETCH :")
    im["sampler"].report(10)


# --- 4. the reference: Debian's Postfix ---------------------------------------------------------

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
tlsproxy  unix  - - n - 0 tlsproxy
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_unavailable() -> str | None:
    if not Path(POSTFIX).exists():
        return (
            "Postfix absent (paquet Debian « postfix » : "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)"
        )
    if os.geteuid() != 0:
        return "Postfix présent, mais ses démons doivent être lancés par root (postfix start)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "utilisateur système « postfix » absent : paquet mal installé"
    return None


class PostfixInstance:
    """A throw-away Postfix under ``base``: ``etc`` is its config_directory (main.cf,
    master.cf, tables), ``queue`` and ``data`` beside it (postfix-script wants nothing but
    root's files under the configuration); no chroot; logs in ``base/maillog``."""

    def __init__(self, base: Path, name: str, port: int, params: dict[str, str]) -> None:
        self.base, self.name, self.port = base, name, port
        self.root, self.queue, data = base / "etc", base / "queue", base / "data"
        for directory in (self.root, self.queue, data):
            directory.mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwnam("postfix")
        os.chown(data, owner.pw_uid, owner.pw_gid)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(data),
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "local_transport": "error:pas de distribution locale",
            "maillog_file": str(base / "maillog"),
            "maillog_file_prefixes": str(base),
            "syslog_name": f"postfix-bench-{name}",
            "biff": "no",
            "smtputf8_enable": "no",
            "append_dot_mydomain": "no",
            "message_size_limit": str(10 * 1024 * 1024),
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtp_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtp_tls_protocols": ">=TLSv1.2",
            **params,
        }
        (self.root / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.root / "master.cf").write_text(MASTER_CF.format(port=port))

    def run(self, command: str, *args: str) -> str:
        done = subprocess.run(
            [command, "-c", str(self.root), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{command} {' '.join(args)} ({self.name}) : {done.stderr.strip()[-600:]}"
            )
        return done.stdout

    def start(self) -> None:
        self.run(POSTFIX, "start")
        if not wait_until(lambda: self._listening(), 20, 0.1):
            raise RuntimeError(f"Postfix {self.name} n'écoute pas sur {self.port} : {self.log()}")

    def _listening(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as probe:
                probe.noop()
            return True
        except OSError:
            return False

    def configure(self, **params: str) -> None:
        self.run("postconf", "-e", *(f"{k}={v}" for k, v in params.items()))
        self.run(POSTFIX, "reload")
        time.sleep(0.5)  # reload restarts qmgr and the services

    def stop(self) -> None:
        try:
            self.run(POSTFIX, "stop")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"    (arrêt de Postfix {self.name} : {exc})")

    def count(self, queue_name: str) -> int:
        base = self.queue / queue_name
        return sum(len(files) for _, _, files in os.walk(base)) if base.exists() else 0

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace")[-1500:] if path.exists() else "(pas de journal)"


def cert_fingerprint(issued: Issued) -> str:
    return ":".join(f"{b:02X}" for b in issued.certificate.fingerprint(hashes.SHA256()))


@dataclass
class PostfixPair:
    a: PostfixInstance
    b: PostfixInstance
    maildir: Path
    bundle: Path

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


def build_postfix(pair: Pair, work: Path) -> PostfixPair:
    from parcours.messagerie.smtp import free_port

    root = work / "postfix"
    root.mkdir()
    root.chmod(0o755)  # virtual(8) writes the Maildir as an unprivileged user
    work.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    port_a, port_b = free_port(), free_port()
    a_cert, b_cert = pair.certs["a"], pair.certs["b"]
    mail = root / "b-mail"
    mail.mkdir()
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    b = PostfixInstance(
        root / "b",
        "b",
        port_b,
        {
            "myhostname": HOST_B,
            "mydomain": DOMAIN_B,
            "mynetworks": "192.0.2.1/32",  # loopback is not trusted: the certificate is
            "virtual_mailbox_domains": DOMAIN_B,
            "virtual_mailbox_base": str(mail),
            "virtual_mailbox_maps": f"texthash:{root / 'b' / 'etc' / 'vmailbox'}",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_cert_file": str(b_cert.cert),
            "smtpd_tls_key_file": str(b_cert.key),
            "smtpd_tls_CAfile": str(pair.pki.bundle),
            "smtpd_tls_ask_ccert": "yes",
            "smtpd_tls_req_ccert": "yes",
            "smtpd_tls_fingerprint_digest": "sha256",
            "smtpd_client_restrictions": (
                f"check_ccert_access texthash:{root / 'b' / 'etc' / 'ccerts'}, reject"
            ),
        },
    )
    (b.root / "vmailbox").write_text(f"{MARTIN_B} martin/\n")
    (b.root / "ccerts").write_text(f"{cert_fingerprint(a_cert)} OK\n")
    a = PostfixInstance(
        root / "a",
        "a",
        port_a,
        {
            "myhostname": HOST_A,
            "mydomain": DOMAIN_A,
            "mynetworks": "127.0.0.0/8",
            "relay_domains": DOMAIN_B,
            "transport_maps": f"texthash:{root / 'a' / 'etc' / 'transport'}",
            # The injected messages wait in the hold queue until the measured release.
            "smtpd_client_restrictions": "check_client_access static:HOLD",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(a_cert.cert),
            "smtpd_tls_key_file": str(a_cert.key),
            "smtp_tls_cert_file": str(a_cert.cert),
            "smtp_tls_key_file": str(a_cert.key),
            "smtp_tls_CAfile": str(pair.pki.bundle),
            "smtp_tls_policy_maps": f"texthash:{root / 'a' / 'etc' / 'tls_policy'}",
        },
    )
    (a.root / "transport").write_text(f"{DOMAIN_B} smtp:[127.0.0.1]:{port_b}\n")
    (a.root / "tls_policy").write_text(f"[127.0.0.1]:{port_b} verify match={HOST_B}\n")
    b.start()
    a.start()
    return PostfixPair(a, b, mail / "martin", pair.pki.bundle)


def maildir_count(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur"))
    except FileNotFoundError:
        return 0


def inject(pf: PostfixPair, template: bytes, count: int, clients: int) -> float:
    """``count`` messages into Postfix A over SMTP + STARTTLS, ``clients`` connections."""
    context = ssl.create_default_context(cafile=str(pf.bundle))
    context.check_hostname = False  # loopback address; the relay leg checks the name

    def work(k: int) -> None:
        with smtplib.SMTP("127.0.0.1", pf.a.port, timeout=60) as client:
            client.starttls(context=context)
            for i in range(k, count, clients):
                refused = client.sendmail(DUPONT_A, [MARTIN_B], personalise(template, i))
                assert not refused, refused

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return count / (time.perf_counter() - t0)


POSTFIX_MODES = {
    "sans-reuse": "no",  # Postfix's default: a new TLS connection per message
    "reuse": "yes",  # smtp_tls_connection_reuse: the connection kept, through tlsproxy
}


def postfix_round(
    pf: PostfixPair, template: bytes, n: int, messages: int, mode: str
) -> tuple[float, float]:
    """Inject into A's hold queue, release, wait until B's Maildir has them all: (msg/s,
    injection msg/s)."""
    pf.a.configure(
        smtp_destination_concurrency_limit=str(n),
        initial_destination_concurrency=str(n),
        smtp_tls_connection_reuse=POSTFIX_MODES[mode],
    )
    injected = inject(pf, template, messages, clients=4)
    if not wait_until(lambda: pf.a.count("hold") >= messages, 60):
        raise RuntimeError(f"file hold de Postfix A : {pf.a.count('hold')}\n{pf.a.log()}")
    before = maildir_count(pf.maildir)
    t0 = time.perf_counter()
    pf.a.run("postsuper", "-H", "ALL")
    pf.a.run("postqueue", "-f")
    done = wait_until(lambda: maildir_count(pf.maildir) - before >= messages, 600, 0.005)
    elapsed = time.perf_counter() - t0
    if not done:
        raise RuntimeError(
            f"Postfix : {maildir_count(pf.maildir) - before}/{messages} remis\n{pf.a.log()}"
        )
    rate = messages / elapsed
    print(
        f"    Postfix  {f'{n} conn., {mode}':>24} : {messages} en {elapsed:6.2f} s = "
        f"{rate:6.1f} msg/s  (réception SMTP par A : {injected:5.0f} msg/s)"
    )
    for sub in ("new", "cur"):
        for name in os.listdir(pf.maildir / sub):
            (pf.maildir / sub / name).unlink()
    return rate, injected


# --- 5. profile of the relay --------------------------------------------------------------------

_WRITES = ("INSERT", "UPDATE", "DELETE")


@contextmanager
def counting(pair: Pair) -> Iterator[dict[str, float]]:
    """SQL statements (and their time), COMMITs of a transaction that wrote (on SQLite with
    ``durable=True`` each is a WAL fsync, made inside SQLite: not counted below) and of one
    that only read, and ``os.fsync`` calls (the blob store's) with their time."""
    stats = {"sql": 0, "sql_s": 0.0, "commit_w": 0, "commit_r": 0, "fsync": 0, "fsync_s": 0.0}
    local = threading.local()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        t0 = time.perf_counter()
        real_fsync(fd)
        stats["fsync"] += 1
        stats["fsync_s"] += time.perf_counter() - t0

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        local.t0 = time.perf_counter()
        if statement.lstrip()[:6].upper() in _WRITES:
            conn.info["bench_wrote"] = True

    def after(*_: Any) -> None:
        stats["sql"] += 1
        stats["sql_s"] += time.perf_counter() - local.t0

    def commit(conn: Any) -> None:
        stats["commit_w" if conn.info.pop("bench_wrote", False) else "commit_r"] += 1

    engines = [pair.a.db.engine, pair.b.db.engine]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "commit", commit)
    os.fsync = fsync
    try:
        yield stats
    finally:
        os.fsync = real_fsync
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            event.remove(engine, "commit", commit)


def replay_relay(pair: Pair, rows: list[QueuedMessage], worker: str) -> None:
    """What the relay does for each message, minus SMTP and TLS, in this thread: A opens the
    sealed copy; B checks the content and the recipient, stores and traces (its DATA
    handler's steps); then A settles the batch as the worker does."""
    a, b = pair.a.ctx, pair.b.ctx
    handler = RelayHandler(b)
    outcomes: dict[int, queue.Attempt] = {}
    for row in rows:
        raw = queue.queued_bytes(a, row)
        assert check_content(raw, None, strict_mss=False) is None
        assert handler._verdict(row.mail_from, row.recipient) is None
        envelope = Envelope()
        envelope.mail_from, envelope.rcpt_tos = row.mail_from, [row.recipient]
        envelope.original_content = raw
        handler._patient_threads(envelope)
        received = f"Received: from {HOST_A} ([127.0.0.1])\r\n\tby {HOST_B} (parcours)\r\n"
        queue.accept(
            b, row.mail_from, [queue.Recipient(row.recipient, {})], received.encode() + raw
        )
        service.trace(
            b.db,
            "mss-relais-entrant",
            row.recipient,
            outcome=250,
            message_id=queue.message_id_of(raw),
            detail=f"expéditeur={row.mail_from}; pair=bench; taille={len(raw)}",
            client_ip="127.0.0.1",
        )
        outcomes[row.id] = queue.Attempt(250, "2.0.0 Message accepte")
    settle_outcomes(a, worker, outcomes)


def profile_tree(root: Any, limit: int) -> None:
    """Own time by line, own time by layer, and inclusive time of parcours functions (each
    counted once per stack)."""
    spots: dict[str, float] = collections.defaultdict(float)
    layers: dict[str, float] = collections.defaultdict(float)
    inclusive: dict[str, float] = collections.defaultdict(float)
    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        frame, seen = stack.pop()
        real = [c for c in frame.children if not c.is_synthetic]
        if not frame.is_synthetic:
            own = frame.time - sum(c.time for c in real)
            where = frame.file_path_short or "?"
            spots[f"{frame.function}  {where}:{frame.line_no}"] += own
            layers[where.split("/")[0] if "/" in where else where] += own
            if "/parcours/" in (frame.file_path or "") and "/bench/" not in frame.file_path:
                key = f"{frame.function}  {where}"
                if key not in seen:
                    inclusive[key] += frame.time
                    seen = seen | {key}
        stack += [(c, seen) for c in real]
    total = root.time or 1.0
    print("    pyinstrument, temps inclus des fonctions parcours :")
    for key, took in sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"      {took / total:6.1%}  {key}")
    print("    pyinstrument, temps propre par ligne :")
    for key, own in sorted(spots.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"      {own / total:6.1%}  {key}")
    print(
        "    temps propre par couche : "
        + ", ".join(
            f"{k} {v / total:.0%}" for k, v in sorted(layers.items(), key=lambda kv: -kv[1])[:8]
        )
    )


def profile_replay(pair: Pair, template: bytes, n: int) -> dict[str, float]:
    """pyinstrument over ``n`` replayed relays; returns per-message counts."""
    fill_queue(pair, template, n)
    worker = f"bench-profil-{uuid.uuid4().hex[:6]}"
    rows = load_rows(pair, queue.lease(pair.a.ctx, worker, n, 3600.0))
    profiler: Any = None
    try:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    except ImportError:
        print("(pyinstrument absent : pas de profil par fonction)")
    with counting(pair) as stats:
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.start()
        replay_relay(pair, rows, worker)
        if profiler is not None:
            profiler.stop()
        elapsed = time.perf_counter() - t0
    per = {k: v / n for k, v in stats.items()}
    per["ms"] = elapsed / n * 1000
    print(
        f"\n[5] relais rejoué sans SMTP ni TLS, {n} messages, dans ce fil : {per['ms']:.2f} ms "
        f"par message ; par message : {per['sql']:.1f} requêtes SQL "
        f"({per['sql_s'] * 1000:.2f} ms), {per['commit_w']:.1f} COMMIT d'écriture + "
        f"{per['commit_r']:.1f} de lecture, {per['fsync']:.1f} fsync de blob "
        f"({per['fsync_s'] * 1000:.2f} ms)"
    )
    session = profiler.last_session if profiler is not None else None
    root = session.root_frame() if session is not None else None
    if root is not None:
        profile_tree(root, 16)
    return per


# Leaf frames of a thread that waits for work (not for a resource it is using).
_IDLE = {
    ("select", "selectors.py"),
    ("_worker", "thread.py"),
    ("wait", "threading.py"),
    ("readline", "socket.py"),
}


class ThreadSampler:
    """Samples the Python stack of every thread each ``interval`` seconds (wall clock) and
    counts the busy ones by leaf line and by innermost parcours function. A thread waiting
    for the GIL is seen where it waits, so shares are of wall time, not of CPU."""

    def __init__(self, interval: float = 0.002, *, skip_main: bool = False) -> None:
        self.interval = interval
        self.skip_main = skip_main  # the main thread is a blocking client (imaplib)
        self.leaf: collections.Counter[str] = collections.Counter()
        self.owner: collections.Counter[str] = collections.Counter()
        self.busy = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _short(path: str) -> str:
        for marker in ("site-packages/", "/src/"):
            if marker in path:
                return path.split(marker, 1)[1]
        if "/lib/python3" in path:
            return path.split("/lib/python3", 1)[1].split("/", 1)[1]
        return path.rsplit("/", 2)[-1]

    def _sample(self) -> None:
        me, main = threading.get_ident(), threading.main_thread().ident
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me or (self.skip_main and ident == main):
                    continue
                self.samples += 1
                code = frame.f_code
                short = self._short(code.co_filename)
                if (code.co_name, short.rsplit("/", 1)[-1]) in _IDLE:
                    continue
                if ident == main and code.co_name == "sleep":
                    continue
                self.busy += 1
                self.leaf[f"{code.co_name}  {short}:{frame.f_lineno}"] += 1
                walk: Any = frame
                while walk is not None and "/parcours/" not in walk.f_code.co_filename:
                    walk = walk.f_back
                if walk is not None:
                    owner = self._short(walk.f_code.co_filename)
                    self.owner[f"{walk.f_code.co_name}  {owner}:{walk.f_lineno}"] += 1
                else:
                    self.owner[f"(hors parcours) {code.co_name}  {short}"] += 1

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, limit: int = 16) -> None:
        busy = self.busy or 1
        print(
            f"    lignes feuilles (part des échantillons actifs, {self.busy} sur {self.samples}) :"
        )
        for key, hits in self.leaf.most_common(limit):
            print(f"      {hits / busy:6.1%}  {key}")
        print("    fonction parcours la plus interne de la pile (ligne en cours) :")
        for key, hits in self.owner.most_common(limit):
            print(f"      {hits / busy:6.1%}  {key}")


def profile_live(pair: Pair, template: bytes, messages: int, connections: int) -> float:
    fill_queue(pair, template, messages)
    with ThreadSampler() as sampler:
        elapsed, codes = asyncio.run(relay_round(pair, connections, 200, messages))
    rate = messages / elapsed
    print(
        f"\n[5] échantillonnage de tous les fils pendant un relais réel : {messages} messages, "
        f"{connections} connexions, {rate:.1f} msg/s (codes {dict(codes)})"
        + (" ; B dans un autre processus : non échantillonné" if pair.child else "")
    )
    sampler.report()
    return rate


# --- main ---------------------------------------------------------------------------------------


def tree_state() -> str:
    """The commit and the locally modified messagerie files: the tree moves while we measure."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src/parcours"],
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "?"
    names = sorted(Path(line[3:]).name for line in changed if line.strip())
    return head + (f" + modifications locales ({', '.join(names)})" if names else "")


def relay_figures(figures: Figures, relay: list[RelayFigure]) -> None:
    ratios = []
    for r in relay:
        label = f"[2] relais parcours, {r.label}"
        if not r.reference:
            figures.add(label, f"{r.rate:,.1f} msg/s")
            continue
        best = max(r.reference.values())
        ratio = r.rate / best
        ratios.append(ratio)
        others = ", ".join(f"{m} {v:,.1f}" for m, v in r.reference.items())
        figures.add(
            label,
            f"{r.rate:,.1f} msg/s",
            f"{ratio:.0%} de Postfix ({others} msg/s) : >= 50 % {verdict(ratio >= 0.5)}",
        )
    if ratios:
        best_p = max(r.rate for r in relay)
        best_ref = max(max(r.reference.values()) for r in relay if r.reference)
        figures.add(
            "[2] meilleur débit parcours / meilleur débit Postfix",
            f"{best_p:,.1f} / {best_ref:,.1f} = {best_p / best_ref:.0%}",
            f">= 50 % : {verdict(best_p / best_ref >= 0.5)}",
        )
        figures.add(
            "[2] ratio le plus bas à nombre de connexions égal",
            f"{min(ratios):.0%}",
            f">= 50 % : {verdict(min(ratios) >= 0.5)}",
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-b":
        serve_b(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="", help="base de l'opérateur A (défaut SQLite)")
    parser.add_argument("--messages", type=int, default=300, help="messages par mesure de relais")
    parser.add_argument("--connections", default="1,2,4,8,16")
    parser.add_argument("--batch", type=int, default=200, help="messages par appel de relay_one")
    parser.add_argument("--size", type=int, default=10_000, help="taille des messages (octets)")
    parser.add_argument("--submissions", type=int, default=200, help="messages par mesure")
    parser.add_argument("--mailbox", type=int, default=10_000, help="messages de la BAL IMAP")
    parser.add_argument("--fetches", type=int, default=100)
    parser.add_argument("--searches", type=int, default=1)
    parser.add_argument("--reference", choices=("postfix", "none"), default="postfix")
    parser.add_argument(
        "--postfix-modes",
        default=",".join(POSTFIX_MODES),
        help="réglages de Postfix A mesurés ; le meilleur sert de référence",
    )
    parser.add_argument(
        "--b-process",
        action="store_true",
        help="l'opérateur B dans un processus fils (A et B ne partagent plus un GIL)",
    )
    parser.add_argument("--profile", choices=("relay", "none"), default="relay")
    parser.add_argument("--profile-messages", type=int, default=200)
    parser.add_argument("--steps", default=",".join(STEPS), help="étapes : " + ", ".join(STEPS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="conserver la base de A")
    args = parser.parse_args()
    steps = {s for s in args.steps.split(",") if s}
    if steps - set(STEPS):
        parser.error(f"--steps : étape inconnue dans {args.steps}")
    modes = [m for m in args.postfix_modes.split(",") if m]
    if set(modes) - set(POSTFIX_MODES) or not modes:
        parser.error(f"--postfix-modes : parmi {', '.join(POSTFIX_MODES)}")
    if args.reference == "none":
        steps.discard("reference")
    if args.profile == "none":
        steps.discard("profile")
    counts = [int(c) for c in args.connections.split(",") if c]
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's login_data notices
    figures = Figures()
    template = message_template(args.size)

    with (
        tempfile.TemporaryDirectory(prefix="parcours-bench-mss-") as tmp,
        scratch_database(args.database_url, args.keep, Path(tmp)) as url,
    ):
        work = Path(tmp)
        started = time.perf_counter()
        pair = build_operators(url, work, args.b_process)
        print(
            f"arbre : {tree_state()}\nopérateur A : {pair.a.db.dialect} "
            f"({make_url(url).database}), B : sqlite "
            f"{'(processus fils)' if args.b_process else '(même processus que A)'} ; "
            f"messages de {len(template):,} octets ; {os.cpu_count()} cœurs, "
            f"charge {os.getloadavg()[0]:.2f} ; mise en place {time.perf_counter() - started:.1f} s"
        )
        pf: PostfixPair | None = None
        try:
            if "submission" in steps:
                print("[1] soumission SMTP à A (smtplib, STARTTLS, XOAUTH2)")
                submitted: list[list[float]] = []
                for clients in (1, 4):
                    sub = bench_submission(pair, template, clients, args.submissions)
                    submitted.append(sub.latencies)
                    failed = sum(sub.failures.values())
                    print(
                        f"    {clients} connexion(s) : {sub.rate:6.1f} msg/s, "
                        f"{p50_p99(sub.latencies)}, {failed} échec(s)"
                    )
                    for reply, times in sub.failures.most_common(3):
                        print(f"      {times} × {reply}")
                    figures.add(
                        f"[1] soumission, {clients} connexion(s)",
                        f"{sub.rate:,.1f} msg/s",
                        f"{failed} échec(s) sur {args.submissions}"
                        + (f" : {sub.failures.most_common(1)[0][0][:70]}" if failed else ""),
                    )
                    figures.add(
                        f"[1] soumission, {clients} connexion(s), latence", p50_p99(sub.latencies)
                    )
                acknowledged = sum(len(v) for v in submitted)
                queued = park_queued(pair)
                print(f"    lignes en file de A : {queued} pour {acknowledged} messages acquittés")
                if queued != acknowledged:
                    figures.add(
                        "[1] lignes en file / messages acquittés (250)",
                        f"{queued} / {acknowledged}",
                        "écart : des messages refusés au client sont pourtant en file",
                    )

            if "reference" in steps:
                why = postfix_unavailable()
                if why is not None:
                    print(f"[4] référence Postfix ignorée : {why}")
                    figures.add("[4] référence Postfix", "non mesurée", why)
                else:
                    version = subprocess.run(
                        ["postconf", "-h", "mail_version"], capture_output=True, text=True
                    ).stdout.strip()
                    pf = build_postfix(pair, work)
                    print(
                        f"[4] référence : Postfix {version}, A → B par TLS mutuel vérifié, "
                        f"remise virtual(8) en Maildir ; réglages {', '.join(modes)}"
                    )

            injections: list[float] = []
            if "relay" in steps:
                print(
                    f"[2] relais A→B par TLS mutuel ({args.messages} messages par mesure, "
                    f"au plus {args.batch} par connexion relay_one)"
                    + (", en alternance avec Postfix [4]" if pf else "")
                )
                try:
                    relay, injections = bench_relay(
                        pair, pf, template, counts, args.messages, args.batch, modes
                    )
                except RuntimeError as exc:  # Postfix failed: say why, keep the rest
                    print(f"    Postfix en échec : {exc}")
                    figures.add("[4] référence Postfix", "échec", str(exc)[:160])
                    if pf is not None:
                        pf.stop()
                    pf = None
                    relay, _ = bench_relay(
                        pair, None, template, counts, args.messages, args.batch, modes
                    )
                relay_figures(figures, relay)
                figures.add(
                    "[2] mise en file directe (queue.enqueue, 4 fils), médiane",
                    f"{statistics.median(r.fill_rate for r in relay):,.1f} msg/s",
                )
                if injections:
                    figures.add(
                        "[4] Postfix A : réception SMTP+STARTTLS (4 conn., sans AUTH), médiane",
                        f"{statistics.median(injections):,.1f} msg/s",
                    )
            if pf is not None:
                pf.stop()
                pf = None

            if "imap" in steps:
                imap_step(pair, template, args, figures)

            if "profile" in steps:
                per = profile_replay(pair, template, args.profile_messages)
                figures.add(
                    "[5] relais rejoué sans SMTP/TLS (1 fil)",
                    f"{per['ms']:.2f} ms/msg",
                    f"soit au plus {1000 / per['ms']:.0f} msg/s pour un fil (un GIL)",
                )
                figures.add(
                    "[5] par message relayé (rejoué)",
                    f"{per['sql']:.1f} SQL, {per['commit_w']:.1f}+{per['commit_r']:.1f} COMMIT, "
                    f"{per['fsync']:.0f} fsync",
                    f"COMMIT écriture+lecture ; SQL {per['sql_s'] * 1000:.2f} ms, "
                    f"fsync de blob {per['fsync_s'] * 1000:.2f} ms",
                )
                live = profile_live(pair, template, args.messages, 4)
                figures.add("[5] relais 4 conn. sous échantillonnage", f"{live:,.1f} msg/s")
        finally:
            if pf is not None:
                pf.stop()
            pair.stop()
        figures.add("durée totale", f"{time.perf_counter() - started:.0f} s")
        figures.add("charge système (loadavg 1 min) en fin de mesure", f"{os.getloadavg()[0]:.2f}")
        figures.print()


if __name__ == "__main__":
    main()
