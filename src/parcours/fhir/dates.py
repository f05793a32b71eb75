"""FHIR date/dateTime values and date search parameters (R4 §2.24.0.5, §3.1.1.4.2).

A FHIR date is a *range* at its precision (``2024`` is the whole year), so both storage and
search work on half-open UTC intervals ``[start, end)``. A dateTime with a time must carry a
time zone (R4 dateTime regex); ``instant`` likewise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, or_

from parcours.fhir.errors import BadRequest

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?"
)
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


class DateError(ValueError):
    pass


def parse_range(raw: str) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC for a FHIR date/dateTime at its own precision."""
    match = _DATE.fullmatch(raw)
    if not match:
        raise DateError(f"date FHIR invalide : « {raw} » (attendu AAAA[-MM[-JJ[Thh:mm:ss+hh:mm]]])")
    g = match.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=UTC)
            return start, datetime(year + 1, 1, 1, tzinfo=UTC)
        month = int(g["m"])
        if g["d"] is None:
            start = datetime(year, month, 1, tzinfo=UTC)
            nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, nxt
        day = int(g["d"])
        if g["H"] is None:
            start = datetime(year, month, day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        tz = g["tz"]
        offset = timedelta(0)
        if tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        local = datetime(
            year,
            month,
            day,
            int(g["H"]),
            int(g["M"]),
            int(g["S"] or 0),
            int(float(g["f"] or 0) * 1_000_000),
        )
        start = (local - offset).replace(tzinfo=UTC)
        if g["S"] is None:
            return start, start + timedelta(minutes=1)
        if g["f"] is None:
            return start, start + timedelta(seconds=1)
        return start, start + timedelta(microseconds=1)
    except ValueError as exc:
        if isinstance(exc, DateError):
            raise
        raise DateError(f"date FHIR invalide : « {raw} » ({exc})") from None


def parse_instant(raw: str) -> datetime:
    return parse_range(raw)[0]


def split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and len(raw) > 2 and not raw[:2].isdigit():
        return raw[:2], raw[2:]
    return "eq", raw


def check_date_value(name: str, raw: str) -> None:
    prefix, value = split_prefix(raw)
    try:
        parse_range(value)
    except DateError as exc:
        raise BadRequest(str(exc), expression=[name]) from None
    if prefix == "ap":
        raise BadRequest("Le préfixe « ap » n'est pas pris en charge.", expression=[name])


def _point(column: Any, prefix: str, lo: datetime, hi: datetime) -> Any:
    """Condition for a column holding an instant (treated as a zero-width range)."""
    if prefix == "eq":
        return and_(column >= lo, column < hi)
    if prefix == "ne":
        return or_(column < lo, column >= hi)
    if prefix in ("gt", "sa"):
        return column >= hi
    if prefix in ("lt", "eb"):
        return column < lo
    if prefix == "ge":
        return column >= lo
    if prefix == "le":
        return column < hi
    return false()


def instant_param(column: Any) -> Callable[[list[str], str], Any]:
    def build(values: list[str], _modifier: str) -> Any:
        conds = []
        for raw in values:
            prefix, value = split_prefix(raw)
            lo, hi = parse_range(value)
            conds.append(and_(column.is_not(None), _point(column, prefix, lo, hi)))
        return or_(*conds)

    return build


def period_param(start: Any, end: Any) -> Callable[[list[str], str], Any]:
    """A Period searched by a date (open end = ∞). ``eq`` means *overlaps* (the MHD/XDS
    service-time reading) rather than R4's "fully contained"; the other prefixes follow R4."""

    def build(values: list[str], _modifier: str) -> Any:
        conds = []
        for raw in values:
            prefix, value = split_prefix(raw)
            lo, hi = parse_range(value)
            open_end = end.is_(None)
            overlap = and_(start < hi, or_(open_end, end >= lo))
            if prefix == "eq":  # overlap, as the MHD/PDSm period search expects
                cond = overlap
            elif prefix == "ne":
                cond = ~overlap
            elif prefix in ("gt", "sa"):
                cond = or_(open_end, end >= hi) if prefix == "gt" else start >= hi
            elif prefix in ("lt", "eb"):
                cond = start < lo if prefix == "lt" else and_(~open_end, end < lo)
            elif prefix == "ge":
                cond = or_(open_end, end >= lo)
            elif prefix == "le":
                cond = start < hi
            else:
                cond = false()
            conds.append(and_(start.is_not(None), cond))
        return or_(*conds)

    return build
