"""The ``parcours`` command: serve, demo, database, directory import, tokens, audit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from parcours import config, logs
from parcours.messagerie import cli as mss_cli
from parcours.storage import migrate
from parcours.storage.db import Database

app = typer.Typer(help="parcours : DMP, MSSanté, Annuaire santé.", no_args_is_help=True)
db_app = typer.Typer(help="Base de données (migrations Alembic).", no_args_is_help=True)
annuaire_app = typer.Typer(help="Annuaire santé.", no_args_is_help=True)
audit_app = typer.Typer(help="Traces d'accès.", no_args_is_help=True)
dossier_app = typer.Typer(help="DMP : documents chiffrés, clés.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(annuaire_app, name="annuaire")
app.add_typer(audit_app, name="audit")
app.add_typer(dossier_app, name="dossier")
notify_app = typer.Typer(help="Notifications (boîte d'envoi, distribution).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
app.add_typer(mss_cli.mss_app, name="mss")

err = Console(stderr=True)

INSTANCE_FILE = "instance.json"


def _instance_file(settings: config.Settings) -> Path:
    return settings.data_dir / "run" / INSTANCE_FILE


def _settings() -> config.Settings:
    """Environment first; otherwise what the running instance recorded (mode, URL)."""
    settings = config.get_settings()
    path = _instance_file(settings)
    if path.exists():
        recorded = json.loads(path.read_text())
        changes: dict[str, object] = {}
        if "PARCOURS_ENV" not in os.environ and recorded.get("env"):
            changes["env"] = recorded["env"]
        if "PARCOURS_BASE_URL" not in os.environ and recorded.get("base_url"):
            changes["base_url"] = recorded["base_url"]
        if changes:
            settings = config.with_overrides(settings, **changes)
    config.set_settings(settings)
    return settings


def _database(settings: config.Settings) -> Database:
    return Database(settings.resolved_database_url)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]Erreur :[/] {message}")
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Créer ou mettre à jour le schéma (le schéma ne vient que des migrations)."""
    settings = _settings()
    db = _database(settings)
    migrate.upgrade(db, revision)
    err.print(f"Schéma à jour ({migrate.current_revision(db)}) sur {db.dialect}.")


@db_app.command("current")
def db_current() -> None:
    settings = _settings()
    typer.echo(migrate.current_revision(_database(settings)) or "(vide)")


def import_extracts(db: Database, files: list[Path], console: Console = err) -> list[dict]:
    """Import files in order, each in its own transaction, with a progress bar."""
    from parcours.annuaire.extracts import ExtractError
    from parcours.annuaire.importer import Progress as ImportProgress
    from parcours.annuaire.importer import import_file

    reports = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        for path in files:
            if not path.exists():
                raise ExtractError(f"{path} : fichier introuvable.")
            parse_task = bar.add_task(f"lecture {path.name}", total=path.stat().st_size, rows="")
            write_task = bar.add_task("écriture", total=None, rows="", visible=False)

            def set_total(n: int, write_task: int = write_task) -> None:
                bar.update(write_task, total=n, visible=True)

            progress = ImportProgress(
                on_bytes=lambda n, t=parse_task: bar.advance(t, n),
                on_write_total=set_total,
                on_written=lambda n, t=write_task: bar.advance(t, n),
            )
            with db.session() as session:
                report = import_file(session, path, progress)
            bar.update(parse_task, completed=path.stat().st_size, rows=f"{report.rows} lignes")
            bar.update(write_task, completed=bar.tasks[write_task].total or 0)
            reports.append(report.as_dict())
    return reports


@annuaire_app.command("import")
def annuaire_import(
    files: Annotated[list[Path], typer.Argument(help="Extraits RPPS / MSSanté (.txt)")],
) -> None:
    """Importer des extraits publics de l'Annuaire santé (idempotent, incrémental)."""
    from parcours.annuaire.extracts import ExtractError

    settings = _settings()
    db = _database(settings)
    _require_schema(db)
    try:
        reports = import_extracts(db, files)
    except ExtractError as exc:
        _fail(str(exc))
        return
    for report in reports:
        if report["skipped"]:
            err.print(f"{report['file']} : déjà importé (même contenu), rien à faire.")
            continue
        parts = ", ".join(
            f"{name} +{s['created']} ~{s['updated']} -{s['deactivated']} ={s['unchanged']}"
            for name, s in report["entities"].items()
        )
        err.print(f"{report['file']} : {report['rows']} lignes ; {parts}")
        if report["rejected"]:
            err.print(f"  {report['rejected']} lignes rejetées, par exemple :")
            for line in report["rejected_sample"][:5]:
                err.print(f"   - {line}")


