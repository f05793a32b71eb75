"""FHIR search-parameter parsing and searchset Bundles, shared by every domain's routes.

A domain declares its parameters (name, type, allowed modifiers, a function that turns the
parsed values into a SQL condition); this module does the FHIR grammar once: comma = OR,
repetition = AND, ``system|code`` tokens, modifiers, result parameters (``_count``, ``_offset``,
``_total``, ``_include``) and refuses what it does not understand with a 400 OperationOutcome
(FHIR R4 §3.1.1.5.2 "strict" handling), unless the client asked ``Prefer: handling=lenient``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import and_, or_

from parcours.fhir.dates import check_date_value
from parcours.fhir.errors import BadRequest, FHIRError, Issue

ParamType = Literal["string", "token", "reference", "boolean", "date", "uri"]

DEFAULT_COUNT = 20
MAX_COUNT = 500

STRING_MODIFIERS = frozenset({"", "exact", "contains"})
TOKEN_MODIFIERS = frozenset({"", "not"})
PLAIN = frozenset({""})


@lru_cache(maxsize=1 << 16)
def fold(text: str) -> str:
    """Case- and accent-insensitive form used for FHIR string matching ("Émile" ~ "emile")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


PREFIX_HIGH = "\uffff"


def match_string(column: Any, values: list[str], modifier: str, *, folded: bool = True) -> Any:
    """FHIR string matching on a column holding folded text: prefix by default (a B-tree range
    ``>= x AND < x + U+FFFF``, which SQLite and PostgreSQL both answer from an index),
    ``:exact`` and ``:contains``. Comma-separated values are ORed."""
    conds = []
    for raw in values:
        v = fold(raw) if folded else raw.strip().lower()
        if modifier == "exact":
            conds.append(column == v)
        elif modifier == "contains":
            conds.append(column.contains(v, autoescape=True))
        else:
            conds.append(and_(column >= v, column < v + PREFIX_HIGH))
    return or_(*conds)


@dataclass(frozen=True)
class Token:
    system: str | None
    code: str


def parse_token(raw: str) -> Token:
    if "|" in raw:
        system, _, code = raw.partition("|")
        return Token(system or None, code)
    return Token(None, raw)


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    description: str
    # Receives the OR-list of raw values and the modifier; returns a SQL boolean expression.
    build: Callable[[list[str], str], Any]
    modifiers: frozenset[str] = PLAIN
    expression: str = ""


@dataclass
class Criterion:
    param: SearchParam
    modifier: str
    values: list[str]

    def condition(self) -> Any:
        return self.param.build(self.values, self.modifier)


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    total: Literal["none", "estimate", "accurate"] = "accurate"
    includes: list[str] = field(default_factory=list)
    # Parameters as received, minus paging, to rebuild self/next links.
    echo: list[tuple[str, str]] = field(default_factory=list)


def _bad(diag: str, name: str) -> BadRequest:
    return BadRequest(diag, code="invalid", expression=[name])


