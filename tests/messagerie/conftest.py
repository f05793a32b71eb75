"""Two MSSanté operators on loopback, as in the demo: A (the territory's, with a patient domain)
on the test database backend, B (a hospital's) on its own SQLite database, each with its own
certificate from one test PKI that plays IGC-Santé, and a liste blanche naming both.

Clients are Python's ``smtplib`` and ``imaplib`` only, with tokens from the development IdP.
"""

from __future__ import annotations

import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.auth.tokens import StaticJwks, TokenVerifier
from parcours.config import Settings
from parcours.dossier.samples import PATIENT_INS
from parcours.messagerie import service
from parcours.messagerie.listeblanche import Entry, to_xml
from parcours.messagerie.operator import Operator, OperatorConfig
from parcours.messagerie.pki import Issued, TestPki
from parcours.storage import migrate
from parcours.storage.db import Database
from tests.conftest import make_settings
from tests.scenario import DUPONT, LEGALL, MARTIN, load_scenario

DOMAIN_A, PATIENTS_A, DOMAIN_B = (
    "territoire.mssante.test",
    "patient.mssante.test",
    "chu.mssante.test",
)
DUPONT_A = f"elise.dupont@{DOMAIN_A}"
LEGALL_A = f"yann.legall@{DOMAIN_A}"
MARTIN_B = f"paul.martin@{DOMAIN_B}"
DPI_B = f"dpi@{DOMAIN_B}"
PATIENT_A = f"{PATIENT_INS}@{PATIENTS_A}"
CH_RENNES = "1350000014"  # idNat_Struct (FINESS) of the scenario's hospital


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued | TestPki]:
    pki = TestPki(tmp_path_factory.mktemp("pki"))
    return {
        "pki": pki,
        "a": pki.issue(
            "operateur-a", cn="mx.territoire.mssante.test", ou="33528293200013", o="GCS TERRITOIRE"
        ),
        "b": pki.issue("operateur-b", cn="mx.chu.mssante.test", ou="1350000014", o="CHU DE TEST"),
        "rogue": pki.issue("voyou", cn="mx.voyou.mssante.test", ou="30000000000000", o="VOYOU"),
        "dpi": pki.issue("dpi-chu", cn="DPI CHU", ou="1350000014", o="CHU DE TEST", server=False),
    }


@dataclass
class Pair:
    a: Operator
    b: Operator
    settings: Settings
    pki: TestPki
    certs: dict[str, Issued]
    liste: Path

    def token(
        self, idnat: str | None = None, *, ins: str | None = None, acr: str | None = None
    ) -> str:
        key = keys.load_or_create(self.settings.keys_dir)
        if ins is not None:
            claims: dict[str, object] = {"actor": "patient", "ins": ins}
            subject = ins
        else:
            assert idnat is not None
            claims = {"actor": "professional", "idnat_ps": idnat, "profession": "10"}
            subject = idnat
        if acr is not None:
            claims["acr"] = acr
        return mint_token(
            key,
            issuer=self.settings.dev_issuer,
            audience=self.settings.audience,
            subject=subject,
            claims=claims,
            ttl_seconds=600,
        )

    def client_context(self, cert: Issued | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.bundle))
        if cert is not None:
            context.load_cert_chain(str(cert.cert), str(cert.key))
        return context

    def smtp(self, op: Operator, who: str, token: str) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", op.ports["submission"], timeout=20)
        client.starttls(context=self.client_context())
        client.ehlo()
        client.auth("XOAUTH2", lambda _=None: f"user={who}\x01auth=Bearer {token}\x01\x01")
        return client

    def imap(self, op: Operator, who: str, token: str) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", op.ports["imaps"], ssl_context=self.client_context(), timeout=20
        )
        client.authenticate(
            "XOAUTH2", lambda _: f"user={who}\x01auth=Bearer {token}\x01\x01".encode()
        )
        return client


