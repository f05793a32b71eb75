"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

``PARCOURS_TEST_POSTGRES_URL`` names a PostgreSQL *server* database the tests may create
scratch databases from (``.ci/run`` starts one). In CI (``CI=true``) its absence is an error,
never a silent skip: PostgreSQL tests must run there.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from parcours.config import Settings
from parcours.storage import migrate
from parcours.storage.db import Database, normalise_url

PG_URL = os.environ.get("PARCOURS_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytest_plugins = ["tests.scenario"]

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError(
            "CI=true but PARCOURS_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI."
        )


class PostgresScratch:
    """Creates throw-away databases on the test server, dropped at the end of the session."""

    def __init__(self, url: str) -> None:
        self.admin_url = normalise_url(url)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def new_url(self) -> str:
        name = "parcours_t_" + uuid.uuid4().hex[:12]
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        # WITH (FORCE) cannot terminate an autovacuum worker (it runs as a superuser), so a
        # drop racing one is retried; a database still busy after that is only reported.
        with self.admin.connect() as conn:
            for name in self.created:
                for attempt in range(10):
                    try:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                        break
                    except Exception:
                        if attempt == 9:
                            warnings.warn(f"scratch database {name} left behind", stacklevel=1)
                        time.sleep(0.5)
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[PostgresScratch | None]:
    if not PG_URL:
        yield None
        return
    scratch = PostgresScratch(PG_URL)
    yield scratch
    scratch.drop_all()


def _new_database(backend: str, directory: Path, pg: PostgresScratch | None) -> Database:
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'test.sqlite3'}"
    else:
        assert pg is not None
        url = pg.new_url()
    db = Database(url)
    migrate.upgrade(db)
    return db


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db(backend: str, tmp_path: Path, pg_scratch: PostgresScratch | None) -> Iterator[Database]:
    database = _new_database(backend, tmp_path, pg_scratch)
    yield database
    database.dispose()


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": database_url,
        "base_url": "http://testserver",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, db.url)