def _require_schema(db: Database) -> None:
    if not migrate.is_up_to_date(db):
        _fail("schéma absent ou périmé : lancez d'abord « parcours db upgrade ».")


@app.command()
def token(
    rpps: Annotated[str | None, typer.Option(help="RPPS d'un professionnel de l'annuaire")] = None,
    ins: Annotated[str | None, typer.Option(help="INS d'un patient (15 caractères)")] = None,
    agent: Annotated[str | None, typer.Option(help="Identifiant d'un agent CPAM")] = None,
    mode: Annotated[str, typer.Option(help="normal, bris_de_glace ou centre_15")] = "normal",
    structure: Annotated[
        str | None, typer.Option(help="Structure d'exercice (idNat_Struct)")
    ] = None,
    ttl: Annotated[int | None, typer.Option(help="Durée de validité en secondes")] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="Avec --rpps : professional, ou un accès interdit par la loi pour essayer le "
            "refus (insurer = médecin d'assurance, employer, lender, cpam_medical_officer)"
        ),
    ] = "professional",
    role: Annotated[
        str, typer.Option(help="Avec --rpps : none, regulator (centre 15), occupational…")
    ] = "none",
    acr: Annotated[
        str, typer.Option(help="Niveau d'authentification (eidas1, cps, e-cps ; pwd = faible)")
    ] = "eidas1",
) -> None:
    """Émettre un jeton du fournisseur d'identité de développement (stdout : le jeton seul)."""
    from parcours.auth import keys
    from parcours.auth.devidp import mint_token
    from parcours.auth.principal import ACCESS_MODES

    settings = _settings()
    if not settings.is_development:
        _fail(
            "« parcours token » n'est disponible qu'en mode développement "
            "(PARCOURS_ENV=development, activé par « parcours demo »).",
            code=2,
        )
    if sum(x is not None for x in (rpps, ins, agent)) != 1:
        _fail("indiquez exactement un de --rpps, --ins ou --agent.", code=2)
    if mode not in ACCESS_MODES:
        _fail(f"mode inconnu « {mode} » (attendu : {', '.join(ACCESS_MODES)}).", code=2)
    from parcours.auth.principal import ROLES

    if kind not in RPPS_TOKEN_KINDS or (kind != "professional" and rpps is None):
        _fail(f"--kind : {', '.join(RPPS_TOKEN_KINDS)}, avec --rpps.", code=2)
    if role not in ROLES or (role != "none" and rpps is None):
        _fail(f"--role : {', '.join(ROLES)}, avec --rpps.", code=2)
    claims = _token_claims(settings, rpps=rpps, ins=ins, agent=agent, structure=structure)
    claims["access_mode"] = mode
    if rpps is not None:
        claims["actor"] = kind
        if role != "none":
            claims["role"] = role
    if ins is not None or rpps is not None:
        claims["acr"] = acr
    key = keys.load_or_create(settings.keys_dir)
    subject = str(claims.pop("sub"))
    typer.echo(
        mint_token(
            key,
            issuer=settings.dev_issuer,
            audience=settings.audience,
            subject=subject,
            claims=claims,
            ttl_seconds=ttl or settings.token_ttl_seconds,
        )
    )


RPPS_TOKEN_KINDS = ("professional", "insurer", "employer", "lender", "cpam_medical_officer")


def _token_claims(
    settings: config.Settings,
    *,
    rpps: str | None,
    ins: str | None,
    agent: str | None,
    structure: str | None,
) -> dict[str, object]:
    from parcours.auth.devidp import UnknownIdentity, identity_claims

    try:
        if rpps is not None:
            db = _database(settings)
            _require_schema(db)
            with db.session() as session:
                return identity_claims(session, rpps=rpps, structure=structure)
        return identity_claims(None, ins=ins, agent=agent, structure=structure)
    except UnknownIdentity as exc:
        _fail(str(exc), code=2)
        raise  # unreachable: _fail exits


@audit_app.command("verify")
def audit_verify() -> None:
    """Vérifier l'intégrité des traces d'accès : chaînes par dossier et points de contrôle."""
    from cryptography.hazmat.primitives import serialization

    from parcours.audit.service import CHECKPOINT_KEY_FILE, verify

    settings = _settings()
    key = None
    key_path = settings.keys_dir / CHECKPOINT_KEY_FILE
    if key_path.exists():
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        key = private.public_key()  # type: ignore[union-attr]
    db = _database(settings)
    _require_schema(db)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
    ) as progress:
        progress.add_task("Vérification des traces…", total=None)
        report = verify(db, key)  # type: ignore[arg-type]
    if report.ok:
        signed = (
            f", {report.checkpoints} points de contrôle"
            + (" (signatures non vérifiées : clé absente)" if report.unsigned else " signés")
            if report.checkpoints
            else ", aucun point de contrôle"
        )
        err.print(
            f"Chaîne intègre : {report.checked} traces vérifiées dans {report.chains} "
            f"chaînes{signed}."
        )
        return
    _fail(f"chaîne rompue à la trace n° {report.first_bad_seq} : {report.reason}.")


