"""Bulk inserts through the driver's executemany, with SQLAlchemy's own type conversions.

The ORM/Core insert path re-compiles parameters and runs every TypeDecorator per row through
several layers; on a 2-million-line directory extract that overhead dominated the import. Here
the statement is compiled once, each column's bind processor is fetched once, and rows go
straight to ``cursor.executemany`` (sqlite3 and psycopg 3 both batch it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import polars as pl
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


def bulk_insert_frame(
    session: Session, table: Table, frame: pl.DataFrame, constants: dict[str, Any]
) -> None:
    """Insert a column frame (values already in their database form: text, JSON as text,
    booleans) plus ``constants`` repeated on every row, by the fastest path each driver has.

    PostgreSQL: one ``COPY … FROM STDIN (FORMAT csv)`` fed by polars' native CSV writer (an
    unquoted empty field is NULL, a quoted one the empty string). SQLite: one executemany whose
    constants are SQL literals, not parameters: binding is the driver's per-value cost.
    """
    if frame.height == 0:
        return
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    names = [*frame.columns, *constants]
    columns = ", ".join(quote(n) for n in names)
    target = quote(table.name)
    values = {
        k: table.c[k].type._cached_bind_processor(dialect)(v)  # type: ignore[misc]
        if table.c[k].type._cached_bind_processor(dialect)
        else v
        for k, v in constants.items()
    }
    if dialect.name == "postgresql":
        data = frame.with_columns(
            pl.lit(v.isoformat() if isinstance(v, datetime) else v).alias(k)
            for k, v in values.items()
        ).write_csv(include_header=False, quote_style="non_numeric", null_value="")
        raw = connection.connection.dbapi_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(  # type: ignore[attr-defined]
                f"COPY {target} ({columns}) FROM STDIN (FORMAT csv)"
            ) as copy,
        ):
            copy.write(data.encode())
        return
    if dialect.name == "sqlite":
        literals = ", ".join(_sqlite_literal(v) for v in values.values())
        placeholders = ", ".join(["?"] * frame.width + ([literals] if literals else []))
        params = list(zip(*(frame[c].to_list() for c in frame.columns), strict=True))
        connection.exec_driver_sql(
            f"INSERT INTO {target} ({columns}) VALUES ({placeholders})", params
        )
        return
    rows = [{**row, **constants} for row in frame.iter_rows(named=True)]
    bulk_insert(session, table, rows)


def _sqlite_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@contextmanager
def indexes_rebuilt_after(session: Session, table: Table) -> Iterator[None]:
    """Load an *empty* table without maintaining its secondary indexes and foreign keys row by
    row, then rebuild them in bulk (a sort per index, one join per foreign key), inside the
    caller's transaction: a failure rolls the DDL back with the rows.

    On a first directory import this is where the time went (PostgreSQL's foreign-key triggers
    cost ~45 µs per role row). The definitions are read back from the catalogue, so the rebuilt
    objects are exactly those the migrations created, names included. Unique indexes and
    primary keys stay: they are what refuses a duplicate during the load.
    """
    connection = session.connection()
    dialect = connection.dialect.name
    name = table.name
    restore: list[str] = []
    if dialect == "postgresql":
        for constraint, definition in connection.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f'",
            (name,),
        ).fetchall():
            connection.exec_driver_sql(f'ALTER TABLE "{name}" DROP CONSTRAINT "{constraint}"')
            restore.append(f'ALTER TABLE "{name}" ADD CONSTRAINT "{constraint}" {definition}')
        for index, definition in connection.exec_driver_sql(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisunique AND NOT x.indisprimary",
            (name,),
        ).fetchall():
            connection.exec_driver_sql(f'DROP INDEX "{index}"')
            restore.insert(0, definition)
    elif dialect == "sqlite":
        for index, definition in connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'",
            (name,),
        ).fetchall():
            connection.exec_driver_sql(f'DROP INDEX "{index}"')
            restore.append(definition)
    yield
    for statement in restore:
        connection.exec_driver_sql(statement)
