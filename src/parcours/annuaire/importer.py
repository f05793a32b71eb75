"""Importing extracts: idempotent, incremental, all-or-nothing.

An extract is a full snapshot of its source. Importing one:
1. parses every row into entity records (deduplicated by key),
2. compares each record's digest with what the table holds *for that source*,
3. inserts new rows, updates changed ones (bumping ``version`` and keeping the previous state in
   ``annuaire_history``), deactivates rows that vanished (never deletes), reactivates returns,
all in one transaction: a truncated or malformed file changes nothing. The same file twice is
recognised by its SHA-256 and skipped; a file older than the last one imported is refused.

Throughput matters (the national files have ~2 M and ~0.5 M lines; issue #3 asks ≥ 50,000
lines/s): the file is read, checked, split, deduplicated and compared as column frames (polars,
native code on both cores), the only per-entity Python work being the blake2b digests and role
ids; new rows go to the database as one driver executemany (SQLite) or COPY (PostgreSQL).
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Boolean, func, select, update
from sqlalchemy.orm import Session

from parcours.annuaire.extracts import (
    ACTIVITY,
    MSSANTE,
    ExtractError,
    ExtractLayout,
    generated_at_from_name,
    read_extract_frame,
)
from parcours.annuaire.models import (
    Extract,
    History,
    Mailbox,
    Organization,
    Practitioner,
    PractitionerRole,
)
from parcours.fhir.search import fold
from parcours.identity import IdentifierError, IdNatPS
from parcours.storage.bulk import bulk_insert, bulk_insert_frame, indexes_rebuilt_after
from parcours.storage.models import utcnow

BATCH = 5000
FRAME_BATCH = 50_000  # rows per bulk write: the progress bar's step
# A first load of at least this many rows into an empty table rebuilds its indexes afterwards.
REBUILD_THRESHOLD = 20_000
SOURCE_RPPS = "rpps"
SOURCE_MSS = "mssante"
MAILBOX_TYPES = frozenset({"PER", "ORG", "APP", "CAB"})


@dataclass
class Progress:
    """Callbacks the CLI turns into a progress bar (bytes parsed, then rows written)."""

    on_bytes: Callable[[int], None] | None = None
    on_write_total: Callable[[int], None] | None = None
    on_written: Callable[[int], None] | None = None


@dataclass
class EntityStats:
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    unchanged: int = 0


@dataclass
class ImportReport:
    file_name: str
    kind: str
    skipped: bool = False
    rows: int = 0
    rejected: list[str] = field(default_factory=list)
    entities: dict[str, EntityStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file_name,
            "kind": self.kind,
            "skipped": self.skipped,
            "rows": self.rows,
            "rejected": len(self.rejected),
            "rejected_sample": self.rejected[:20],
            "entities": {k: vars(v) for k, v in self.entities.items()},
        }


@dataclass
class Record:
    """One entity as the extract describes it: indexed columns + rendering attributes."""

    columns: dict[str, Any]
    attrs: dict[str, Any]
    digest: str = ""


def _digest(record: Record) -> str:
    payload = orjson.dumps([record.columns, record.attrs], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_id(prefix: str, raw: str) -> str:
    """FHIR ids allow [A-Za-z0-9-.]{1,64}; structure keys may hold other characters."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in raw)
    candidate = f"{prefix}{cleaned}"
    if len(candidate) <= 64 and candidate.isascii():
        return candidate
    return prefix + hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def _address(r: dict[str, str]) -> dict[str, str]:
    parts = (r["addr_number"], r["addr_number_suffix"], r["addr_street_type"], r["addr_street"])
    fields = {
        "line": " ".join(p for p in parts if p),
        "recipient": r["addr_recipient"],
        "point": r["addr_point"],
        "distribution": r["addr_distribution"],
        "postal_code": r["postal_code"],
        "city": r["city"],
        "commune_code": r["commune_code"],
        "country": r["country"],
        "department": r["department_code"] or r["department"],
    }
    return {k: v for k, v in fields.items() if v}


# --- personal-activity extract ------------------------------------------------------------


_DOUBLED = str.maketrans("0123456789", "0246813579")  # Luhn: 2d, minus 9 above 9