def _validate_value(param: SearchParam, modifier: str, raw: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise _bad(f"Caractère de contrôle interdit dans « {param.name} ».", param.name)
    if raw == "":
        raise _bad(f"Valeur vide pour le paramètre « {param.name} ».", param.name)
    if param.type == "boolean" and raw not in ("true", "false"):
        raise _bad(
            f"Le paramètre « {param.name} » attend true ou false, reçu « {raw} ».", param.name
        )
    if param.type == "date":
        check_date_value(param.name, raw)
    if param.type == "token":
        token = parse_token(raw)
        if token.code == "":
            raise _bad(f"Code vide dans le jeton « {raw} » ({param.name}).", param.name)


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]],
    registry: dict[str, SearchParam],
    *,
    includes: frozenset[str] = frozenset(),
    lenient: bool = False,
) -> SearchQuery:
    """Turn the request's query items into criteria, or raise a 400 naming every bad item."""
    query = SearchQuery(resource_type)
    problems: list[Issue] = []
    for name_with_mod, raw in params:
        name, _, modifier = name_with_mod.partition(":")
        try:
            if name == "_count":
                query.count = _int_param("_count", raw, minimum=0, maximum=MAX_COUNT)
                query.echo.append((name_with_mod, str(query.count)))
                continue
            if name in ("_offset", "_getpagesoffset"):
                query.offset = _int_param(name, raw, minimum=0, maximum=MAX_OFFSET)
                continue
            if name == "_totalMethod":
                # Aidbox/fhirpy's spelling of _total (fhirpy's .count() sends it): accepted as
                # an alias so that client's helpers work unchanged.
                name, raw = "_total", {"count": "accurate"}.get(raw, raw)
            if name == "_summary":
                if raw != "count":
                    raise _bad(f"_summary « {raw} » non pris en charge (seul count l'est).", name)
                query.count, query.total = 0, "accurate"
                query.echo.append((name_with_mod, raw))
                continue
            if name == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise _bad(
                        f"_total accepte none, estimate ou accurate, reçu « {raw} ».", "_total"
                    )
                query.total = raw  # type: ignore[assignment]
                query.echo.append((name_with_mod, raw))
                continue
            if name == "_include":
                if raw not in includes:
                    allowed = ", ".join(sorted(includes)) or "aucun"
                    raise _bad(
                        f"_include « {raw} » non pris en charge pour {resource_type} "
                        f"(acceptés : {allowed}).",
                        "_include",
                    )
                query.includes.append(raw)
                query.echo.append((name_with_mod, raw))
                continue
            if name == "_format":
                if raw not in ("json", "application/json", "application/fhir+json"):
                    raise _bad(f"_format « {raw} » non pris en charge (JSON seulement).", name)
                continue
            param = registry.get(name)
            if param is None:
                if lenient:
                    continue
                known = ", ".join(sorted(registry))
                raise _bad(
                    f"Paramètre de recherche inconnu pour {resource_type} : « {name} ». "
                    f"Paramètres acceptés : {known}, _count, _offset, _total, _include.",
                    name,
                )
            if modifier not in param.modifiers:
                raise _bad(
                    f"Modificateur « :{modifier} » non pris en charge pour « {name} ».", name
                )
            values = raw.split(",")
            for value in values:
                _validate_value(param, modifier, value)
            query.criteria.append(Criterion(param, modifier, values))
            query.echo.append((name_with_mod, raw))
        except FHIRError as exc:
            problems.extend(exc.issues)
    if problems:
        raise FHIRError(400, problems[0].code, problems[0].diagnostics, issues=problems)
    return query


# Past any table's size an offset only yields an empty page; beyond a signed 64-bit integer it
# would make PostgreSQL fail (found by tests/annuaire/test_search_fuzz.py): clamp it.
MAX_OFFSET = 1_000_000_000


def _int_param(name: str, raw: str, *, minimum: int, maximum: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} doit être un entier, reçu « {raw} ».", name) from None
    if value < minimum:
        raise _bad(f"{name} doit être ≥ {minimum}, reçu {value}.", name)
    if maximum is not None and value > maximum:
        return maximum  # FHIR lets a server return fewer than asked.
    return value


def page(params: dict[str, str], *, default: int = 50, maximum: int = 500) -> tuple[int, int]:
    """``_count`` and ``_offset`` of an unpaged search, with the grammar's own messages."""
    count = _int_param("_count", params.get("_count", str(default)), minimum=0, maximum=maximum)
    offset = _int_param("_offset", params.get("_offset", "0"), minimum=0, maximum=MAX_OFFSET)
    return count, offset


def match_bundle(
    base: str, resources: list[dict[str, Any]], total: int | None = None
) -> dict[str, Any]:
    """A ``searchset`` of matches without paging links (a patient's identity, his traces, an
    inbox, heirs' requests); ``total`` only when it is known."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["entry"] = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    return bundle


def searchset(
    *,
    base_url: str,
    query: SearchQuery,
    matches: list[dict[str, Any]],
    included: list[dict[str, Any]],
    total: int | None,
    has_more: bool,
) -> dict[str, Any]:
    """A ``searchset`` Bundle with self/next/previous links that replay the same criteria."""
    base = base_url.rstrip("/")

    def link(offset: int) -> str:
        items = [*query.echo, ("_offset", str(offset))] if offset else list(query.echo)
        if not any(k == "_count" for k, _ in items):
            items.append(("_count", str(query.count)))
        return f"{base}/{query.resource_type}?{urlencode(items)}"

    links = [{"relation": "self", "url": link(query.offset)}]
    if has_more:
        links.append({"relation": "next", "url": link(query.offset + query.count)})
    if query.offset > 0:
        links.append({"relation": "previous", "url": link(max(0, query.offset - query.count))})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    entries = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in matches
    ]
    entries += [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in included
    ]
    bundle["entry"] = entries
    return bundle
