"""The ``parcours`` command as a newcomer uses it (typer's runner, real database and files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parcours import config
from parcours.auth import keys
from parcours.auth.tokens import StaticJwks, TokenVerifier
from parcours.cli import app
from parcours.storage.db import Database
from tests.annuaire.builders import mailbox, professional, write_activity, write_mssante

RPPS_OK = "10291417771"
runner = CliRunner()


@pytest.fixture
def env(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {
        "PARCOURS_DATA_DIR": str(tmp_path / "data"),
        "PARCOURS_DATABASE_URL": db.url,
        "PARCOURS_ENV": "development",
        "PARCOURS_BASE_URL": "http://127.0.0.1:8000",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    config.set_settings(None)
    yield values
    config.set_settings(None)


def run(*args: str):  # type: ignore[no-untyped-def]
    config.set_settings(None)
    return runner.invoke(app, list(args))


def load(tmp_path: Path) -> tuple[Path, Path]:
    act = write_activity(tmp_path, "202601010800", [professional(RPPS_OK, "Dupont", "Élise")])
    mss = write_mssante(
        tmp_path, "202601010900", [mailbox("elise.dupont@medecin.mssante.fr", rpps=RPPS_OK)]
    )
    return act, mss


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    assert run("db", "upgrade").exit_code == 0
    result = run("db", "current")
    assert (
        result.exit_code == 0 and result.stdout.strip() == "0007"
    )  # the latest revision in storage/migrations


def test_annuaire_import_then_reimport(env: dict[str, str], tmp_path: Path) -> None:
    act, mss = load(tmp_path)
    first = run("annuaire", "import", str(act), str(mss))
    assert first.exit_code == 0, first.output
    assert "Practitioner +1" in first.output and "Mailbox +1" in first.output
    again = run("annuaire", "import", str(act))
    assert again.exit_code == 0 and "déjà importé" in again.output


def test_annuaire_import_bad_file(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "n_importe_quoi.txt"
    bad.write_text("x|y|\n", encoding="utf-8")
    result = run("annuaire", "import", str(bad))
    assert result.exit_code == 1 and "en-tête non reconnu" in result.output
    missing = run("annuaire", "import", str(tmp_path / "absent.txt"))
    assert missing.exit_code == 1 and "introuvable" in missing.output


def test_token_prints_only_a_verifiable_token(env: dict[str, str], tmp_path: Path) -> None:
    act, _ = load(tmp_path)
    run("annuaire", "import", str(act))
    result = run("token", "--rpps", RPPS_OK)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and token.count(".") == 2
    settings = config.load_settings()
    key = keys.load_or_create(settings.keys_dir)
    principal = TokenVerifier(
        {settings.dev_issuer: StaticJwks.from_signing_key(key)}, audience="parcours"
    ).verify(token)
    assert principal.kind == "professional" and principal.idnat_ps == "8" + RPPS_OK
    assert principal.profession == "10"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rpps", "10291417772"), "RPPS invalide"),
        (("--rpps", "10000000017"), "inconnu de l'annuaire"),
        (("--ins", "123456789012345"), "clé 45"),
        (("--agent", "x y"), "identifiant d'agent invalide"),
        (("--rpps", RPPS_OK, "--agent", "A1"), "exactement un"),
        (("--agent", "A1", "--mode", "urgence"), "mode inconnu"),
        (("--agent", "A1", "--kind", "insurer"), "--kind"),
        (("--rpps", RPPS_OK, "--kind", "notaire"), "--kind"),
        (("--rpps", RPPS_OK, "--role", "pompier"), "--role"),
    ],
)
def test_token_refusals(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    act, _ = load(tmp_path)
    run("annuaire", "import", str(act))
    result = run("token", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert result.stdout == "" or "eyJ" not in result.stdout


@pytest.mark.parametrize(
    ("args", "kind", "role", "acr"),
    [
        (("--kind", "insurer"), "insurer", "none", "eidas1"),  # the insurer's doctor
        (("--role", "regulator"), "professional", "regulator", "eidas1"),  # centre 15
        (("--acr", "pwd"), "professional", "none", "pwd"),  # a weak login (G1)
    ],
)
def test_token_kinds_roles_and_authentication_level(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], kind: str, role: str, acr: str
) -> None:
    act, _ = load(tmp_path)
    run("annuaire", "import", str(act))
    result = run("token", "--rpps", RPPS_OK, *args)
    assert result.exit_code == 0, result.output
    settings = config.load_settings()
    key = keys.load_or_create(settings.keys_dir)
    principal = TokenVerifier(
        {settings.dev_issuer: StaticJwks.from_signing_key(key)}, audience="parcours"
    ).verify(result.stdout.strip())
    assert (principal.kind, principal.role, principal.auth_level) == (kind, role, acr)


def test_token_for_patient_and_agent(env: dict[str, str]) -> None:
    run("db", "upgrade")
    patient = run("token", "--ins", "1 23 45 67 890 123 11")
    agent = run("token", "--agent", "CPAM35-A001", "--mode", "normal")
    assert patient.exit_code == 0 and agent.exit_code == 0


def test_token_refused_outside_development(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARCOURS_ENV", "production")
    result = run("token", "--agent", "A1")
    assert result.exit_code == 2 and "mode développement" in result.output


def test_audit_verify(env: dict[str, str]) -> None:
    run("db", "upgrade")
    result = run("audit", "verify")
    assert result.exit_code == 0 and "0 traces" in result.output


def test_demo_no_serve_loads_the_territory_once(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("demo", "--no-serve")
    assert result.exit_code == 0, result.output
    assert "Identités de démonstration" in result.output and "--rpps" in result.output
    manifest = json.loads(
        (Path(env["PARCOURS_DATA_DIR"]) / "territoire" / "territory.json").read_text()
    )
    first = manifest["demo_logins"][0]["rpps"]
    token = run("token", "--rpps", first)
    assert token.exit_code == 0
    again = run("demo", "--no-serve")
    assert again.exit_code == 0 and "lecture" not in again.output  # no second import
