"""Nothing lost (issue #6 tests §3): operator B down while A queues 1,000 messages, then back;
operator A killed with SIGKILL in the middle of submissions, then restarted. Every message A
answered 250 for reaches B's mailbox exactly once."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from parcours.messagerie.mailstore import MailFolder, MailMessage
from parcours.messagerie.models import QueuedMessage
from parcours.messagerie.operator import Operator
from parcours.messagerie.smtp import free_port
from tests.messagerie.conftest import DOMAIN_B, DUPONT_A, MARTIN_B, Pair
from tests.messagerie.test_exchange import letter, wait_for
from tests.scenario import DUPONT


def delivered_ids(op: Operator, address: str) -> list[str]:
    with op.db.session() as session:
        return list(
            session.execute(
                select(MailMessage.message_id)
                .join(MailFolder, MailFolder.id == MailMessage.folder_id)
                .where(MailFolder.mailbox == address)
            ).scalars()
        )


def restart(op: Operator, pair: Pair) -> Operator:
    """The same operator (database, keys, certificate) back on the same ports."""
    config = op.config
    for name in ("submission", "submissions", "relay", "imap", "imaps"):
        setattr(config, f"{name}_port", op.ports[name])
    verifier = op.ctx.authenticator.verifier
    fresh = Operator(config, verifier)
    fresh.ctx.routes.update(op.ctx.routes)
    return fresh.start()


def test_a_thousand_messages_wait_for_b_then_arrive_once(operators: Pair) -> None:
    pair = operators
    pair.a.ctx.max_retry_seconds = 1.0
    pair.b.stop()
    sent = []
    with pair.smtp(pair.a, DUPONT_A, pair.token("8" + DUPONT)) as client:
        for i in range(1000):
            msg = letter(DUPONT_A, MARTIN_B, subject=f"Message {i}")
            client.send_message(msg)
            sent.append(msg["Message-ID"])
    with pair.a.db.session() as session:
        waiting = session.execute(
            select(func.count()).select_from(QueuedMessage).where(QueuedMessage.status == "queued")
        ).scalar_one()
    assert waiting == 1000  # B is down: everything waits, nothing was lost nor bounced
    time.sleep(1.0)  # a few failed rounds, backing off
    pair.b = restart(pair.b, pair)
    wait_for(lambda: len(delivered_ids(pair.b, MARTIN_B)) >= 1000, timeout=400, step=0.5)
    time.sleep(1.0)
    got = delivered_ids(pair.b, MARTIN_B)
    assert sorted(got) == sorted(sent)  # each exactly once

    def statuses() -> dict[str, int]:
        with pair.a.db.session() as session:
            return dict(
                session.execute(
                    select(QueuedMessage.status, func.count()).group_by(QueuedMessage.status)
                ).all()
            )

    wait_for(lambda: statuses() == {"sent": 1000}, timeout=60)


def _operator_env(pair: Pair, ports: dict[str, int], relay_b: int) -> dict[str, str]:
    config = pair.a.config
    env = dict(os.environ)
    env.update(
        {
            "PARCOURS_ENV": "development",
            "PARCOURS_DATA_DIR": str(pair.settings.data_dir),
            "PARCOURS_BASE_URL": pair.settings.base_url,
            "PARCOURS_DATABASE_URL": config.database_url,
            "PARCOURS_MSS_DOMAINS": " ".join(config.domains),
            "PARCOURS_MSS_PATIENT_DOMAINS": " ".join(config.patient_domains),
            "PARCOURS_MSS_HOSTNAME": config.hostname,
            "PARCOURS_MSS_CERT": str(config.cert),
            "PARCOURS_MSS_KEY": str(config.key),
            "PARCOURS_MSS_CA_BUNDLE": str(config.ca_bundle),
            "PARCOURS_MSS_LISTE_BLANCHE": str(config.liste_blanche),
            "PARCOURS_MSS_ROUTES": f"{DOMAIN_B}=127.0.0.1:{relay_b}",
            "PARCOURS_MSS_FIRST_RETRY_SECONDS": "0.5",
            **{f"PARCOURS_MSS_{k.upper()}_PORT": str(v) for k, v in ports.items()},
        }
    )
    return env


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "parcours.cli", "mss", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return process


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"l'opérateur s'est arrêté : {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("l'opérateur n'écoute pas")


def test_kill_9_of_a_loses_nothing_it_accepted(operators: Pair, tmp_path: Path) -> None:
    pair = operators
    relay_b = pair.b.ports["relay"]
    pair.b.stop()  # B down: A holds what it accepted in its queue when it dies
    pair.a.stop()  # A runs in a separate process from now on
    ports = {name: free_port() for name in ("submission", "submissions", "relay", "imap", "imaps")}
    env = _operator_env(pair, ports, relay_b)
    log = tmp_path / "operateur-a.log"
    process = _spawn(env, log)
    _wait_listening(ports["submission"], process, log)

    accepted: list[str] = []
    token = pair.token("8" + DUPONT)
    killer = threading.Timer(3.0, lambda: os.kill(process.pid, signal.SIGKILL))
    killer.start()
    try:
        client = smtplib.SMTP("127.0.0.1", ports["submission"], timeout=20)
        client.starttls(context=pair.client_context())
        client.ehlo()
        client.auth("XOAUTH2", lambda _=None: f"user={DUPONT_A}\x01auth=Bearer {token}\x01\x01")
        for i in range(100_000):
            msg = letter(DUPONT_A, MARTIN_B, subject=f"Avant la panne {i}")
            try:
                client.send_message(msg)
            except (smtplib.SMTPException, OSError):
                break
            accepted.append(msg["Message-ID"])
    finally:
        killer.cancel()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(accepted) > 10

    process = _spawn(env, log)
    try:
        _wait_listening(ports["submission"], process, log)
        pair.b.config.relay_port = relay_b
        pair.b = restart(pair.b, pair)
        try:
            wait_for(
                lambda: set(accepted) <= set(delivered_ids(pair.b, MARTIN_B)),
                timeout=120,
                step=0.5,
            )
        except AssertionError:
            missing = set(accepted) - set(delivered_ids(pair.b, MARTIN_B))
            from sqlalchemy import create_engine

            engine = create_engine(pair.a.config.database_url)
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT status, attempts, last_reply FROM mss_queue LIMIT 5"
                ).all()
                count = conn.exec_driver_sql(
                    "SELECT status, count(*) FROM mss_queue GROUP BY status"
                ).all()
            raise AssertionError(
                f"{len(missing)} sur {len(accepted)} non distribués ; file : {count} {rows} ; "
                f"journal : {log.read_text()[-3000:]}"
            ) from None
        got = delivered_ids(pair.b, MARTIN_B)
        assert len(got) == len(set(got))  # never twice
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
