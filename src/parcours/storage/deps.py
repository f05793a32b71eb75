"""Request-scoped database session (one unit of work per HTTP request)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session