def _database(url: str, directory: Path) -> Database:
    directory.mkdir(parents=True, exist_ok=True)
    db = Database(url)
    migrate.upgrade(db)
    load_scenario(db, directory)
    return db


@pytest.fixture
def operators(db: Database, tmp_path: Path, pki: dict) -> Iterator[Pair]:
    test_pki: TestPki = pki["pki"]
    a_cert, b_cert = pki["a"], pki["b"]
    liste = tmp_path / "listeblanche.xml"
    liste.write_bytes(
        to_xml(
            [
                Entry(DOMAIN_A, "Opérateur du territoire", a_cert.dn),
                Entry(PATIENTS_A, "Messagerie des patients", a_cert.dn),
                Entry(DOMAIN_B, "CHU de test", b_cert.dn),
                Entry("voyou.mssante.test", "inscrit, mais pas pour chu", pki["rogue"].dn),
            ]
        )
    )
    (tmp_path / "annuaire-a").mkdir()
    load_scenario(db, tmp_path / "annuaire-a")
    db_b = _database(f"sqlite:///{tmp_path / 'b.sqlite3'}", tmp_path / "annuaire-b")
    db_b.dispose()
    settings = make_settings(tmp_path, db.url)
    verifier = TokenVerifier(
        {settings.dev_issuer: StaticJwks.from_signing_key(keys.load_or_create(settings.keys_dir))},
        audience=settings.audience,
    )
    config_a = OperatorConfig(
        name="a",
        hostname="mx.territoire.mssante.test",
        domains=(DOMAIN_A, PATIENTS_A),
        patient_domains=(PATIENTS_A,),
        database_url=db.url,
        data_dir=tmp_path / "op-a",
        cert=a_cert.cert,
        key=a_cert.key,
        ca_bundle=test_pki.bundle,
        liste_blanche=liste,
        relay_poll_seconds=0.2,
        first_retry_seconds=0.5,
    )
    config_b = OperatorConfig(
        name="b",
        hostname="mx.chu.mssante.test",
        domains=(DOMAIN_B,),
        database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}",
        data_dir=tmp_path / "op-b",
        cert=b_cert.cert,
        key=b_cert.key,
        ca_bundle=test_pki.bundle,
        liste_blanche=liste,
        relay_poll_seconds=0.2,
        first_retry_seconds=0.5,
    )
    a = Operator(config_a, verifier)
    b = Operator(config_b, verifier)
    b.start()
    a.config.routes[DOMAIN_B] = ("127.0.0.1", b.ports["relay"])
    a.ctx.routes[DOMAIN_B] = ("127.0.0.1", b.ports["relay"])
    a.start()
    b.ctx.routes[DOMAIN_A] = ("127.0.0.1", a.ports["relay"])
    b.ctx.routes[PATIENTS_A] = ("127.0.0.1", a.ports["relay"])
    hosted_a, hosted_b = (DOMAIN_A, PATIENTS_A), (DOMAIN_B,)
    service.create_mailbox(
        a.db, address=DUPONT_A, kind="PER", owner="8" + DUPONT, hosted_domains=hosted_a
    )
    service.create_mailbox(
        a.db, address=LEGALL_A, kind="PER", owner="8" + LEGALL, hosted_domains=hosted_a
    )
    service.create_mailbox(
        a.db, address=PATIENT_A, kind="PAT", owner=PATIENT_INS, hosted_domains=hosted_a
    )
    service.create_mailbox(
        b.db, address=MARTIN_B, kind="PER", owner="8" + MARTIN, hosted_domains=hosted_b
    )
    service.create_mailbox(
        b.db,
        address=DPI_B,
        kind="APP",
        owner=CH_RENNES,
        hosted_domains=hosted_b,
        cert_der=pki["dpi"].der,
    )
    try:
        yield Pair(a, b, settings, test_pki, {k: v for k, v in pki.items() if k != "pki"}, liste)
    finally:
        a.stop()
        b.stop()
