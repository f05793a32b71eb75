"""The live server both end-to-end suites drive: parcours under uvicorn on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

from parcours.app import create_app
from parcours.config import Settings
from parcours.storage.db import Database
from tests.scenario import load_scenario


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db: Database, settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    port = _free_port()
    live = replace(settings, base_url=f"http://127.0.0.1:{port}")
    load_scenario(db, tmp_path)
    config = uvicorn.Config(create_app(live, db), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    yield live
    srv.should_exit = True
    thread.join(5)