@audit_app.command("checkpoint")
def audit_checkpoint(
    grace: Annotated[
        int, typer.Option(help="Ne couvrir que les traces plus anciennes que N secondes")
    ] = 60,
) -> None:
    """Signer un point de contrôle couvrant les traces écrites jusqu'ici."""
    from parcours.notify.jobs import make_checkpoint

    settings = _settings()
    db = _database(settings)
    _require_schema(db)
    cp = make_checkpoint(db, settings, grace_seconds=grace)
    if cp is None:
        err.print("Rien de nouveau à couvrir.")
        return
    err.print(
        f"Point de contrôle n° {cp.id} : {cp.count} traces jusqu'à la n° {cp.upto_seq}, "
        f"empreinte {cp.accumulator[:16]}…"
    )


@notify_app.command("work")
def notify_work(
    once: Annotated[
        bool, typer.Option("--once", help="Distribuer ce qui est dû puis s'arrêter")
    ] = False,
    interval: Annotated[float, typer.Option(help="Secondes entre deux passages")] = 2.0,
    lease: Annotated[int | None, typer.Option(help="Durée du bail d'une notification (s)")] = None,
) -> None:
    """Distribuer les notifications (boîte du portail, e-mail) et lancer les tâches
    périodiques (annonce des documents, points de contrôle des traces)."""
    import signal
    import threading

    from parcours.notify import jobs
    from parcours.notify.channels import configured_channels
    from parcours.notify.worker import run_once

    settings = _settings()
    if lease is not None:
        settings = config.with_overrides(settings, notify_lease_seconds=lease)
    logs.configure(settings.log_level)
    db = _database(settings)
    _require_schema(db)
    if once:
        jobs.announcements(db)
        report = run_once(
            db,
            configured_channels(settings),
            lease_seconds=settings.notify_lease_seconds,
            max_attempts=settings.notify_max_attempts,
        )
        err.print(
            f"{report.delivered} notifications distribuées ({report.deliveries} envois), "
            f"{report.retried} à réessayer, {report.failed} abandonnées."
        )
        if report.errors:
            for line in report.errors[:5]:
                err.print(f"  - {line}")
        return
    worker = jobs.background_worker(db, settings, interval=interval)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    worker.start()
    err.print(f"Distribution des notifications en cours ({worker.name}) ; Ctrl-C pour arrêter.")
    try:
        stopped.wait()
    finally:
        worker.stop()


@notify_app.command("status")
def notify_status() -> None:
    """État de la boîte d'envoi : en attente, distribuées, abandonnées."""
    from sqlalchemy import func, select

    from parcours.notify.models import Notification

    settings = _settings()
    db = _database(settings)
    _require_schema(db)
    with db.session() as session:
        counts = dict(
            session.execute(
                select(Notification.status, func.count()).group_by(Notification.status)
            ).all()
        )
        failed = session.execute(
            select(Notification.id, Notification.event, Notification.last_error)
            .where(Notification.status == "failed")
            .limit(10)
        ).all()
    typer.echo(
        f"en attente : {counts.get('pending', 0)} ; distribuées : {counts.get('delivered', 0)} ; "
        f"abandonnées : {counts.get('failed', 0)}"
    )
    for nid, event, error in failed:
        typer.echo(f"  {nid} {event} : {error}")


@dossier_app.command("purge")
def dossier_purge(
    today: Annotated[
        str | None, typer.Option(help="Date du jour (AAAA-MM-JJ) ; défaut : aujourd'hui")
    ] = None,
) -> None:
    """Supprimer les DMP fermés dont la durée de conservation (10 ans) est écoulée."""
    from datetime import date

    from parcours.dossier import retention
    from parcours.dossier.store import open_store

    settings = _settings()
    db = _database(settings)
    _require_schema(db)
    try:
        day = date.fromisoformat(today) if today else None
    except ValueError:
        _fail(f"date invalide « {today} » (attendu : AAAA-MM-JJ).", code=2)
        return
    store = open_store(settings)
    report = retention.run(db, store, day)
    swept = retention.sweep_orphan_blobs(db, store)
    err.print(
        f"{report.records} DMP supprimés ({report.documents} documents, {report.blobs} "
        f"fichiers chiffrés, {report.tombstones} traces rendues anonymes) ; "
        f"{swept} fichiers orphelins retirés."
    )
    for line in report.errors[:5]:
        err.print(f"  - {line}")