def _luhn_ok(digits: str) -> bool:
    odd = sum(map(int, digits[-1::-2]))
    even = sum(map(int, digits[-2::-2].translate(_DOUBLED)))
    return (odd + even) % 10 == 0


def _idnat(raw: str) -> str:
    """Canonical IDNPS, via a fast path for the common RPPS case (the hot loop's main cost)."""
    if len(raw) == 12 and raw[0] == "8" and raw.isdigit() and _luhn_ok(raw[1:]):
        return raw
    return str(IdNatPS.parse(raw))  # slow path: ADELI, Corsica, or a precise error


_PERSON_KEYS = (
    "id_type",
    "id_pp",
    "civ_code",
    "civ_label",
    "civ_ex_code",
    "civ_ex_label",
    "category_code",
    "category_label",
    "family",
    "given",
)
_ORG_KEYS = (
    "siren",
    "brand",
    "phone",
    "phone2",
    "fax",
    "email",
    "sector_code",
    "sector_label",
    "registration_authority",
    "finess",
    "finess_ej",
    "siret",
    "name",
    "addr_number",
    "addr_number_suffix",
    "addr_street_type",
    "addr_street",
    "addr_recipient",
    "addr_point",
    "addr_distribution",
    "postal_code",
    "city",
    "commune_code",
    "country",
    "department_code",
    "department",
)
_ORG_ATTRS = (
    "siren",
    "brand",
    "phone",
    "phone2",
    "fax",
    "email",
    "sector_label",
    "registration_authority",
)
_ROLE_ATTRS = (
    "profession_label",
    "mode_label",
    "role_label",
    "sector_code",
    "sector_label",
    "activity_kind_code",
    "activity_kind_label",
    "pharma_section_code",
    "pharma_section_label",
)
_ROLE_KEYS = (*_ROLE_ATTRS, "sf_label", "sf_type_code")


@dataclass
class ActivityFrames:
    """The entities of a personal-activity extract, one frame per table: the table's columns,
    ``attrs`` (JSON text) and ``digest``."""

    practitioners: pl.DataFrame
    organizations: pl.DataFrame
    roles: pl.DataFrame


def _present(name: str) -> pl.Expr:
    """The extract writes an absent value as an empty field; the tables and attrs want null."""
    col = pl.col(name)
    return pl.when(col != "").then(col)


_SIMPLE_TEXT = r"^[\x20-\x7E]*$"  # printable ASCII: fold() is lower() + strip() there


def _fold_series(values: pl.Series) -> pl.Series:
    """``fold`` over a column: native for printable ASCII, the Python function (the one the
    search side uses on queries) for the rest, once per distinct value."""
    simple = values.str.contains(_SIMPLE_TEXT)
    others = values.filter(~simple & values.is_not_null()).unique().to_list()
    mapping = {v: fold(v) for v in others}
    return (
        pl.select(
            pl.when(simple)
            .then(values.str.to_lowercase().str.strip_chars())
            .otherwise(values.replace(mapping))
        )
        .to_series()
        .alias(values.name)
    )


def _luhn_valid_rpps_idnat(col: pl.Expr) -> pl.Expr:
    """The fast path of ``_idnat`` as an expression: "8" + 11 digits passing Luhn."""
    shape = col.str.contains(r"^8[0-9]{11}$")
    total: pl.Expr = pl.lit(0)
    for i in range(11):
        digit = col.str.slice(1 + i, 1).cast(pl.Int32, strict=False)
        if (10 - i) % 2:  # every second digit from the right is doubled (minus 9 above 9)
            digit = pl.when(digit < 5).then(digit * 2).otherwise(digit * 2 - 9)
        total = total + digit
    return pl.when(shape).then(total % 10 == 0).otherwise(False)


def _json_attrs(*fields: pl.Expr) -> pl.Expr:
    """A JSON object of the non-null fields (nested too): the compact shape attrs had."""
    encoded = pl.struct(*fields).struct.json_encode()
    # Nulls are dropped by two rewrites: a key cannot hold '"' and a '"' inside a value is
    # escaped, so `,"k":null` / `{"k":null` only ever match a real null member.
    return encoded.str.replace_all(r',"[a-z_0-9]+":null', "").str.replace_all(
        r'\{"[a-z_0-9]+":null,?', "{"
    )


