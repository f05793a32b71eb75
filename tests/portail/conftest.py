"""A live parcours (uvicorn on a free port) with a patient's record, and a real Chromium.

The portal logs in through the identity provider over HTTP (the authorization code is
exchanged by the server calling the IdP's token endpoint), so these tests need a real server,
not a TestClient. Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``): a
missing browser skips the browser tests on a workstation, and fails them in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from parcours.app import create_app
from parcours.config import Settings
from parcours.dossier.samples import PATIENT_INS, cda
from parcours.dossier.store import open_store
from parcours.storage.db import Database
from tests.dossier.conftest import Dmp, _token, grant_access, open_record
from tests.scenario import DUPONT, MARTIN, load_scenario

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("PARCOURS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
STRANGER = "810000008887"  # a doctor with no tie to the patient: bris de glace only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Portal:
    base: str
    dmp: Dmp
    documents: dict[str, str]

    @property
    def db(self) -> Database:
        return self.dmp.db


@pytest.fixture
def portal(db: Database, settings: Settings, tmp_path: Path) -> Iterator[Portal]:
    port = _free_port()
    live = replace(settings, base_url=f"http://127.0.0.1:{port}")
    load_scenario(db, tmp_path)
    store = open_store(live)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(live, db, store), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    client = httpx.Client(base_url=live.base_url, timeout=30)
    dmp = Dmp(client, db, live, store)  # type: ignore[arg-type]
    dmp.tokens = {
        "dupont": _token(
            live,
            "8" + DUPONT,
            {
                "actor": "professional",
                "idnat_ps": "8" + DUPONT,
                "profession": "10",
                "structure": "1350000014",
            },
        ),
        "patient": _token(live, "patient", {"actor": "patient", "ins": PATIENT_INS}),
        "agent": _token(live, "CPAM35-A001", {"actor": "agent", "agent_id": "CPAM35-A001"}),
        "urgentiste": _token(
            live, STRANGER, {"actor": "professional", "idnat_ps": STRANGER, "profession": "10"}
        ),
    }
    dmp.patient_id = open_record(dmp)
    grant_access(dmp, "designate-mt", "8" + DUPONT)
    grant_access(dmp, "grant", "8" + MARTIN)
    documents = {
        "compte_rendu": dmp.publish_one(
            data=cda("Consultation : tension artérielle normale."),
            title="Compte rendu de consultation du 12 juin",
        ),
        "vaccination": dmp.publish_one(
            data=cda("Vaccin antigrippal."),
            title="Note de vaccination",
            type_code="87273-9",
            class_code="11",
        ),
    }
    try:
        yield Portal(live.base_url, dmp, documents)
    finally:
        client.close()
        server.should_exit = True
        thread.join(5)


def break_the_glass(portal: Portal, doc: str) -> None:
    """A doctor with no tie to the patient opens a document in an emergency (R17)."""
    response = portal.dmp.call(
        "GET",
        f"/fhir/DocumentReference/{doc}",
        "urgentiste",
        headers={"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "patient inconscient"},
    )
    assert response.status_code == 200, response.text


def login(client: httpx.Client, identifier: str, profile: str = "patient") -> httpx.Response:
    """The browser's path through the login, with an HTTP client: portal → IdP form → portal."""
    start = client.get(f"/portail/connexion?profil={profile}")
    assert start.status_code == 303, start.text
    form = client.get(start.headers["location"])
    assert form.status_code == 200, form.text
    fields = _hidden_fields(form.text)
    fields["identifiant"] = identifier
    back = client.post("/idp/authorize", data=fields)
    assert back.status_code == 303, back.text
    return client.get(back.headers["location"])


def _hidden_fields(html: str) -> dict[str, str]:
    import re
    from html import unescape

    return {
        unescape(name): unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', html)
    }


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"Chromium absent ({CHROMIUM}) : .ci/run doit l'installer.")
        pytest.skip(f"Chromium absent ({CHROMIUM}) : apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Without these, Chromium keeps calling Google's hosts, which this network refuses.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
