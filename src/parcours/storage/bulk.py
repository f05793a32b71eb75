"""Bulk inserts through the driver's executemany, with SQLAlchemy's own type conversions.

The ORM/Core insert path re-compiles parameters and runs every TypeDecorator per row through
several layers; on a 2-million-line directory extract that overhead dominated the import. Here
the statement is compiled once, each column's bind processor is fetched once, and rows go
straight to ``cursor.executemany`` (sqlite3 and psycopg 3 both batch it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session


def bulk_insert(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    processors = {key: table.c[key].type._cached_bind_processor(dialect) for key in keys}
    # Import batches repeat the same timestamp, source and version on every row: convert each
    # distinct hashable value once (JSON payloads, unhashable, are converted every time).
    converters = {k: _memoised(p) if p else None for k, p in processors.items()}
    if compiled.positional:
        order = [compiled.binds[name].key for name in compiled.positiontup or []]
        ordered = [(k, converters[k]) for k in order]
        params: list[Any] = [tuple(c(row[k]) if c else row[k] for k, c in ordered) for row in rows]
    else:
        names = {compiled.binds[name].key: name for name in compiled.binds}
        params = [
            {names[k]: (c(row[k]) if c else row[k]) for k, c in converters.items()} for row in rows
        ]
    connection.exec_driver_sql(compiled.string, params)


def _memoised(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    cache: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if isinstance(value, dict | list):
            return processor(value)
        try:
            return cache[value]
        except KeyError:
            result = cache[value] = processor(value)
            return result

    return convert