def _with_digest(frame: pl.DataFrame) -> pl.DataFrame:
    """Digest of every column (attrs included), to detect changes on the next extract."""
    joined = frame.select(
        pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("\x00") for c in frame.columns], separator="\x1f"
        )
    ).to_series()
    blake2b = hashlib.blake2b
    digests = [blake2b(v.encode(), digest_size=16).hexdigest() for v in joined.to_list()]
    return frame.with_columns(pl.Series("digest", digests, dtype=pl.String))


def _mapped(values: pl.Series, fast: pl.Series, compute: Callable[[str], str | None]) -> pl.Series:
    """``values`` where ``fast`` holds, else ``compute`` once per distinct other value."""
    others = values.filter(~fast).unique().to_list()
    mapping = {v: compute(v) for v in others}
    slow = values.replace_strict(mapping, default=None, return_dtype=pl.String)
    return pl.select(pl.when(fast).then(values).otherwise(slow)).to_series().alias(values.name)


def parse_activity(
    layout: ExtractLayout, frame: pl.DataFrame, report: ImportReport
) -> ActivityFrames:
    """Extract rows → deduplicated entities, columnar. First row wins for an entity's own
    fields (as the Annuaire writes a person's identity identically on each of his lines);
    qualifications are gathered over all the person's lines."""
    report.rows += frame.height
    errors: dict[str, str] = {}

    def canonical(raw: str) -> str | None:
        try:
            return _idnat(raw)
        except IdentifierError as exc:
            errors[raw] = str(exc)
            return None

    idnat = frame["idnat"]
    pid = _mapped(
        idnat, frame.select(_luhn_valid_rpps_idnat(pl.col("idnat"))).to_series(), canonical
    )
    frame = frame.with_columns(pid.alias("pid"))
    if errors:
        for line_no, raw in (
            frame.filter(pl.col("pid").is_null()).select("line_no", "idnat").iter_rows()
        ):
            report.rejected.append(f"ligne {line_no} : {errors[raw]}")
        frame = frame.filter(pl.col("pid").is_not_null())
    skey = frame["structure_key"]
    safe = frame.select(pl.col("structure_key").str.contains(r"^[A-Za-z0-9.\-]{1,62}$")).to_series()
    org_id = _mapped(("s-" + skey).alias("org"), safe, lambda v: _safe_id("s-", v[2:]))
    frame = frame.with_columns(pl.when(pl.col("structure_key") != "").then(org_id).alias("org_id"))

    # Practitioners, with the qualifications of all their lines (sorted by kind, code).
    qual_fields = ("pid", "kind", "code", "label", "type")
    quals = (
        pl.concat(
            [
                frame.filter(pl.col("profession_code") != "").select(
                    "pid",
                    pl.lit("profession").alias("kind"),
                    pl.col("profession_code").alias("code"),
                    _present("profession_label").alias("label"),
                    pl.lit(None, pl.String).alias("type"),
                ),
                frame.filter(pl.col("sf_code") != "").select(
                    "pid",
                    pl.lit("savoir_faire").alias("kind"),
                    pl.col("sf_code").alias("code"),
                    _present("sf_label").alias("label"),
                    _present("sf_type_code").alias("type"),
                ),
            ]
        )
        .unique(subset=["pid", "kind", "code"], keep="first", maintain_order=True)
        .sort("pid", "kind", "code")
        .group_by("pid", maintain_order=True)
        .agg(pl.struct(*qual_fields[1:]).alias("qualifications"))
    )
    people = frame.unique(subset="pid", keep="first", maintain_order=True).join(
        quals, on="pid", how="left", maintain_order="left"
    )
    practitioners = people.select(
        pl.col("pid").alias("id"),
        "family",
        "given",
        _fold_series(people["family"]).alias("family_folded"),
        _fold_series(people["given"]).alias("given_folded"),
        _json_attrs(
            *(_present(k) for k in _PERSON_KEYS if k not in ("family", "given")),
            pl.col("qualifications"),
        ).alias("attrs"),
    )

    # Organizations, by structure key.
    sites = frame.filter(pl.col("structure_key") != "").unique(
        subset="structure_key", keep="first", maintain_order=True
    )
    name = (
        pl.when(pl.col("name") != "")
        .then(pl.col("name"))
        .when(pl.col("brand") != "")
        .then(pl.col("brand"))
        .otherwise(pl.col("structure_key"))
    )
    sites = sites.with_columns(name.alias("display_name"))
    line = pl.concat_str(
        [
            _present(k)
            for k in ("addr_number", "addr_number_suffix", "addr_street_type", "addr_street")
        ],
        separator=" ",
        ignore_nulls=True,
    )
    address = pl.struct(
        pl.when(line != "").then(line).alias("line"),
        _present("addr_recipient").alias("recipient"),
        _present("addr_point").alias("point"),
        _present("addr_distribution").alias("distribution"),
        _present("postal_code").alias("postal_code"),
        _present("city").alias("city"),
        _present("commune_code").alias("commune_code"),
        _present("country").alias("country"),
        pl.coalesce(_present("department_code"), _present("department")).alias("department"),
    ).alias("address")
    organizations = sites.select(
        pl.col("org_id").alias("id"),
        "structure_key",
        _present("finess").alias("finess"),
        _present("finess_ej").alias("finess_ej"),
        _present("siret").alias("siret"),
        pl.col("display_name").alias("name"),
        _fold_series(sites["display_name"]).alias("name_folded"),
        pl.when(pl.col("city") != "").then(_fold_series(sites["city"])).alias("city_folded"),
        _present("postal_code").alias("postal_code"),
        _present("sector_code").alias("sector_code"),
        _json_attrs(*(_present(k) for k in _ORG_ATTRS), pl.col("structure_key"), address).alias(
            "attrs"
        ),
    )

    # Roles: one per person × structure × profession × mode × fonction (id = hash of those).
    keyed = frame.with_columns(
        pl.concat_str(
            ["pid", "structure_key", "profession_code", "mode_code", "role_code"], separator="\x1f"
        ).alias("role_key")
    ).unique(subset="role_key", keep="first", maintain_order=True)
    blake2b = hashlib.blake2b
    role_ids = [
        "r-" + blake2b(k.encode(), digest_size=10).hexdigest() for k in keyed["role_key"].to_list()
    ]
    has_sf = pl.col("sf_code") != ""
    roles = keyed.with_columns(pl.Series("role_id", role_ids, dtype=pl.String)).select(
        pl.col("role_id").alias("id"),
        pl.col("pid").alias("practitioner_id"),
        pl.col("org_id").alias("organization_id"),
        "profession_code",
        _present("sf_code").alias("specialty_code"),
        _present("mode_code").alias("mode_code"),
        _present("role_code").alias("role_code"),
        _json_attrs(
            *(_present(k) for k in _ROLE_ATTRS),
            pl.when(has_sf).then(_present("sf_label")).alias("specialty_label"),
            pl.when(has_sf).then(_present("sf_type_code")).alias("specialty_type"),
        ).alias("attrs"),
    )
    return ActivityFrames(
        _with_digest(practitioners), _with_digest(organizations), _with_digest(roles)
    )