@dossier_app.command("rotate-key")
def dossier_rotate_key() -> None:
    """Créer une nouvelle clé maîtresse (KEK) et y ré-envelopper les clés des documents."""
    from parcours.dossier.documents import rewrap_keys
    from parcours.storage.crypto import KeyRing

    settings = _settings()
    db = _database(settings)
    _require_schema(db)
    directory = settings.keys_dir / "dossier"
    key_id = KeyRing.rotate(directory)
    count = rewrap_keys(db, KeyRing.load_or_create(directory))
    err.print(f"Nouvelle clé active {key_id} : {count} clés de documents ré-enveloppées.")


@dossier_app.command("adapt-example")
def dossier_adapt_example(
    file: Annotated[Path, typer.Argument(help="Bundle ITI-65 officiel (JSON)")],
    ins: Annotated[str, typer.Option(help="INS d'un patient ayant un DMP")],
    rpps: Annotated[str, typer.Option(help="RPPS de l'auteur (Annuaire)")],
    ins_system: Annotated[str, typer.Option()] = "urn:oid:1.2.250.1.213.1.4.11",
    replaces: Annotated[
        str | None, typer.Option(help="id de la DocumentReference remplacée")
    ] = None,
) -> None:
    """Adapter un exemple PDSm (patient, auteur, identifiants) pour le publier ici."""
    from parcours.dossier.examples import adapt_example

    bundle = json.loads(file.read_text(encoding="utf-8"))
    adapted = adapt_example(
        bundle, ins=ins, ins_system=ins_system, idnps="8" + rpps, replaces=replaces
    )
    typer.echo(json.dumps(adapted, ensure_ascii=False))


def _write_instance_file(settings: config.Settings) -> None:
    path = _instance_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"env": settings.env, "base_url": settings.base_url, "pid": os.getpid()})
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Adresse d'écoute")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port HTTP")] = 8000,
) -> None:
    """Servir l'API (FHIR sous /fhir, santé sous /health)."""
    settings = config.get_settings()
    if "PARCOURS_BASE_URL" not in os.environ:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        settings = config.with_overrides(settings, base_url=f"http://{shown}:{port}")
    config.set_settings(settings)
    _serve(settings, host, port)


def _serve(settings: config.Settings, host: str, port: int) -> None:
    import uvicorn

    from parcours.app import create_app

    logs.configure(settings.log_level)
    try:
        application = create_app(settings)
    except RuntimeError as exc:
        _fail(str(exc))
        return
    _write_instance_file(settings)
    uvicorn.run(application, host=host, port=port, access_log=False, log_config=None)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Adresse d'écoute")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port HTTP")] = 8000,
    seed: Annotated[int, typer.Option(help="Graine du territoire synthétique")] = 35,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Préparer sans servir")] = False,
) -> None:
    """Générer le territoire synthétique (Ille-et-Vilaine) s'il est absent, puis servir."""
    from parcours.demo import setup

    base = os.environ.get("PARCOURS_BASE_URL") or f"http://{host}:{port}"
    settings = config.with_overrides(
        config.get_settings(),
        env="development",
        base_url=base,
        worker=os.environ.get("PARCOURS_WORKER", "embedded"),
    )
    os.environ["PARCOURS_ENV"] = "development"
    config.set_settings(settings)
    logs.configure(settings.log_level)
    db = _database(settings)
    migrate.upgrade(db)
    manifest = setup.ensure_territory(db, settings, seed=seed, importer=import_extracts)
    from parcours.demo.dmp import ensure_demo_records
    from parcours.dossier.store import open_store

    manifest["demo_patients"] = ensure_demo_records(db, open_store(settings), manifest, seed=seed)
    from parcours.demo import mss as demo_mss

    directory = setup.territory_dir(settings)
    extracts = sorted(directory.glob("PS_LibreAcces_Personne_activite_*.txt")) + sorted(
        directory.glob("Extraction_Correspondance_MSSante_*.txt")
    )
    mss_configs = demo_mss.prepare(
        db,
        settings,
        extracts,
        lambda target, files: import_extracts(target, files),
        manifest["demo_patients"] or [],
    )
    manifest["mss"] = demo_mss.describe(settings, mss_configs)
    _write_instance_file(settings)
    setup.print_welcome(Console(width=max(Console().width, 150)), settings, manifest)
    if not no_serve:
        from parcours.app import build_verifier
        from parcours.auth import keys

        verifier = build_verifier(settings, keys.load_or_create(settings.keys_dir))
        operators = demo_mss.start(mss_configs, verifier, open_store(settings))
        try:
            _serve(settings, host, port)
        finally:
            operators.stop()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
