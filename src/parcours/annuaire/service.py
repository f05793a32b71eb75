"""Directory read and search: the Annuaire santé's FHIR search parameters over our tables.

The parameters and their semantics follow the Annuaire santé API v2 (shared reference
``mssante.md`` §5.2 and ``docs/annuaire-fhir-mapping.md``). FHIR string matching is
case- and accent-insensitive prefix matching: implemented as a range on the folded column
(``>= x AND < x + U+FFFF``), which both SQLite and PostgreSQL answer from a B-tree index.
Mailboxes on *liste rouge* are never shown nor searchable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.orm import Session

from parcours.annuaire import nomenclatures as nos
from parcours.annuaire import resources
from parcours.annuaire.models import (
    History,
    Mailbox,
    Organization,
    Practitioner,
    PractitionerRole,
)
from parcours.fhir.errors import NotFound
from parcours.fhir.search import (
    STRING_MODIFIERS,
    TOKEN_MODIFIERS,
    SearchParam,
    SearchQuery,
    match_string,
    parse_token,
)


def _codes(values: list[str]) -> list[str]:
    return [parse_token(v).code for v in values]


def _negate(cond: Any, modifier: str) -> Any:
    return ~cond if modifier == "not" else cond


def _bool(column: Any) -> Callable[[list[str], str], Any]:
    return lambda values, _m: or_(*[column.is_(v == "true") for v in values])


def _ref_ids(values: list[str], rtype: str) -> list[str]:
    out = []
    for v in values:
        v = v.rstrip("/")
        if "/" in v:
            kind, _, ident = v.rpartition("/")
            if kind.rsplit("/", 1)[-1] != rtype:
                continue
            out.append(ident)
        else:
            out.append(v)
    return out


def _visible_mailbox() -> Any:
    return and_(Mailbox.active.is_(True), Mailbox.liste_rouge.is_(False))


def _mailbox_string(link: tuple[Any, Any, Any]) -> Callable[[list[str], str], Any]:
    """``link`` = (resource id column, mailbox column holding it, extra mailbox filter).

    Written as ``id IN (SELECT … FROM mailbox WHERE address …)`` so the database starts from
    the mailbox address index rather than testing every resource."""
    target, carrier, extra = link

    def build(values: list[str], modifier: str) -> Any:
        address = match_string(Mailbox.address, values, modifier, folded=False)
        return target.in_(select(carrier).where(extra, _visible_mailbox(), address))

    return build


def _mailbox_type(link: tuple[Any, Any, Any]) -> Callable[[list[str], str], Any]:
    target, carrier, extra = link

    def build(values: list[str], modifier: str) -> Any:
        boxes = select(carrier).where(extra, _visible_mailbox(), Mailbox.type.in_(_codes(values)))
        cond = target.in_(boxes)
        return _negate(cond, modifier)

    return build


# --- Practitioner ------------------------------------------------------------------------


def _practitioner_identifier(values: list[str], modifier: str) -> Any:
    conds = []
    for raw in values:
        tok = parse_token(raw)
        if tok.system in (None, nos.SYSTEM_IDNAT_PS):
            conds.append(Practitioner.id == tok.code)
        if tok.system in (None, nos.SYSTEM_RPPS_URL):
            conds.append(Practitioner.id == "8" + tok.code)
        if tok.system == nos.SYSTEM_ADELI:
            conds.append(Practitioner.id == "0" + tok.code)
    return _negate(or_(*conds) if conds else false(), modifier)


def _practitioner_name(values: list[str], modifier: str) -> Any:
    return or_(
        match_string(Practitioner.family_folded, values, modifier),
        match_string(Practitioner.given_folded, values, modifier),
    )


def _qualification(values: list[str], modifier: str) -> Any:
    codes = _codes(values)
    cond = exists().where(
        PractitionerRole.practitioner_id == Practitioner.id,
        or_(
            PractitionerRole.profession_code.in_(codes), PractitionerRole.specialty_code.in_(codes)
        ),
    )
    return _negate(cond, modifier)


_PRACTITIONER_BOX = (Practitioner.id, Mailbox.practitioner_id, Mailbox.practitioner_id.is_not(None))

PRACTITIONER_PARAMS: dict[str, SearchParam] = {
    p.name: p
    for p in [
        SearchParam("_id", "token", "Identifiant logique", lambda v, m: Practitioner.id.in_(v)),
        SearchParam(
            "identifier",
            "token",
            "IDNPS (8+RPPS, 0+ADELI) ou RPPS",
            _practitioner_identifier,
            TOKEN_MODIFIERS,
            "Practitioner.identifier",
        ),
        SearchParam(
            "name", "string", "Nom ou prénom d'exercice", _practitioner_name, STRING_MODIFIERS
        ),
        SearchParam(
            "family",
            "string",
            "Nom d'exercice",
            lambda v, m: match_string(Practitioner.family_folded, v, m),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "given",
            "string",
            "Prénom d'exercice",
            lambda v, m: match_string(Practitioner.given_folded, v, m),
            STRING_MODIFIERS,
        ),
        SearchParam("active", "boolean", "Actif dans l'annuaire", _bool(Practitioner.active)),
        SearchParam(
            "qualification-code",
            "token",
            "Profession (TRE_G15) ou savoir-faire (TRE_R38)",
            _qualification,
            TOKEN_MODIFIERS,
        ),
        SearchParam(
            "mailbox-mss",
            "string",
            "Adresse de BAL MSSanté",
            _mailbox_string(_PRACTITIONER_BOX),
            STRING_MODIFIERS,
            "Practitioner.telecom.value",
        ),
        SearchParam(
            "mailbox-mss-type",
            "token",
            "Type de BAL (PER, ORG, APP, CAB)",
            _mailbox_type(_PRACTITIONER_BOX),
            TOKEN_MODIFIERS,
        ),
    ]
}

# --- PractitionerRole --------------------------------------------------------------------

_ROLE_BOX = (PractitionerRole.id, Mailbox.carrier_id, Mailbox.carrier_type == "PractitionerRole")

ROLE_PARAMS: dict[str, SearchParam] = {
    p.name: p
    for p in [
        SearchParam("_id", "token", "Identifiant logique", lambda v, m: PractitionerRole.id.in_(v)),
        SearchParam("active", "boolean", "Activité en cours", _bool(PractitionerRole.active)),
        SearchParam(
            "practitioner",
            "reference",
            "Professionnel (Practitioner/id)",
            lambda v, m: PractitionerRole.practitioner_id.in_(_ref_ids(v, "Practitioner")),
        ),
        SearchParam(
            "organization",
            "reference",
            "Structure d'exercice (Organization/id)",
            lambda v, m: PractitionerRole.organization_id.in_(_ref_ids(v, "Organization")),
        ),
        SearchParam(
            "role",
            "token",
            "Profession (TRE_G15) ou fonction (TRE_R21)",
            lambda v, m: _negate(
                or_(
                    PractitionerRole.profession_code.in_(_codes(v)),
                    PractitionerRole.role_code.in_(_codes(v)),
                ),
                m,
            ),
            TOKEN_MODIFIERS,
        ),
        SearchParam(
            "specialty",
            "token",
            "Savoir-faire (TRE_R38)",
            lambda v, m: _negate(PractitionerRole.specialty_code.in_(_codes(v)), m),
            TOKEN_MODIFIERS,
        ),
        SearchParam(
            "mailbox-mss",
            "string",
            "Adresse de BAL MSSanté",
            _mailbox_string(_ROLE_BOX),
            STRING_MODIFIERS,
            "PractitionerRole.telecom.value",
        ),
        SearchParam(
            "mailbox-mss-type", "token", "Type de BAL", _mailbox_type(_ROLE_BOX), TOKEN_MODIFIERS
        ),
    ]
}

# --- Organization ------------------------------------------------------------------------


def _org_identifier(values: list[str], modifier: str) -> Any:
    conds = []
    for raw in values:
        tok = parse_token(raw)
        c = tok.code
        if tok.system in (None, nos.SYSTEM_FINESS):
            conds += [Organization.finess == c, Organization.finess_ej == c]
        if tok.system in (None, nos.SYSTEM_SIRET):
            conds.append(Organization.siret == c)
        if tok.system in (None, nos.SYSTEM_STRUCTURE_TECHNIQUE):
            conds.append(Organization.structure_key == c)
        if tok.system == nos.SYSTEM_IDNAT_STRUCT:
            if c[:1] == "1":
                conds += [Organization.finess == c[1:], Organization.finess_ej == c[1:]]
            elif c[:1] == "3":
                conds.append(Organization.siret == c[1:])
    return _negate(or_(*conds) if conds else false(), modifier)


_ORG_BOX = (Organization.id, Mailbox.carrier_id, Mailbox.carrier_type == "Organization")

ORGANIZATION_PARAMS: dict[str, SearchParam] = {
    p.name: p
    for p in [
        SearchParam("_id", "token", "Identifiant logique", lambda v, m: Organization.id.in_(v)),
        SearchParam(
            "identifier",
            "token",
            "FINESS, SIRET, idNat_Struct ou identifiant technique",
            _org_identifier,
            TOKEN_MODIFIERS,
        ),
        SearchParam(
            "name",
            "string",
            "Raison sociale",
            lambda v, m: match_string(Organization.name_folded, v, m),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "address-city",
            "string",
            "Commune",
            lambda v, m: match_string(Organization.city_folded, v, m),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "address-postalcode",
            "string",
            "Code postal",
            lambda v, m: match_string(Organization.postal_code, v, m),
            STRING_MODIFIERS,
        ),
        SearchParam("active", "boolean", "Active", _bool(Organization.active)),
        SearchParam(
            "type",
            "token",
            "Secteur d'activité (TRE_R02)",
            lambda v, m: _negate(Organization.sector_code.in_(_codes(v)), m),
            TOKEN_MODIFIERS,
        ),
        SearchParam(
            "mailbox-mss",
            "string",
            "Adresse de BAL MSSanté",
            _mailbox_string(_ORG_BOX),
            STRING_MODIFIERS,
            "Organization.telecom.value",
        ),
        SearchParam(
            "mailbox-mss-type", "token", "Type de BAL", _mailbox_type(_ORG_BOX), TOKEN_MODIFIERS
        ),
    ]
}


@dataclass(frozen=True)
class ResourceKind:
    model: type
    params: dict[str, SearchParam]
    includes: frozenset[str]


KINDS: dict[str, ResourceKind] = {
    "Practitioner": ResourceKind(Practitioner, PRACTITIONER_PARAMS, frozenset()),
    "PractitionerRole": ResourceKind(
        PractitionerRole,
        ROLE_PARAMS,
        frozenset({"PractitionerRole:organization", "PractitionerRole:practitioner"}),
    ),
    "Organization": ResourceKind(Organization, ORGANIZATION_PARAMS, frozenset()),
}


@dataclass
class SearchResult:
    matches: list[dict[str, Any]]
    included: list[dict[str, Any]]
    total: int | None
    has_more: bool


def _mailboxes_for(session: Session, rtype: str, ids: list[str]) -> dict[str, list[Mailbox]]:
    if not ids:
        return {}
    stmt = select(Mailbox).where(_visible_mailbox())
    if rtype == "Practitioner":
        stmt = stmt.where(Mailbox.practitioner_id.in_(ids), Mailbox.type.in_(("PER", "CAB")))
        key = "practitioner_id"
    else:
        stmt = stmt.where(Mailbox.carrier_type == rtype, Mailbox.carrier_id.in_(ids))
        key = "carrier_id"
    out: dict[str, list[Mailbox]] = {}
    for box in session.execute(stmt.order_by(Mailbox.address)).scalars():
        out.setdefault(getattr(box, key), []).append(box)
    return out


_RENDER = {
    "Practitioner": resources.practitioner,
    "PractitionerRole": resources.practitioner_role,
    "Organization": resources.organization,
}


def render(session: Session, rtype: str, rows: list[Any]) -> list[dict[str, Any]]:
    boxes = _mailboxes_for(session, rtype, [r.id for r in rows])
    fn = _RENDER[rtype]
    return [fn(r, boxes.get(r.id, [])) for r in rows]


def read(session: Session, rtype: str, rid: str) -> dict[str, Any]:
    kind = KINDS[rtype]
    row = session.get(kind.model, rid)
    if row is None:
        raise NotFound(rtype, rid)
    return render(session, rtype, [row])[0]


def search(session: Session, query: SearchQuery) -> SearchResult:
    kind = KINDS[query.resource_type]
    model = kind.model
    conditions = [c.condition() for c in query.criteria]
    stmt = select(model).where(*conditions).order_by(model.id)  # type: ignore[attr-defined]
    total = None
    if query.total != "none":
        total = session.execute(
            select(func.count()).select_from(model).where(*conditions)
        ).scalar_one()
    rows = []
    has_more = False
    if query.count > 0:
        rows = list(session.execute(stmt.offset(query.offset).limit(query.count + 1)).scalars())
        has_more = len(rows) > query.count
        rows = rows[: query.count]
    matches = render(session, query.resource_type, rows)
    included: list[dict[str, Any]] = []
    for inc in query.includes:
        if inc == "PractitionerRole:organization":
            ids = sorted({r.organization_id for r in rows if r.organization_id})
            orgs = (
                session.execute(select(Organization).where(Organization.id.in_(ids)))
                .scalars()
                .all()
            )
            included += render(session, "Organization", list(orgs))
        elif inc == "PractitionerRole:practitioner":
            ids = sorted({r.practitioner_id for r in rows})
            pps = (
                session.execute(select(Practitioner).where(Practitioner.id.in_(ids)))
                .scalars()
                .all()
            )
            included += render(session, "Practitioner", list(pps))
    return SearchResult(matches, included, total, has_more)


def _from_snapshot(model: type, snapshot: dict[str, Any]) -> Any:
    """A detached row rebuilt from a history snapshot (only for rendering)."""
    values = dict(snapshot)
    if isinstance(values.get("last_updated"), str):
        values["last_updated"] = datetime.fromisoformat(values["last_updated"])
    columns = {c.key for c in model.__table__.columns}  # type: ignore[attr-defined]
    return model(**{k: v for k, v in values.items() if k in columns})


def versions(session: Session, rtype: str, rid: str) -> list[dict[str, Any]]:
    """Every version of a directory resource, newest first (FHIR ``_history``).

    Past versions are rendered from the snapshots the importer kept; they carry no ``telecom``
    because mailboxes are versioned on their own rows, not with their carrier.
    """
    kind = KINDS[rtype]
    current = session.get(kind.model, rid)
    if current is None:
        raise NotFound(rtype, rid)
    out = [render(session, rtype, [current])[0]]
    past = session.execute(
        select(History)
        .where(History.resource_type == kind.model.__name__, History.resource_id == rid)
        .order_by(History.version.desc())
    ).scalars()
    fn = _RENDER[rtype]
    out += [fn(_from_snapshot(kind.model, h.snapshot), []) for h in past]
    return out


def version(session: Session, rtype: str, rid: str, version_id: str) -> dict[str, Any]:
    for resource in versions(session, rtype, rid):
        if resource["meta"]["versionId"] == version_id:
            return resource
    raise NotFound(rtype, f"{rid}/_history/{version_id}")