# --- MSSanté extract ------------------------------------------------------------------------

_MAILBOX_ATTRS = (
    "structure_id_type",
    "structure_id",
    "service",
    "civ_ex_label",
    "family",
    "given",
    "profession_code",
    "profession_label",
    "sf_code",
    "sf_label",
    "dematerialisation",
    "name",
    "brand",
    "postal_code",
    "department",
)


def parse_mssante(frame: pl.DataFrame, report: ImportReport) -> dict[str, Record]:
    boxes: dict[str, Record] = {}
    for r in frame.iter_rows(named=True):
        report.rows += 1
        line_no = r["line_no"]
        address = r["address"].lower()
        bal_type = r["bal_type"].upper()
        local, _, domain = address.partition("@")
        if not local or not domain or "@" in domain or " " in address:
            report.rejected.append(f"ligne {line_no} : adresse BAL invalide « {address} »")
            continue
        if bal_type not in MAILBOX_TYPES:
            report.rejected.append(f"ligne {line_no} : type de BAL inconnu « {bal_type} »")
            continue
        if address in boxes:
            continue  # the public file repeats ~169 addresses; the address is the key
        idnat = r["idnat"]
        if bal_type in ("PER", "CAB"):
            try:
                idnat = _idnat(idnat)
            except IdentifierError as exc:
                report.rejected.append(f"ligne {line_no} : {exc}")
                continue
        attrs = {k: r[k] for k in _MAILBOX_ATTRS if r[k]}
        if idnat:
            attrs["idnat_ps"] = idnat
        if r["addr_delivery_line"]:
            attrs["city_line"] = r["addr_delivery_line"]
        boxes[address] = Record(columns={"address": address, "type": bal_type}, attrs=attrs)
    return boxes


