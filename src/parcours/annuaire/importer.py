"""Importing extracts: idempotent, incremental, all-or-nothing.

An extract is a full snapshot of its source. Importing one:
1. parses every row into entity records (deduplicated by key),
2. compares each record's digest with what the table holds *for that source*,
3. inserts new rows, updates changed ones (bumping ``version`` and keeping the previous state in
   ``annuaire_history``), deactivates rows that vanished (never deletes), reactivates returns,
all in one transaction: a truncated or malformed file changes nothing. The same file twice is
recognised by its SHA-256 and skipped; a file older than the last one imported is refused.

Throughput matters (the national files have ~2 M and ~0.5 M lines): rows are split without the
csv module, digests are blake2b over the raw source fields, and writes are executemany batches.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from parcours.annuaire.extracts import (
    ACTIVITY,
    MSSANTE,
    MSSANTE_FIELDS,
    ExtractError,
    ExtractLayout,
    Row,
    generated_at_from_name,
    read_extract,
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
from parcours.storage.bulk import bulk_insert
from parcours.storage.models import utcnow

BATCH = 5000
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


def _getter(layout: ExtractLayout, keys: tuple[str, ...]) -> Callable[[list[str]], dict[str, str]]:
    """Row → {key: stripped value} for ``keys``. Rows carry one extra '' at the end, which is
    where the columns a file lacks (48-column variant) point."""
    missing = len(layout.header)
    getter = itemgetter(*[layout.index.get(k, missing) for k in keys])
    return lambda values: dict(zip(keys, [x.strip() for x in getter(values)], strict=True))


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
class ActivityBatch:
    practitioners: dict[str, Record] = field(default_factory=dict)
    organizations: dict[str, Record] = field(default_factory=dict)
    roles: dict[str, Record] = field(default_factory=dict)


def parse_activity(
    layout: ExtractLayout, rows: Iterable[Row], report: ImportReport
) -> ActivityBatch:
    """Rows → deduplicated entities. The loop reads only the key columns of every row and
    builds the full attribute dicts only for entities it has not seen yet."""
    idx, missing = layout.index, len(layout.header)
    i_idnat, i_prof, i_prof_label = (
        idx["idnat"],
        idx["profession_code"],
        idx.get("profession_label", missing),
    )
    i_sf, i_sf_label, i_sf_type = (
        idx.get(k, missing) for k in ("sf_code", "sf_label", "sf_type_code")
    )
    i_skey, i_mode, i_role = (
        idx.get(k, missing) for k in ("structure_key", "mode_code", "role_code")
    )
    person_of, org_of, role_of = (
        _getter(layout, _PERSON_KEYS),
        _getter(layout, _ORG_KEYS),
        _getter(layout, _ROLE_KEYS),
    )
    batch = ActivityBatch()
    practitioners, organizations, roles = batch.practitioners, batch.organizations, batch.roles
    qualifications: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    blake2b = hashlib.blake2b
    for row in rows:
        report.rows += 1
        v = row.values
        v.append("")
        try:
            pid = _idnat(v[i_idnat].strip())
        except IdentifierError as exc:
            report.rejected.append(f"ligne {row.line_no} : {exc}")
            continue
        if pid not in practitioners:
            person = person_of(v)
            family, given = person.pop("family"), person.pop("given")
            practitioners[pid] = Record(
                columns={
                    "id": pid,
                    "family": family,
                    "given": given,
                    "family_folded": fold(family),
                    "given_folded": fold(given),
                },
                attrs=person,
            )
            qualifications[pid] = {}
        quals = qualifications[pid]
        prof = v[i_prof].strip()
        if prof and ("profession", prof) not in quals:
            quals["profession", prof] = {"code": prof, "label": v[i_prof_label].strip()}
        sf = v[i_sf].strip()
        if sf and ("savoir_faire", sf) not in quals:
            quals["savoir_faire", sf] = {
                "code": sf,
                "label": v[i_sf_label].strip(),
                "type": v[i_sf_type].strip(),
            }
        skey = v[i_skey].strip()
        org_id = None
        if skey:
            org = organizations.get(skey)
            if org is None:
                r = org_of(v)
                name = r["name"] or r["brand"] or skey
                org_attrs: dict[str, Any] = {k: r[k] for k in _ORG_ATTRS if r[k]}
                org_attrs["structure_key"] = skey
                org_attrs["address"] = _address(r)
                org = organizations[skey] = Record(
                    columns={
                        "id": _safe_id("s-", skey),
                        "structure_key": skey,
                        "finess": r["finess"] or None,
                        "finess_ej": r["finess_ej"] or None,
                        "siret": r["siret"] or None,
                        "name": name,
                        "name_folded": fold(name),
                        "city_folded": fold(r["city"]) or None,
                        "postal_code": r["postal_code"] or None,
                        "sector_code": r["sector_code"] or None,
                    },
                    attrs=org_attrs,
                )
            org_id = org.columns["id"]
        mode, role_code = v[i_mode].strip(), v[i_role].strip()
        role_key = f"{pid}\x1f{skey}\x1f{prof}\x1f{mode}\x1f{role_code}"
        role_id = "r-" + blake2b(role_key.encode(), digest_size=10).hexdigest()
        if role_id not in roles:
            r = role_of(v)
            role_attrs = {k: r[k] for k in _ROLE_ATTRS if r[k]}
            if sf:
                role_attrs["specialty_label"] = r["sf_label"]
                role_attrs["specialty_type"] = r["sf_type_code"]
            roles[role_id] = Record(
                columns={
                    "id": role_id,
                    "practitioner_id": pid,
                    "organization_id": org_id,
                    "profession_code": prof,
                    "specialty_code": sf or None,
                    "mode_code": mode or None,
                    "role_code": role_code or None,
                },
                attrs=role_attrs,
            )
    for pid, rec in practitioners.items():
        rec.attrs["qualifications"] = [
            {"kind": kind, **q} for (kind, _), q in sorted(qualifications[pid].items())
        ]
    return batch


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


def parse_mssante(
    layout: ExtractLayout, rows: Iterable[Row], report: ImportReport
) -> dict[str, Record]:
    extract = _getter(layout, tuple(dict.fromkeys(MSSANTE_FIELDS.values())))
    boxes: dict[str, Record] = {}
    for row in rows:
        report.rows += 1
        row.values.append("")
        r = extract(row.values)
        address = r["address"].lower()
        bal_type = r["bal_type"].upper()
        local, _, domain = address.partition("@")
        if not local or not domain or "@" in domain or " " in address:
            report.rejected.append(f"ligne {row.line_no} : adresse BAL invalide « {address} »")
            continue
        if bal_type not in MAILBOX_TYPES:
            report.rejected.append(f"ligne {row.line_no} : type de BAL inconnu « {bal_type} »")
            continue
        if address in boxes:
            continue  # the public file repeats ~169 addresses; the address is the key
        idnat = r["idnat"]
        if bal_type in ("PER", "CAB"):
            try:
                idnat = _idnat(idnat)
            except IdentifierError as exc:
                report.rejected.append(f"ligne {row.line_no} : {exc}")
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
            session, Organization, "structure_key", new_orgs, SOURCE_MSS, None, report_only_new=True
        )
    return resolved


# --- writing ---------------------------------------------------------------------------------


def _snapshot(row: Any, model: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in model.__table__.columns:  # type: ignore[attr-defined]
        value = getattr(row, col.key)
        out[col.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _sync(
    session: Session,
    model: type,
    key: str,
    records: dict[str, Record],
    source: str,
    extract_id: int | None,
    *,
    progress: Progress | None = None,
    report_only_new: bool = False,
) -> EntityStats:
    """Reconcile one table with the snapshot ``records`` (keyed by column ``key``)."""
    stats = EntityStats()
    now = utcnow()
    table = model.__table__  # type: ignore[attr-defined]
    key_col = getattr(model, key)
    pk_name = table.primary_key.columns.values()[0].key
    for rec in records.values():
        if not rec.digest:
            rec.digest = _digest(rec)
    existing: dict[str, tuple[str, bool, int, Any]] = {
        k: (d, a, ver, pk)
        for k, d, a, ver, pk in session.execute(
            select(
                key_col, model.digest, model.active, model.version, getattr(model, pk_name)
            ).where(model.source == source)
        )
    }
    new_rows: list[dict[str, Any]] = []
    changed: list[tuple[str, Record, int]] = []
    for k, rec in records.items():
        old = existing.get(k)
        if old is None:
            new_rows.append(
                {
                    **rec.columns,
                    "attrs": rec.attrs,
                    "digest": rec.digest,
                    "active": True,
                    "version": 1,
                    "last_updated": now,
                    "source": source,
                    "extract_id": extract_id,
                }
            )
        elif old[0] != rec.digest or not old[1]:
            changed.append((k, rec, old[2]))
        else:
            stats.unchanged += 1
    gone = (
        []
        if report_only_new
        else [(k, v[2]) for k, v in existing.items() if k not in records and v[1]]
    )
    for start in range(0, len(new_rows), BATCH):
        chunk = new_rows[start : start + BATCH]
        bulk_insert(session, table, chunk)
        if progress and progress.on_written:
            progress.on_written(len(chunk))
    stats.created = len(new_rows)
    if changed or gone:
        _history(session, model, key_col, [k for k, _, _ in changed], "updated", extract_id, now)
        _history(session, model, key_col, [k for k, _ in gone], "deactivated", extract_id, now)
    if changed:
        rows = [
            {
                **rec.columns,
                "attrs": rec.attrs,
                "digest": rec.digest,
                "active": True,
                "version": version + 1,
                "last_updated": now,
                "extract_id": extract_id,
            }
            for _, rec, version in changed
        ]
        for start in range(0, len(rows), BATCH):
            session.execute(update(model), rows[start : start + BATCH])
        stats.updated = len(changed)
    if gone:
        pks = {k: existing[k][3] for k, _ in gone}
        rows = [
            {
                pk_name: pks[k],
                "active": False,
                "version": version + 1,
                "last_updated": now,
                "extract_id": extract_id,
            }
            for k, version in gone
        ]
        for start in range(0, len(rows), BATCH):
            session.execute(update(model), rows[start : start + BATCH])
        stats.deactivated = len(gone)
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
    layout, rows = read_extract(path, progress.on_bytes)
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
        batch = parse_activity(layout, rows, report)
        if progress.on_write_total:
            progress.on_write_total(
                len(batch.practitioners) + len(batch.organizations) + len(batch.roles)
            )
        report.entities["Practitioner"] = _sync(
            session,
            Practitioner,
            "id",
            batch.practitioners,
            SOURCE_RPPS,
            extract.id,
            progress=progress,
        )
        report.entities["Organization"] = _sync(
            session,
            Organization,
            "structure_key",
            batch.organizations,
            SOURCE_RPPS,
            extract.id,
            progress=progress,
        )
        report.entities["PractitionerRole"] = _sync(
            session, PractitionerRole, "id", batch.roles, SOURCE_RPPS, extract.id, progress=progress
        )
    elif layout.kind == MSSANTE:
        boxes = parse_mssante(layout, rows, report)
        resolved = resolve_carriers(session, boxes, report)
        if progress.on_write_total:
            progress.on_write_total(len(resolved))
        report.entities["Mailbox"] = _sync(
            session, Mailbox, "address", resolved, SOURCE_MSS, extract.id, progress=progress
        )
    extract.stats = report.as_dict()
    return report
