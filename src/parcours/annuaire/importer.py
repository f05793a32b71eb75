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

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from parcours.annuaire.extracts import (
    ACTIVITY,
    MSSANTE,
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


def _digest(*parts: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update("\x1f".join(part).encode())
        h.update(b"\x1e")
    return h.hexdigest()


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


def _address(g: Callable[[str], str]) -> dict[str, str]:
    line = " ".join(
        p
        for p in (
            g("addr_number"),
            g("addr_number_suffix"),
            g("addr_street_type"),
            g("addr_street"),
        )
        if p
    )
    return {
        k: v
        for k, v in {
            "line": line,
            "recipient": g("addr_recipient"),
            "point": g("addr_point"),
            "distribution": g("addr_distribution"),
            "postal_code": g("postal_code"),
            "city": g("city"),
            "commune_code": g("commune_code"),
            "country": g("country"),
            "department": g("department_code") or g("department"),
        }.items()
        if v
    }


# --- personal-activity extract ------------------------------------------------------------


@dataclass
class ActivityBatch:
    practitioners: dict[str, Record] = field(default_factory=dict)
    organizations: dict[str, Record] = field(default_factory=dict)
    roles: dict[str, Record] = field(default_factory=dict)


def parse_activity(
    layout: ExtractLayout, rows: Iterable[Row], report: ImportReport
) -> ActivityBatch:
    idx = layout.index
    batch = ActivityBatch()
    qualifications: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for row in rows:
        v = row.values
        report.rows += 1

        def g(key: str, v: list[str] = v) -> str:
            i = idx.get(key)
            return v[i].strip() if i is not None else ""

        idnat_raw = g("idnat")
        try:
            idnat = IdNatPS.parse(idnat_raw)
        except IdentifierError as exc:
            report.rejected.append(f"ligne {row.line_no} : {exc}")
            continue
        pid = str(idnat)
        if pid not in batch.practitioners:
            person = {
                "id_type": g("id_type"),
                "id_pp": g("id_pp"),
                "civ_code": g("civ_code"),
                "civ_label": g("civ_label"),
                "civ_ex_code": g("civ_ex_code"),
                "civ_ex_label": g("civ_ex_label"),
                "category_code": g("category_code"),
                "category_label": g("category_label"),
            }
            family, given = g("family"), g("given")
            batch.practitioners[pid] = Record(
                columns={
                    "id": pid,
                    "idnat_ps": pid,
                    "family": family,
                    "given": given,
                    "family_folded": fold(family),
                    "given_folded": fold(given),
                },
                attrs=person,
            )
            qualifications[pid] = {}
        quals = qualifications[pid]
        prof = g("profession_code")
        if prof:
            quals.setdefault(("profession", prof), {"code": prof, "label": g("profession_label")})
        sf = g("sf_code")
        if sf:
            quals.setdefault(
                ("savoir_faire", sf),
                {"code": sf, "label": g("sf_label"), "type": g("sf_type_code")},
            )

        org_id = None
        skey = g("structure_key")
        if skey:
            org_id = _safe_id("s-", skey)
            if skey not in batch.organizations:
                name = g("name") or g("brand") or skey
                org_attrs = {
                    "structure_key": skey,
                    "siren": g("siren"),
                    "brand": g("brand"),
                    "address": _address(g),
                    "phone": g("phone"),
                    "phone2": g("phone2"),
                    "fax": g("fax"),
                    "email": g("email"),
                    "sector_label": g("sector_label"),
                    "registration_authority": g("registration_authority"),
                }
                batch.organizations[skey] = Record(
                    columns={
                        "id": org_id,
                        "structure_key": skey,
                        "finess": g("finess") or None,
                        "finess_ej": g("finess_ej") or None,
                        "siret": g("siret") or None,
                        "name": name,
                        "name_folded": fold(name),
                        "city_folded": fold(g("city")) or None,
                        "postal_code": g("postal_code") or None,
                        "sector_code": g("sector_code") or None,
                    },
                    attrs={k: val for k, val in org_attrs.items() if val},
                )
        mode, role_code = g("mode_code"), g("role_code")
        role_key = "\x1f".join((pid, skey, prof, mode, role_code))
        role_id = "r-" + hashlib.blake2b(role_key.encode(), digest_size=10).hexdigest()
        if role_id not in batch.roles:
            role_attrs = {
                "profession_label": g("profession_label"),
                "specialty_label": g("sf_label"),
                "specialty_type": g("sf_type_code"),
                "mode_label": g("mode_label"),
                "role_label": g("role_label"),
                "sector_code": g("sector_code"),
                "sector_label": g("sector_label"),
                "activity_kind_code": g("activity_kind_code"),
                "activity_kind_label": g("activity_kind_label"),
                "pharma_section_code": g("pharma_section_code"),
                "pharma_section_label": g("pharma_section_label"),
            }
            batch.roles[role_id] = Record(
                columns={
                    "id": role_id,
                    "practitioner_id": pid,
                    "organization_id": org_id,
                    "profession_code": prof,
                    "specialty_code": sf or None,
                    "mode_code": mode or None,
                    "role_code": role_code or None,
                },
                attrs={k: val for k, val in role_attrs.items() if val},
            )
    for pid, rec in batch.practitioners.items():
        rec.attrs["qualifications"] = [
            {"kind": kind, **q} for (kind, _), q in sorted(qualifications[pid].items())
        ]
    return batch


# --- MSSanté extract ------------------------------------------------------------------------


def parse_mssante(
    layout: ExtractLayout, rows: Iterable[Row], report: ImportReport
) -> dict[str, Record]:
    idx = layout.index
    boxes: dict[str, Record] = {}
    for row in rows:
        v = row.values
        report.rows += 1

        def g(key: str, v: list[str] = v) -> str:
            i = idx.get(key)
            return v[i].strip() if i is not None else ""

        address = g("address").lower()
        bal_type = g("bal_type").upper()
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            report.rejected.append(f"ligne {row.line_no} : adresse BAL invalide « {address} »")
            continue
        if bal_type not in MAILBOX_TYPES:
            report.rejected.append(f"ligne {row.line_no} : type de BAL inconnu « {bal_type} »")
            continue
        if address in boxes:
            continue  # the public file repeats ~169 addresses; the address is the key
        idnat = g("idnat")
        if bal_type in ("PER", "CAB"):
            try:
                idnat = str(IdNatPS.parse(idnat))
            except IdentifierError as exc:
                report.rejected.append(f"ligne {row.line_no} : {exc}")
                continue
        attrs = {
            "idnat_ps": idnat,
            "structure_id_type": g("structure_id_type"),
            "structure_id": g("structure_id"),
            "service": g("service"),
            "civ_ex_label": g("civ_ex_label"),
            "family": g("family"),
            "given": g("given"),
            "profession_code": g("profession_code"),
            "profession_label": g("profession_label"),
            "sf_code": g("sf_code"),
            "sf_label": g("sf_label"),
            "dematerialisation": g("dematerialisation"),
            "name": g("name"),
            "brand": g("brand"),
            "postal_code": g("postal_code"),
            "city_line": g("addr_delivery_line"),
            "department": g("department"),
        }
        boxes[address] = Record(
            columns={"address": address, "type": bal_type},
            attrs={k: val for k, val in attrs.items() if val},
        )
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
            rec.digest = _digest(
                [str(v) if v is not None else "" for v in rec.columns.values()],
                [repr(sorted(rec.attrs.items()))],
            )
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
        session.execute(insert(table), chunk)
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
    for start in range(0, len(keys), 500):
        olds = session.execute(
            select(model).where(key_col.in_(keys[start : start + 500]))
        ).scalars()
        rows = []
        for old in olds:
            snap = _snapshot(old, model)
            pk = model.__table__.primary_key.columns.values()[0].key  # type: ignore[attr-defined]
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
            session.execute(insert(History.__table__), rows)


def import_file(session: Session, path: Path, progress: Progress | None = None) -> ImportReport:
    """Import one extract inside the caller's transaction (the caller commits or rolls back)."""
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
            "idnat_ps",
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