def _structure_candidates(raw: str) -> list[str]:
    """Structure ids appear bare or as idNat_Struct ("1"+FINESS, "3"+SIRET)."""
    raw = raw.strip()
    out = [raw]
    if len(raw) == 10 and raw[0] == "1":
        out.append(raw[1:])
    if len(raw) == 15 and raw[0] == "3":
        out.append(raw[1:])
    return out


def resolve_carriers(
    session: Session, boxes: dict[str, Record], report: ImportReport
) -> dict[str, Record]:
    """Attach each mailbox to the resource that carries it in the directory.

    PER with a structure where the professional has an activity → that PractitionerRole;
    PER/CAB otherwise → the Practitioner; ORG/APP → the Organization (created from the
    mailbox line when the structure is unknown to RPPS, e.g. a hospital service).
    """
    org_by_id: dict[str, str] = {}
    for oid, skey, finess, siret in session.execute(
        select(Organization.id, Organization.structure_key, Organization.finess, Organization.siret)
    ):
        for key in (skey, finess, siret):
            if key:
                org_by_id.setdefault(key, oid)
    roles: dict[tuple[str, str | None], str] = {}
    for rid, pid, oid in session.execute(
        select(
            PractitionerRole.id, PractitionerRole.practitioner_id, PractitionerRole.organization_id
        ).where(PractitionerRole.active)
    ):
        roles.setdefault((pid, oid), rid)
    known_pids = set(session.execute(select(Practitioner.id)).scalars())
    new_orgs: dict[str, Record] = {}
    resolved: dict[str, Record] = {}
    for address, rec in boxes.items():
        a = rec.attrs
        org_id = None
        sid = a.get("structure_id", "")
        if sid:
            for cand in _structure_candidates(sid):
                if cand in org_by_id:
                    org_id = org_by_id[cand]
                    break
        if rec.columns["type"] in ("PER", "CAB"):
            pid = a["idnat_ps"]
            if pid not in known_pids:
                report.rejected.append(f"{address} : professionnel {pid} absent de l'annuaire")
                continue
            role_id = roles.get((pid, org_id)) if org_id else None
            carrier = ("PractitionerRole", role_id) if role_id else ("Practitioner", pid)
            rec.columns.update(practitioner_id=pid, organization_id=org_id)
        else:
            if org_id is None:
                key = "mss:" + (sid or address.split("@", 1)[1])
                org_id = _safe_id("s-", key)
                if key not in new_orgs:
                    name = a.get("name") or a.get("brand") or key
                    new_orgs[key] = Record(
                        columns={
                            "id": org_id,
                            "structure_key": key,
                            "finess": None,
                            "finess_ej": None,
                            "siret": None,
                            "name": name,
                            "name_folded": fold(name),
                            "city_folded": None,
                            "postal_code": a.get("postal_code"),
                            "sector_code": None,
                        },
                        attrs={
                            "structure_key": key,
                            "address": {"postal_code": a.get("postal_code", "")},
                        },
                    )
                    for cand in _structure_candidates(sid) if sid else []:
                        org_by_id[cand] = org_id
            carrier = ("Organization", org_id)
            rec.columns.update(practitioner_id=None, organization_id=org_id)
        rec.columns.update(carrier_type=carrier[0], carrier_id=carrier[1], liste_rouge=False)
        resolved[address] = rec
    if new_orgs:
        report.entities["Organization"] = _sync(
            session,
            Organization,
            "structure_key",
            _records_frame(Organization, new_orgs.values()),
            SOURCE_MSS,
            None,
            report_only_new=True,
        )
    return resolved


