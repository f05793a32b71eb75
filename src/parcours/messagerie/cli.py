"""``parcours mss …``: the operator's administration and its server process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from parcours import config, logs

mss_app = typer.Typer(
    help="Opérateur MSSanté (BAL, serveurs SMTP/IMAP, relais).", no_args_is_help=True
)
pki_app = typer.Typer(
    help="PKI de test (jouant IGC-Santé) pour la démo et les essais.", no_args_is_help=True
)
mailbox_app = typer.Typer(help="Boîtes aux lettres hébergées.", no_args_is_help=True)
mss_app.add_typer(pki_app, name="pki")
mss_app.add_typer(mailbox_app, name="bal")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"erreur : {message}", err=True)
    raise typer.Exit(code)


def _db() -> tuple[config.Settings, object]:
    from parcours.storage import migrate
    from parcours.storage.db import Database

    settings = config.get_settings()
    db = Database(settings.resolved_database_url)
    if not migrate.is_up_to_date(db):
        _fail("schéma absent ou périmé : lancez « parcours db upgrade ».")
    return settings, db


@pki_app.command("issue")
def pki_issue(
    name: Annotated[str, typer.Argument(help="Nom de fichier du certificat (sans extension)")],
    cn: Annotated[str, typer.Option(help="CN : nom du serveur ou de l'application")],
    ou: Annotated[str, typer.Option(help="OU : idNat_Struct de la structure")],
    o: Annotated[str, typer.Option(help="O : raison sociale")],
    directory: Annotated[Path, typer.Option("--dir", help="Répertoire de la PKI")] = Path(
        "var/pki"
    ),
    client: Annotated[bool, typer.Option("--client", help="Certificat d'application")] = False,
) -> None:
    """Émettre un certificat serveur (SERV SSL) ou d'application signé par la PKI de test."""
    from parcours.messagerie.pki import TestPki

    issued = TestPki(directory).issue(name, cn=cn, ou=ou, o=o, server=not client)
    typer.echo(f"certificat : {issued.cert}\nclé : {issued.key}\nDN : {issued.dn}")


@mailbox_app.command("create")
def mailbox_create(
    address: Annotated[str, typer.Argument(help="Adresse de la BAL")],
    kind: Annotated[str, typer.Option("--type", help="PER, ORG, APP, CAB ou PAT")],
    owner: Annotated[str, typer.Option(help="IDNPS (PER/CAB), idNat_Struct (ORG/APP), INS (PAT)")],
    member: Annotated[list[str] | None, typer.Option(help="IDNPS ayant accès (ORG)")] = None,
    cert: Annotated[Path | None, typer.Option(help="Certificat PEM de l'application (APP)")] = None,
    liste_rouge: Annotated[bool, typer.Option("--liste-rouge")] = False,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Créer une BAL d'un domaine de l'opérateur et la publier dans l'annuaire."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from parcours.messagerie import service

    settings, db = _db()
    der = None
    if cert is not None:
        try:
            der = x509.load_pem_x509_certificates(cert.read_bytes())[0].public_bytes(
                serialization.Encoding.DER
            )
        except (OSError, ValueError) as exc:
            _fail(f"certificat illisible ({exc})", 2)
    try:
        info = service.create_mailbox(
            db,  # type: ignore[arg-type]
            address=address,
            kind=kind,
            owner=owner,
            hosted_domains=settings.mss_domains.split(),
            members=member or (),
            cert_der=der,
            liste_rouge=liste_rouge,
            description=description,
        )
    except service.MailboxError as exc:
        _fail(str(exc), 2)
        return
    typer.echo(f"BAL {info.address} ({info.kind}) créée pour {info.display_name}.")


@mailbox_app.command("list")
def mailbox_list() -> None:
    """Lister les BAL hébergées."""
    from sqlalchemy import select

    from parcours.messagerie.models import HostedMailbox

    _, db = _db()
    with db.session() as session:  # type: ignore[attr-defined]
        for row in session.execute(select(HostedMailbox).order_by(HostedMailbox.address)).scalars():
            flag = " (liste rouge)" if row.liste_rouge else ""
            typer.echo(f"{row.kind}  {row.address}  {row.display_name}{flag}")


@mss_app.command("traces")
def traces(
    address: Annotated[str, typer.Argument(help="Adresse de la BAL")],
    limit: Annotated[int, typer.Option(help="Nombre de traces")] = 50,
) -> None:
    """Les événements de messagerie d'une BAL (sans corps ni objet), du plus récent au plus
    ancien."""
    from parcours.messagerie import service

    _, db = _db()
    for event in service.events_of(db, address, limit=limit):  # type: ignore[arg-type]
        typer.echo(
            f"{event.recorded_at:%Y-%m-%d %H:%M:%S}  {event.action:<22} {event.outcome}  "
            f"{event.query or ''}"
        )


@mss_app.command("file")
def queue_status() -> None:
    """État de la file sortante (relais vers les autres opérateurs)."""
    from sqlalchemy import func, select

    from parcours.messagerie.models import QueuedMessage

    _, db = _db()
    with db.session() as session:  # type: ignore[attr-defined]
        counts = dict(
            session.execute(
                select(QueuedMessage.status, func.count()).group_by(QueuedMessage.status)
            ).all()
        )
    typer.echo(
        f"en file : {counts.get('queued', 0)} ; relayés : {counts.get('sent', 0)} ; "
        f"échecs : {counts.get('failed', 0)} ; expirés : {counts.get('expired', 0)}"
    )


@mss_app.command("serve")
def serve() -> None:
    """Lancer l'opérateur (soumission SMTP, relais mTLS, IMAP) avec PARCOURS_MSS_*."""
    from parcours.app import build_verifier
    from parcours.auth import keys
    from parcours.messagerie.operator import Operator, config_from_settings

    settings = config.get_settings()
    logs.configure(settings.log_level)
    try:
        operator_config = config_from_settings(settings)
    except ValueError as exc:
        _fail(str(exc), 2)
        return
    dev_key = keys.load_or_create(settings.keys_dir) if settings.is_development else None
    from parcours.dossier.store import open_store

    operator = Operator(
        operator_config, build_verifier(settings, dev_key), document_store=open_store(settings)
    ).start()
    ports = ", ".join(f"{name} {port}" for name, port in operator.ports.items())
    typer.echo(f"opérateur MSSanté {' '.join(operator_config.domains)} : {ports}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        operator.stop()
