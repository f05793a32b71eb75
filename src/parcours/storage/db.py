"""Database engine and sessions: SQLite (embedded default) or PostgreSQL, same code.

The platform uses SQLAlchemy's synchronous API on purpose: the embedded default is SQLite, whose
async drivers are a thread wrapper around the stdlib module anyway, and the bulk paths (directory
import, migrations) are faster with the plain drivers. FastAPI runs the sync route functions in
its thread pool, so requests still overlap. PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Pick the driver we ship for a plain ``postgresql://`` or ``sqlite://`` URL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while the importer or an audit write holds the write lock.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-131072")  # 128 MiB page cache: index builds on import
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _sqlite_full_sync(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def make_engine(url: str, *, durable: bool = False) -> Engine:
    """``durable``: on SQLite every COMMIT syncs the WAL to disk (``synchronous=FULL``), for
    writers that promise durability to a peer at commit time (the mail queue answers 250 only
    after it). PostgreSQL's default ``synchronous_commit=on`` already does so."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if durable:
            event.listen(engine, "connect", _sqlite_full_sync)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class Database:
    """One engine and its session factory; the app, the CLI and the tests each hold one."""

    def __init__(self, url: str, *, durable: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, durable=durable)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed if the block succeeds, rolled back entirely otherwise."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