# --- writing ---------------------------------------------------------------------------------


def _snapshot(row: Any, model: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in model.__table__.columns:  # type: ignore[attr-defined]
        value = getattr(row, col.key)
        out[col.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _records_frame(model: type, records: Iterable[Record]) -> pl.DataFrame:
    """Record objects (the MSSanté path) → the frame ``_sync`` takes."""
    table = model.__table__  # type: ignore[attr-defined]
    recs = list(records)
    tracked = {"active", "version", "digest", "last_updated", "source", "extract_id", "attrs"}
    names = [c.key for c in table.columns if c.key not in tracked]
    data: dict[str, list[Any]] = {n: [r.columns.get(n) for r in recs] for n in names}
    data["attrs"] = [orjson.dumps(r.attrs).decode() for r in recs]
    data["digest"] = [r.digest or _digest(r) for r in recs]
    schema = {n: (pl.Boolean if isinstance(table.c[n].type, Boolean) else pl.String) for n in names}
    return pl.DataFrame(data, schema={**schema, "attrs": pl.String, "digest": pl.String})


_EXISTING = {
    "k": pl.String,
    "old_digest": pl.String,
    "old_active": pl.Boolean,
    "old_version": pl.Int64,
    "old_pk": pl.String,
}


def _sync(
    session: Session,
    model: type,
    key: str,
    frame: pl.DataFrame,
    source: str,
    extract_id: int | None,
    *,
    progress: Progress | None = None,
    report_only_new: bool = False,
) -> EntityStats:
    """Reconcile one table with the snapshot ``frame`` (one row per entity, keyed by column
    ``key``): new rows inserted in bulk, changed ones updated with their previous state in
    history, vanished ones deactivated. The comparison is a join, not a Python loop."""
    stats = EntityStats()
    now = utcnow()
    table = model.__table__  # type: ignore[attr-defined]
    key_col = getattr(model, key)
    pk_name = table.primary_key.columns.values()[0].key
    existing = pl.DataFrame(
        session.execute(
            select(
                key_col, model.digest, model.active, model.version, getattr(model, pk_name)
            ).where(model.source == source)
        ).all(),
        schema=_EXISTING,
        orient="row",
    )
    joined = frame.join(existing, left_on=key, right_on="k", how="left", maintain_order="left")
    known = pl.col("old_digest").is_not_null()
    new = joined.filter(~known).select(frame.columns)
    changed = joined.filter(
        known & ((pl.col("digest") != pl.col("old_digest")) | ~pl.col("old_active"))
    )
    stats.unchanged = joined.height - new.height - changed.height
    gone = (
        existing.clear()
        if report_only_new
        else existing.filter(pl.col("old_active")).join(
            frame.select(pl.col(key).alias("k")), on="k", how="anti"
        )
    )
    constants = {
        "active": True,
        "version": 1,
        "last_updated": now,
        "source": source,
        "extract_id": extract_id,
    }
    empty = existing.height == 0 and (
        new.height >= REBUILD_THRESHOLD
        and session.execute(select(key_col).limit(1)).first() is None
    )
    with indexes_rebuilt_after(session, table) if empty else nullcontext():
        for start in range(0, new.height, FRAME_BATCH):
            chunk = new.slice(start, FRAME_BATCH)
            bulk_insert_frame(session, table, chunk, constants)
            if progress and progress.on_written:
                progress.on_written(chunk.height)
    stats.created = new.height
    changed_keys = changed[key].to_list()
    gone_keys = gone["k"].to_list()
    if changed_keys or gone_keys:
        _history(session, model, key_col, changed_keys, "updated", extract_id, now)
        _history(session, model, key_col, gone_keys, "deactivated", extract_id, now)
    if changed_keys:
        rows = []
        for row in changed.drop("old_digest", "old_active", "old_pk", strict=False).iter_rows(
            named=True
        ):
            version = row.pop("old_version")
            row.update(
                attrs=orjson.loads(row["attrs"]),
                active=True,
                version=version + 1,
                last_updated=now,
                extract_id=extract_id,
            )
            rows.append(row)
        for start in range(0, len(rows), BATCH):
            session.execute(update(model), rows[start : start + BATCH])
        stats.updated = len(rows)
    if gone_keys:
        rows = [
            {
                pk_name: pk,
                "active": False,
                "version": version + 1,
                "last_updated": now,
                "extract_id": extract_id,
            }
            for pk, version in gone.select("old_pk", "old_version").iter_rows()
        ]
        for start in range(0, len(rows), BATCH):
            session.execute(update(model), rows[start : start + BATCH])
        stats.deactivated = len(rows)
    return stats


def _history(
    session: Session,
    model: type,
    key_col: Any,
    keys: list[str],
    change: str,
    extract_id: int | None,
    now: datetime,
) -> None:
    if not keys:
        return
    rtype = model.__name__
    pk = model.__table__.primary_key.columns.values()[0].key  # type: ignore[attr-defined]
    for start in range(0, len(keys), 500):
        olds = session.execute(
            select(model).where(key_col.in_(keys[start : start + 500]))
        ).scalars()
        rows = []
        for old in olds:
            snap = _snapshot(old, model)
            rows.append(
                {
                    "resource_type": rtype,
                    "resource_id": snap[pk],
                    "version": old.version,
                    "change": change,
                    "changed_at": now,
                    "extract_id": extract_id,
                    "snapshot": snap,
                }
            )
            session.expunge(old)
        if rows:
            bulk_insert(session, History.__table__, rows)


def import_file(session: Session, path: Path, progress: Progress | None = None) -> ImportReport:
    """Import one extract inside the caller's transaction (the caller commits or rolls back).

    The cyclic garbage collector is paused meanwhile: the import allocates millions of small
    dicts that are never cyclic, and repeated full collections cost ~20 % of the run.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _import_file(session, path, progress)
    finally:
        if was_enabled:
            gc.enable()


def _import_file(session: Session, path: Path, progress: Progress | None) -> ImportReport:
    progress = progress or Progress()
    layout, frame = read_extract_frame(path, progress.on_bytes)
    report = ImportReport(path.name, layout.kind)
    sha = file_sha256(path)
    if session.execute(select(Extract.id).where(Extract.sha256 == sha)).first():
        report.skipped = True
        return report
    generated_at = generated_at_from_name(path)
    if generated_at is not None:
        latest = session.execute(
            select(func.max(Extract.generated_at)).where(Extract.kind == layout.kind)
        ).scalar_one_or_none()
        if latest is not None and generated_at < latest:
            raise ExtractError(
                f"{path.name} : extrait généré le {generated_at:%d/%m/%Y %H:%M}, plus ancien que "
                f"le dernier importé ({latest:%d/%m/%Y %H:%M}) ; import refusé."
            )
    extract = Extract(
        kind=layout.kind,
        file_name=path.name,
        sha256=sha,
        generated_at=generated_at,
        imported_at=utcnow(),
        stats={},
    )
    session.add(extract)
    session.flush()
    if layout.kind == ACTIVITY:
        frames = parse_activity(layout, frame, report)
        if progress.on_write_total:
            progress.on_write_total(
                frames.practitioners.height + frames.organizations.height + frames.roles.height
            )
        for name, model, key, entities in (
            ("Practitioner", Practitioner, "id", frames.practitioners),
            ("Organization", Organization, "structure_key", frames.organizations),
            ("PractitionerRole", PractitionerRole, "id", frames.roles),
        ):
            report.entities[name] = _sync(
                session, model, key, entities, SOURCE_RPPS, extract.id, progress=progress
            )
    elif layout.kind == MSSANTE:
        boxes = parse_mssante(frame, report)
        resolved = resolve_carriers(session, boxes, report)
        if progress.on_write_total:
            progress.on_write_total(len(resolved))
        report.entities["Mailbox"] = _sync(
            session,
            Mailbox,
            "address",
            _records_frame(Mailbox, resolved.values()),
            SOURCE_MSS,
            extract.id,
            progress=progress,
        )
    extract.stats = report.as_dict()
    return report
