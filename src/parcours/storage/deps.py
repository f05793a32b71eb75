"""Request-scoped database session (one unit of work per HTTP request).

Routes declare it with ``Depends(db_session, scope="function")`` so the transaction commits
when the handler returns, *before* the response starts: the audit middleware writes its trace
at that moment, and on SQLite it would otherwise wait on the request's own write lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session
