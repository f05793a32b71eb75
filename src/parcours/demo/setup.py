"""``parcours demo``: make sure the synthetic territory is loaded, then say how to use it.

The territory goes through the real path: the generator writes extract files in the ANS
formats and the same importer as ``parcours annuaire import`` loads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from parcours.annuaire.models import Practitioner
from parcours.config import Settings
from parcours.demo.territory import generate_territory
from parcours.storage.db import Database

Importer = Callable[[Database, list[Path]], list[dict[str, Any]]]


def territory_dir(settings: Settings) -> Path:
    return settings.data_dir / "territoire"


def ensure_territory(
    db: Database, settings: Settings, *, seed: int, importer: Importer
) -> dict[str, Any]:
    """Generate and import the department unless the directory already holds it."""
    directory = territory_dir(settings)
    manifest_path = directory / "territory.json"
    with db.session() as session:
        loaded = session.execute(select(func.count()).select_from(Practitioner)).scalar_one()
    if loaded and manifest_path.exists():
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest = generate_territory(directory, seed=seed)
    importer(db, [manifest.activity_path, manifest.mssante_path])
    return json.loads(manifest.manifest_path.read_text(encoding="utf-8"))


def print_welcome(console: Console, settings: Settings, manifest: dict[str, Any]) -> None:
    base = settings.base_url.rstrip("/")
    counts = manifest.get("counts", {})
    console.print()
    console.print("[bold]parcours — démonstration (Ille-et-Vilaine synthétique)[/]")
    console.print(
        f"  {counts.get('persons', '?')} professionnels, "
        f"{counts.get('mssante_distinct_addresses', '?')} BAL MSSanté, "
        f"base : {settings.resolved_database_url}"
    )
    console.print()
    console.print(f"  Santé du service     {base}/health")
    console.print(
        f"  API FHIR (R4)        {base}/fhir   (CapabilityStatement : {base}/fhir/metadata)"
    )
    console.print(f"  OpenAPI              {base}/openapi.json")
    console.print(f"  Fournisseur d'identité (dév.)  {base}/idp/.well-known/openid-configuration")
    console.print(f"  Portail (patients, professionnels)  {base}/portail/")
    console.print()
    table = Table(title="Identités de démonstration", show_lines=False)
    for column in ("rôle", "nom", "identifiant", "BAL MSSanté"):
        table.add_column(column)
    for login in manifest.get("demo_logins", []):
        table.add_row(
            login["role"],
            f"{login.get('prenom', '')} {login.get('nom', '')}",
            f"--rpps {login['rpps']}",
            login.get("mailbox") or "",
        )
    for point in manifest.get("cpam_accueils", [])[:1]:
        table.add_row("agent CPAM", point["name"], f"--agent {point['agents'][0]}", "")
    console.print(table)
    first = next(iter(manifest.get("demo_logins", [])), None)
    if first:
        console.print("Essayez, dans un autre terminal :")
        console.print(f"  TOKEN=$(.venv/bin/parcours token --rpps {first['rpps']})")
        console.print(
            f'  curl -s -H "Authorization: Bearer $TOKEN" "{base}/fhir/Practitioner?name='
            f'{first.get("nom", "martin").split()[0].lower()}&_count=5"'
        )
        patients = manifest.get("demo_patients") or []
        if patients:
            p = patients[0]
            console.print(
                f"  DMP de démonstration : {p['prenom']} {p['nom']}, INS {p['ins']} "
                f"(token patient : .venv/bin/parcours token --ins {p['ins']})"
            )
            console.print(
                f"  Espace patient : {base}/portail/ → « Accéder à mon dossier », INS {p['ins']}"
            )
            console.print(
                f'  curl -s -H "Authorization: Bearer $TOKEN" "{base}/fhir/DocumentReference?'
                f'patient.identifier=urn:oid:1.2.250.1.213.1.4.11|{p["ins"]}&status=current"'
            )
        if first.get("mailbox"):
            query = f"mailbox-mss={first['mailbox']}"
            console.print(
                f'  curl -s -H "Authorization: Bearer $TOKEN" "{base}/fhir/Practitioner?{query}"'
            )
    console.print()
    print_mssante(console, manifest)


def print_mssante(console: Console, manifest: dict[str, Any]) -> None:
    mss = manifest.get("mss")
    if not mss:
        return
    console.print("[bold]MSSanté : deux opérateurs sur 127.0.0.1, relais en TLS mutuel[/]")
    for op in mss["operators"]:
        console.print(
            f"  {op['name']:<14} {', '.join(op['domains'][:3])}"
            f"{' …' if len(op['domains']) > 3 else ''}"
        )
        console.print(
            f"      SMTP soumission {op['submission']} (STARTTLS) / {op['submissions']} (TLS), "
            f"IMAP {op['imap']} (STARTTLS) / {op['imaps']} (TLS), relais {op['relay']}"
        )
    console.print(f"  Autorité de confiance (PKI de test jouant IGC-Santé) : {mss['ca_bundle']}")
    console.print(
        "  Authentification : XOAUTH2 ou OAUTHBEARER avec un jeton « parcours token » (ou ce"
    )
    console.print("  jeton comme mot de passe) ; utilisateur = l'adresse de la BAL.")
    login = mss.get("chu_login")
    if login:
        console.print(
            f"  BAL du CHU : {login['address']} "
            f"(jeton : parcours token --rpps {login['idnat'][1:]})"
        )
    console.print()
