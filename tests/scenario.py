from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from parcours.annuaire.importer import import_file
from parcours.app import create_app
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.config import Settings
from parcours.storage.db import Database
from tests.annuaire.builders import mailbox, professional, write_activity, write_mssante

DUPONT, MARTIN, LEGALL = "10291417771", "10000000017", "10000000025"
CABINET, CH = "R10000000000001", "F350000001"


@dataclass
class Api:
    client: TestClient
    db: Database
    settings: Settings
    token: str

    def get(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.client.get(url, headers={"Authorization": f"Bearer {self.token}"}, **kw)


def load_scenario(db: Database, directory: Path) -> None:
    act = write_activity(
        directory,
        "202601010800",
        [
            professional(
                DUPONT,
                "Dupont",
                "Élise",
                structure=CABINET,
                siret="73282932000074",
                name="Cabinet médical du Thabor",
                sector="SA07",
            ),
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
            professional(
                LEGALL,
                "Le Gall",
                "Yann",
                profession="21",
                savoir_faire="",
                structure="R10000000000002",
                name="Pharmacie de Saint-Malo",
                city="SAINT-MALO",
                postal_code="35400",
            ),
        ],
    )
    mss = write_mssante(
        directory,
        "202601010900",
        [
            mailbox("elise.dupont@medecin.mssante.fr", rpps=DUPONT),
            mailbox(
                "elise.dupont@ch-rennes.mssante.fr",
                rpps=DUPONT,
                structure_type="1",
                structure_id="1350000014",
            ),
            mailbox(
                "paul.martin@ch-rennes.mssante.fr",
                rpps=MARTIN,
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
        ],
    )
    for path in (act, mss):
        with db.session() as session:
            import_file(session, path)


@pytest.fixture
def api(db: Database, settings: Settings, tmp_path: Path) -> Api:
    load_scenario(db, tmp_path)
    key = keys.load_or_create(settings.keys_dir)
    token = mint_token(
        key,
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject="8" + DUPONT,
        claims={"actor": "professional", "idnat_ps": "8" + DUPONT},
        ttl_seconds=600,
    )
    return Api(TestClient(create_app(settings, db)), db, settings, token)
