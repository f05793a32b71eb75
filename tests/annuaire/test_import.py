"""Importer scenarios: idempotence, incremental updates, deactivation, history, atomicity."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from parcours.annuaire.extracts import ExtractError
from parcours.annuaire.importer import import_file
from parcours.annuaire.models import (
    Extract,
    History,
    Mailbox,
    Organization,
    Practitioner,
    PractitionerRole,
)
from parcours.storage.db import Database
from tests.annuaire.builders import mailbox, professional, write_activity, write_mssante
from tests.scenario import CABINET, CH, DUPONT, LEGALL, MARTIN


def _valid(rpps: str) -> str:
    from parcours.identity import RPPS

    return str(RPPS.parse(rpps))


def test_builder_identifiers_are_valid() -> None:
    for rpps in (DUPONT, MARTIN, LEGALL):
        assert _valid(rpps) == rpps


def _import(db: Database, path: Path):  # type: ignore[no-untyped-def]
    with db.session() as session:
        return import_file(session, path)


def _count(db: Database, model: type, **where: object) -> int:
    with db.session() as session:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return session.execute(stmt).scalar_one()


def first_extract(tmp_path: Path) -> Path:
    return write_activity(
        tmp_path,
        "202601010800",
        [
            professional(
                DUPONT,
                "Dupont",
                "Élise",
                structure=CABINET,
                siret="73282932000074",
                name="Cabinet Dupont",
            ),
            # A second site for the same person: one Practitioner, two roles.
            professional(
                DUPONT,
                "Dupont",
                "Élise",
                structure=CH,
                finess="350000014",
                name="CH Rennes",
                mode="S",
            ),
            professional(
                MARTIN,
                "Martin",
                "Paul",
                profession="60",
                savoir_faire="",
                structure=CH,
                finess="350000014",
                name="CH Rennes",
                mode="S",
            ),
        ],
    )


def test_first_import_creates_entities(db: Database, tmp_path: Path) -> None:
    report = _import(db, first_extract(tmp_path))
    assert report.rows == 3 and not report.rejected
    assert report.entities["Practitioner"].created == 2
    assert report.entities["Organization"].created == 2
    assert report.entities["PractitionerRole"].created == 3
    assert _count(db, Practitioner) == 2
    assert _count(db, PractitionerRole, practitioner_id="8" + DUPONT) == 2


def test_same_file_twice_is_skipped(db: Database, tmp_path: Path) -> None:
    path = first_extract(tmp_path)
    _import(db, path)
    again = _import(db, path)
    assert again.skipped
    assert _count(db, Extract) == 1


def test_new_extract_updates_deactivates_and_keeps_history(db: Database, tmp_path: Path) -> None:
    _import(db, first_extract(tmp_path))
    later = write_activity(
        tmp_path,
        "202602010800",
        [
            # Dupont changed her name (marriage): updated, history kept.
            professional(
                DUPONT,
                "Dupont-Le Goff",
                "Élise",
                structure=CABINET,
                siret="73282932000074",
                name="Cabinet Dupont",
            ),
            # Martin vanished: deactivated, not deleted. Le Gall is new.
            professional(
                LEGALL,
                "Le Gall",
                "Yann",
                profession="21",
                savoir_faire="",
                structure=CABINET,
                siret="73282932000074",
                name="Cabinet Dupont",
            ),
        ],
    )
    report = _import(db, later)
    p = report.entities["Practitioner"]
    assert (p.created, p.updated, p.deactivated, p.unchanged) == (1, 1, 1, 0)
    with db.session() as session:
        dupont = session.get(Practitioner, "8" + DUPONT)
        martin = session.get(Practitioner, "8" + MARTIN)
        assert dupont is not None and martin is not None
        assert dupont.family == "Dupont-Le Goff" and dupont.version == 2 and dupont.active
        assert not martin.active and martin.version == 2
        hist = (
            session.execute(
                select(History).where(
                    History.resource_id == "8" + DUPONT, History.resource_type == "Practitioner"
                )
            )
            .scalars()
            .all()
        )
        assert [h.snapshot["family"] for h in hist] == ["Dupont"]
        assert hist[0].version == 1 and hist[0].change == "updated"
        # The CH site vanished from the file: its organization and roles are inactive now.
        ch = session.execute(
            select(Organization).where(Organization.structure_key == CH)
        ).scalar_one()
        assert not ch.active

    # Martin comes back in a third extract: reactivated with a new version.
    third = write_activity(
        tmp_path,
        "202603010800",
        [
            professional(
                MARTIN,
                "Martin",
                "Paul",
                profession="60",
                savoir_faire="",
                structure=CH,
                finess="350000014",
                name="CH Rennes",
                mode="S",
            )
        ],
    )
    _import(db, third)
    with db.session() as session:
        martin = session.get(Practitioner, "8" + MARTIN)
        assert martin is not None and martin.active and martin.version == 3


def test_older_extract_is_refused(db: Database, tmp_path: Path) -> None:
    _import(db, first_extract(tmp_path))
    older = write_activity(tmp_path, "202512010800", [professional(MARTIN, "Martin", "Paul")])
    with pytest.raises(ExtractError, match="plus ancien"):
        _import(db, older)


def test_truncated_file_imports_nothing(db: Database, tmp_path: Path) -> None:
    path = first_extract(tmp_path)
    content = path.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = [*content[:-1], "|".join(content[-1].split("|")[:20]) + "|\n"]
    path.write_text("".join(broken), encoding="utf-8")
    with pytest.raises(ExtractError, match="ligne 4 : 20 champs au lieu de 56"):
        _import(db, path)
    assert _count(db, Practitioner) == 0
    assert _count(db, Extract) == 0


def test_invalid_identifier_line_is_rejected_with_its_line_number(
    db: Database, tmp_path: Path
) -> None:
    bad = professional(DUPONT, "Dupont", "Élise")
    bad[2] = "810291417772"  # wrong Luhn digit
    path = write_activity(tmp_path, "202601010800", [bad, professional(MARTIN, "Martin", "Paul")])
    report = _import(db, path)
    assert report.entities["Practitioner"].created == 1
    assert len(report.rejected) == 1 and report.rejected[0].startswith("ligne 2 :")


def test_unknown_header_is_refused(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "autre.txt"
    path.write_text("a|b|c|\n1|2|3|\n", encoding="utf-8")
    with pytest.raises(ExtractError, match="en-tête non reconnu"):
        _import(db, path)


def test_header_matched_by_name_whatever_the_case(db: Database, tmp_path: Path) -> None:
    path = first_extract(tmp_path)
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    path.write_text(
        header.replace("(coord. structure)", "(coord. Structure)").upper() + "\n" + rest
    )
    assert _import(db, path).entities["Practitioner"].created == 2


def test_mailboxes_attach_to_their_carrier(db: Database, tmp_path: Path) -> None:
    _import(db, first_extract(tmp_path))
    mss = write_mssante(
        tmp_path,
        "202601010900",
        [
            mailbox("elise.dupont@medecin.mssante.fr", rpps=DUPONT, family="DUPONT", given="Elise"),
            mailbox(
                "elise.dupont@ch-rennes.mssante.fr",
                rpps=DUPONT,
                structure_type="1",
                structure_id="1350000014",
            ),
            mailbox(
                "elise.dupont@ch-rennes.mssante.fr",
                rpps=DUPONT,
                structure_type="1",
                structure_id="1350000014",
            ),
            mailbox(
                "urgences@ch-rennes.mssante.fr",
                kind="ORG",
                structure_type="1",
                structure_id="1350000014",
                name="CH Rennes",
            ),
            mailbox(
                "secretariat@msp-bruz.mssante.fr",
                kind="ORG",
                structure_type="3",
                structure_id="312345678901234",
                name="MSP de Bruz",
            ),
            mailbox("inconnu@medecin.mssante.fr", rpps=LEGALL),
        ],
    )
    report = _import(db, mss)
    assert report.entities["Mailbox"].created == 4  # duplicate line deduplicated
    assert any("absent de l'annuaire" in r for r in report.rejected)
    with db.session() as session:
        personal = session.get(Mailbox, "elise.dupont@medecin.mssante.fr")
        at_ch = session.get(Mailbox, "elise.dupont@ch-rennes.mssante.fr")
        org = session.get(Mailbox, "urgences@ch-rennes.mssante.fr")
        msp = session.get(Mailbox, "secretariat@msp-bruz.mssante.fr")
        assert personal and personal.carrier_type == "Practitioner"
        assert at_ch and at_ch.carrier_type == "PractitionerRole"
        assert org and org.carrier_type == "Organization"
        assert msp and msp.carrier_type == "Organization"
        ch = session.get(Organization, org.carrier_id)
        assert ch is not None and ch.structure_key == CH
        created = session.get(Organization, msp.carrier_id)
        assert created is not None and created.name == "MSP de Bruz"


def test_history_is_readable_over_fhir(db: Database, tmp_path: Path) -> None:
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from parcours.app import create_app
    from parcours.auth import keys
    from parcours.auth.devidp import mint_token
    from tests.conftest import make_settings

    _import(db, first_extract(tmp_path))
    renamed = write_activity(
        tmp_path,
        "202602010800",
        [professional(DUPONT, "Dupont-Le Goff", "Élise", structure=CABINET, name="Cabinet Dupont")],
    )
    _import(db, renamed)
    settings = replace(make_settings(tmp_path, db.url))
    token = mint_token(
        keys.load_or_create(settings.keys_dir),
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject="x",
        claims={"actor": "agent", "agent_id": "CPAM35-A001"},
        ttl_seconds=600,
    )
    client = TestClient(create_app(settings, db))
    auth = {"Authorization": f"Bearer {token}"}
    response = client.get(f"/fhir/Practitioner/8{DUPONT}/_history", headers=auth)
    history = response.json()
    assert response.status_code == 200, response.text
    assert history["type"] == "history" and history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert [e["resource"]["name"][0]["family"] for e in history["entry"]] == [
        "Dupont-Le Goff",
        "Dupont",
    ]
    v1 = client.get(f"/fhir/Practitioner/8{DUPONT}/_history/1", headers=auth)
    assert v1.status_code == 200 and v1.json()["name"][0]["family"] == "Dupont"
    assert v1.headers["etag"] == 'W/"1"'
    gone = client.get(f"/fhir/Practitioner/8{MARTIN}/_history/2", headers=auth).json()
    assert gone["active"] is False
    assert client.get(f"/fhir/Practitioner/8{DUPONT}/_history/9", headers=auth).status_code == 404
