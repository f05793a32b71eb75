"""The demo's two MSSanté operators on loopback: the territory's (the national per-profession
domains of the liberal professionals, and the patients' domain) and the CHU de Rennes's (its
own domain, its own database). One test PKI plays IGC-Santé for both; the liste blanche the
demo writes names both with their certificates; they relay to each other over mutual TLS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from parcours.annuaire.models import Practitioner
from parcours.auth.tokens import TokenVerifier
from parcours.config import Settings
from parcours.dossier.store import DocumentStore
from parcours.messagerie import service
from parcours.messagerie.listeblanche import Entry, to_xml
from parcours.messagerie.operator import Operator, OperatorConfig
from parcours.messagerie.pki import TestPki
from parcours.storage import migrate
from parcours.storage.db import Database

TERRITORY_DOMAINS = (
    "medecin.mssante.fr",
    "pharmacien.mssante.fr",
    "chirurgien-dentiste.mssante.fr",
    "infirmier.mssante.fr",
    "masseur-kinesitherapeute.mssante.fr",
    "orthophoniste.mssante.fr",
    "orthoptiste.mssante.fr",
)
PATIENT_DOMAIN = "patient.mssante.fr"
CHU_DOMAIN = "chu-rennes.mssante.fr"
# Fixed ports so that the printed client settings stay true across restarts.
PORTS = {
    "a": {"submission": 2587, "submissions": 2465, "relay": 2525, "imap": 2143, "imaps": 2993},
    "b": {"submission": 3587, "submissions": 3465, "relay": 3525, "imap": 3143, "imaps": 3993},
}


@dataclass
class DemoOperators:
    a: Operator
    b: Operator
    bundle: Path

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


def _config(
    name: str,
    hostname: str,
    domains: tuple[str, ...],
    database_url: str,
    data_dir: Path,
    pki: TestPki,
    liste: Path,
    patient_domains: tuple[str, ...] = (),
) -> OperatorConfig:
    issued = pki.load(name)
    assert issued is not None
    ports = PORTS[name]
    return OperatorConfig(
        name=name,
        hostname=hostname,
        domains=domains,
        patient_domains=patient_domains,
        database_url=database_url,
        data_dir=data_dir,
        cert=issued.cert,
        key=issued.key,
        ca_bundle=pki.bundle,
        liste_blanche=liste,
        submission_port=ports["submission"],
        submissions_port=ports["submissions"],
        relay_port=ports["relay"],
        imap_port=ports["imap"],
        imaps_port=ports["imaps"],
    )


def prepare(
    db: Database,
    settings: Settings,
    extracts: list[Path],
    importer: Callable[[Database, list[Path]], Any],
    patients: list[dict[str, Any]],
) -> tuple[OperatorConfig, OperatorConfig]:
    """PKI, liste blanche, B's database (with the same directory), hosted mailboxes."""
    root = settings.data_dir / "mss"
    pki = TestPki(root / "pki")
    a_cert = pki.load("a") or pki.issue(
        "a", cn="mx.territoire.mssante.fr", ou="33528293200013", o="GCS E-SANTE BRETAGNE (DEMO)"
    )
    b_cert = pki.load("b") or pki.issue(
        "b", cn="mx.chu-rennes.mssante.fr", ou="1350005505", o="CHU DE RENNES (DEMO)"
    )
    liste = root / "listeblanchemssante.xml"
    liste.write_bytes(
        to_xml(
            [Entry(d, "Opérateur du territoire (démo)", a_cert.dn) for d in TERRITORY_DOMAINS]
            + [Entry(PATIENT_DOMAIN, "Messagerie des patients (démo)", a_cert.dn)]
            + [Entry(CHU_DOMAIN, "CHU de Rennes (démo)", b_cert.dn)]
        )
    )
    b_url = f"sqlite:///{(root / 'chu' / 'parcours.sqlite3').resolve()}"
    db_b = Database(b_url)
    try:
        migrate.upgrade(db_b)
        with db_b.session() as session:
            loaded = session.execute(select(func.count()).select_from(Practitioner)).scalar()
        if not loaded:  # the CHU's operator reads the same national directory
            importer(db_b, extracts)
        service.adopt_directory_mailboxes(db_b, (CHU_DOMAIN,))
    finally:
        db_b.dispose()
    service.adopt_directory_mailboxes(db, TERRITORY_DOMAINS)
    for patient in patients:
        address = f"{patient['ins']}@{PATIENT_DOMAIN}"
        with db.session() as session:
            exists = service.get_mailbox(session, address) is not None
        if not exists:
            try:
                service.create_mailbox(
                    db,
                    address=address,
                    kind="PAT",
                    owner=patient["ins"],
                    hosted_domains=(PATIENT_DOMAIN,),
                )
            except service.MailboxError:
                continue
    a = _config(
        "a",
        "mx.territoire.mssante.fr",
        (*TERRITORY_DOMAINS, PATIENT_DOMAIN),
        settings.resolved_database_url,
        root / "territoire",
        pki,
        liste,
        patient_domains=(PATIENT_DOMAIN,),
    )
    b = _config("b", "mx.chu-rennes.mssante.fr", (CHU_DOMAIN,), b_url, root / "chu", pki, liste)
    a.routes = {CHU_DOMAIN: ("127.0.0.1", b.relay_port)}
    b.routes = {d: ("127.0.0.1", a.relay_port) for d in (*TERRITORY_DOMAINS, PATIENT_DOMAIN)}
    return a, b


def start(
    configs: tuple[OperatorConfig, OperatorConfig],
    verifier: TokenVerifier,
    document_store: DocumentStore | None = None,
) -> DemoOperators:
    """A, on the platform's database, files XDM mail sent to dmp@<its domains> into the DMP."""
    a = Operator(configs[0], verifier, document_store=document_store).start()
    b = Operator(configs[1], verifier).start()
    return DemoOperators(a, b, configs[0].ca_bundle)


def chu_login(settings: Settings) -> dict[str, str] | None:
    """A CHU professional with a mailbox at operator B, for the welcome table."""
    from parcours.messagerie.models import HostedMailbox

    url = f"sqlite:///{(settings.data_dir / 'mss' / 'chu' / 'parcours.sqlite3').resolve()}"
    db_b = Database(url)
    try:
        with db_b.session() as session:
            row = session.execute(
                select(HostedMailbox)
                .where(HostedMailbox.kind == "PER", HostedMailbox.domain == CHU_DOMAIN)
                .order_by(HostedMailbox.address)
                .limit(1)
            ).scalar_one_or_none()
            if row is None:
                return None
            return {"address": row.address, "idnat": row.owner, "name": row.display_name}
    finally:
        db_b.dispose()


def describe(settings: Settings, configs: tuple[OperatorConfig, OperatorConfig]) -> dict[str, Any]:
    """What the welcome screen prints: where each operator listens, and who can try it."""
    a, b = configs
    return {
        "ca_bundle": str(a.ca_bundle),
        "operators": [
            {
                "name": "territoire",
                "domains": list(a.domains),
                "submission": a.submission_port,
                "submissions": a.submissions_port,
                "imap": a.imap_port,
                "imaps": a.imaps_port,
                "relay": a.relay_port,
            },
            {
                "name": "CHU de Rennes",
                "domains": list(b.domains),
                "submission": b.submission_port,
                "submissions": b.submissions_port,
                "imap": b.imap_port,
                "imaps": b.imaps_port,
                "relay": b.relay_port,
            },
        ],
        "chu_login": chu_login(settings),
    }
