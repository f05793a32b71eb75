"""DMP benchmark (the issue's performance section), run against one database server.

    python bench/dossier.py --database-url postgresql://parcours:parcours@127.0.0.1:5432/postgres
        [--scale full|small|tiny] [--documents N --patients N] [--clients 4]
        [--profile publish,search,read,retrieve|none] [--keep]

The URL names a server database the role can connect to; the benchmark creates its own scratch
database there (CREATE DATABASE, the role needs CREATEDB) and drops it at the end unless
``--keep``. With a ``sqlite:///`` URL (a new file) or no URL (a temporary file) the same steps
run on SQLite, for a quick local check.

1. raw ceiling: N threads, each a single-row INSERT + COMMIT (plain psycopg or sqlite3, no
   SQLAlchemy) of a published DocumentReference (JSON, ~3 KB) and its document (~4 KB); measured
   on the empty database and again after the generation of step 3, just before step 2;
2. ITI-65: the real application under uvicorn (in-process thread), N httpx clients POSTing
   valid one-document bundles with a dev-IdP token; publishes/s and the ratio to (1);
3. ITI-67: documents, tokens and blind-index terms generated straight into the tables with COPY
   (templates taken from documents published through the service, so the rows are exactly
   what ``publish`` writes), ANALYZE, then ``?patient=<id>&status=current`` for random
   patients: p50/p99 over HTTP, through ``documents.search`` directly, and as bare SQL;
4. ITI-68: ``GET /fhir/Binary/<id>`` of the documents published in (2): p50/p99;
5. the policy decision (facts loading + ``decide``) and the audit write (``audit.service.record``)
   timed in isolation, as a share of a full DocumentReference read over HTTP;
6. the same reads and searches over HTTP with the policy and trace chain on, then with a
   decision point that permits everything and no trace (interleaved rounds): the overhead.

Step 3 runs before step 2, so publishes land in the full-size tables. The steps named by
``--profile`` are profiled with pyinstrument (if installed) at the service level (the worker
threads of the HTTP server cannot be sampled from here), with the SQL statements per call. A
table of figures and targets ends the run. The machine's load average is printed: the clients
and the server share its cores, and so do any other jobs running there.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.engine import make_url

from parcours.app import build_verifier, create_app
from parcours.audit import service as audit_service
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.auth.principal import Principal
from parcours.config import Settings
from parcours.dossier import documents, records
from parcours.dossier.models import Document, DocumentTerm, DocumentToken, Patient, Record
from parcours.dossier.store import DocumentStore, open_store
from parcours.fhir.search import fold, parse_search
from parcours.identity import INS
from parcours.policy import pep
from parcours.policy.engine import decide
from parcours.storage import migrate
from parcours.storage.db import Database, normalise_url
from parcours.storage.models import utcnow

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the test builders and scenario are reused, not copied
    sys.path.insert(0, str(ROOT))


def _test_helpers() -> tuple[Any, Any, str, str]:
    with warnings.catch_warnings():  # tests.scenario imports starlette's TestClient
        warnings.simplefilter("ignore")
        try:
            from parcours.dossier import samples as bundles
        except ImportError:  # before the builders moved into the package
            from tests.dossier import builders as bundles  # type: ignore[no-redef]
        from tests.scenario import DUPONT, load_scenario

    return bundles, load_scenario, DUPONT, "1350000014"


builders, load_scenario, DUPONT, STRUCTURE = _test_helpers()
IDNPS = "8" + DUPONT
SCALES = {"full": (1_000_000, 100_000), "small": (100_000, 10_000), "tiny": (10_000, 1_000)}
CHANNEL_EXT = "https://parcours.example.org/fhir/StructureDefinition/dmp-canal-creation"
# (LOINC type, TRE_A03 class, title): one published template per kind.
KINDS = [
    ("11488-4", "10", "Compte rendu de consultation"),
    ("11502-2", "10", "Compte rendu d'examens biologiques"),
    ("18748-4", "31", "Compte rendu d'imagerie médicale"),
    ("34133-9", "11", "Synthèse d'épisode de soins"),
    ("18776-5", "44", "Plan personnalisé de soins"),
    ("57833-6", "42", "Prescription de médicaments"),
    ("60593-1", "43", "Dispensation médicamenteuse"),
    ("11369-6", "52", "Certificat de vaccination"),
]
FAMILIES = ["Martin", "Bernard", "Le Gall", "Dubois", "Thomas", "Robert", "Petit", "Durand"]
GIVEN = ["Élise", "Paul", "Yann", "Marie", "Jean", "Anne", "Luc", "Sophie", "Nolwenn"]
PARAGRAPH = (
    "Patiente de {age} ans revue en consultation de suivi pour une hypertension artérielle "
    "essentielle traitée depuis 2019. Tension artérielle mesurée à 13/8 aux deux bras, "
    "fréquence cardiaque régulière à 72 battements par minute. Pas de douleur thoracique, pas "
    "de dyspnée d'effort, pas d'œdème des membres inférieurs. Le bilan biologique récent "
    "montre une fonction rénale normale, une kaliémie à 4,1 mmol/l et un bilan lipidique "
    "satisfaisant. L'électrocardiogramme est sans anomalie. Poursuite du traitement par "
    "amlodipine 5 mg le matin, contrôle dans six mois avec un nouveau bilan sanguin. "
)


# --- small helpers ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50_p99(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.2f} ms  p99 {percentile(values, 0.99):7.2f} ms"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_uuid(rng: random.Random) -> str:
    """A version-4 UUID string, several times cheaper than ``uuid.uuid4()`` in a hot loop."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def nir(i: int, dept: str) -> str:
    """The ``i``-th well-formed INS (NIR + key) born in ``dept``: unique for i < 99.8 M."""
    order, commune, year = i % 999 + 1, (i // 999) % 999 + 1, (i // 998_001) % 100
    base = f"{1 + i % 2}{year:02d}{i % 12 + 1:02d}{dept}{commune:03d}{order:03d}"
    return base + f"{97 - int(base) % 97:02d}"


def document_bytes(i: int) -> bytes:
    """A CDA of about 4 KB of French clinical prose."""
    body = "".join(PARAGRAPH.format(age=30 + (i + k) % 60) for k in range(7))
    return builders.cda(body[:3800], title="Compte rendu de consultation")


def bundle_for(subject: str, kind: tuple[str, str, str], data: bytes) -> dict[str, Any]:
    """A valid one-document ITI-65 bundle whose DocumentReference weighs about 3 KB."""
    type_code, class_code, title = kind
    bundle = builders.provide_bundle(
        subject=subject,
        author_idnps=IDNPS,
        documents=[(data, {"type_code": type_code, "class_code": class_code, "title": title})],
    )
    doc = bundle["entry"][1]["resource"]
    doc["description"] = (
        f"{title} : suivi d'une hypertension artérielle essentielle, bilan biologique et "
        "électrocardiogramme normaux, traitement inchangé, prochain contrôle dans six mois."
    )
    doc["context"]["event"] = [
        {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/sid/icd-10",
                    "code": "I10",
                    "display": "Hypertension essentielle (primitive)",
                }
            ]
        }
    ]
    author = doc["contained"][0]
    author["telecom"] = [{"system": "email", "value": "elise.dupont@medecin.mssante.fr"}]
    author["qualification"] = [
        {
            "code": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/"
                        "FHIR/TRE-G15-ProfessionSante",
                        "code": "10",
                        "display": "Médecin",
                    }
                ]
            }
        }
    ]
    return bundle


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def scratch_database(url: str, keep: bool, workdir: Path) -> Iterator[str]:
    """A fresh database for the run: on the PostgreSQL server of ``url``, or a new SQLite file."""
    if not url or make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database) if url else workdir / "dossier.sqlite3"
        if path.exists():
            raise SystemExit(f"{path} existe déjà : donnez un nouveau fichier SQLite.")
        try:
            yield f"sqlite:///{path}"
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            else:
                print(f"base conservée : sqlite:///{path}")
        return
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    name = f"parcours_bench_dossier_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(normalise_url(url)).set(database=name)
    try:
        yield scratch.render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"base conservée : {libpq_url(scratch.render_as_string(hide_password=False))}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, label: str, value: str, target: str = "") -> None:
        self.rows.append((label, value, target))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        print()
        print(f"{'mesure':<{width}}  {'valeur':<{vwidth}}  objectif")
        print("-" * (width + vwidth + 30))
        for label, value, target in self.rows:
            print(f"{label:<{width}}  {value:<{vwidth}}  {target}")


def verdict(ok: bool) -> str:
    return "atteint" if ok else "NON atteint"


# --- templates: documents published through the real service -------------------------------------


@dataclass
class Template:
    kind: tuple[str, str, str]
    resource: str  # %-format string: id, pid, master, bid, date, updated, status
    columns: dict[str, Any]
    tokens: list[tuple[str, str | None, str]]  # code: %-format of d (document id), m (master)
    terms: list[str]


def principal_ps() -> Principal:
    return Principal(
        kind="professional",
        subject=IDNPS,
        issuer="bench",
        idnat_ps=IDNPS,
        structure=STRUCTURE,
        profession="10",
        auth_level="eidas1",
    )


def principal_agent() -> Principal:
    return Principal(
        kind="agent",
        subject="CPAM35-BENCH",
        issuer="bench",
        agent_id="CPAM35-BENCH",
        auth_level="eidas1",
    )


def patient_resource(ins: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": builders.INS_NIR, "value": ins}],
        "name": [{"family": "Lefèvre", "given": ["Anne"]}],
        "gender": "female",
        "birthDate": "1984-12-03",
    }


def consent_resource(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "extension": [{"url": CHANNEL_EXT, "valueCode": "guichet-cpam"}],
    }


def make_templates(db: Database, store: DocumentStore) -> list[Template]:
    """Publish one document per kind through ``documents.publish`` and turn each stored row,
    token rows and blind terms into a template the bulk generator fills in."""
    agent = principal_agent()
    with db.session() as session:
        patient, _ = records.create_patient(
            session, agent, patient_resource(INS.parse(nir(0, "22")).value)
        )
        records.record_consent(session, agent, consent_resource(patient.id))
        pid = patient.id
        record = session.get(Record, pid)
        assert record is not None
        record.mt = IDNPS  # the publishing GP is his médecin traitant (R27 needs a basis)
    templates = []
    for i, kind in enumerate(KINDS):
        result = documents.publish(
            db, store, principal_ps(), bundle_for(f"Patient/{pid}", kind, document_bytes(i))
        )
        doc_id = result.document_ids[0]
        with db.session() as session:
            doc = session.get(Document, doc_id)
            assert doc is not None
            tokens = session.execute(
                select(DocumentToken.param, DocumentToken.system, DocumentToken.code)
                .where(DocumentToken.document_id == doc_id)
                .order_by(DocumentToken.id)
            ).all()
            terms = list(
                session.execute(
                    select(DocumentTerm.term).where(DocumentTerm.document_id == doc_id)
                ).scalars()
            )
            resource = orjson.dumps(doc.resource).decode()
            values = {
                "id": doc.id,
                "pid": pid,
                "master": doc.master_identifier,
                "bid": doc.binary_id,
                "date": doc.resource["date"],
                "updated": doc.resource["meta"]["lastUpdated"],
                "status": "current",
            }
            template = resource.replace("%", "%%").replace(
                '"status":"current"', '"status":"%(status)s"'
            )
            for name, value in values.items():
                if name != "status":
                    template = template.replace(value, f"%({name})s")
            assert template % values == resource, "template does not round-trip"
            columns = {c.key: getattr(doc, c.key) for c in Document.__mapper__.column_attrs}
            token_rows = []
            for param, system, code in tokens:
                for value in (param, system or "", code):
                    assert not set(value) & {"\t", "\n", "\\", "%"}, value
                code = "%(m)s" if code == doc.master_identifier else code
                token_rows.append((param, system, code.replace(doc.id, "%(d)s")))
            templates.append(Template(kind, template, columns, token_rows, terms))
    return templates


# --- 1. raw ceiling ---------------------------------------------------------------------------


def raw_ceiling(url: str, clients: int, seconds: float, metadata: str, data: bytes) -> float:
    """Single-row INSERT + COMMIT per iteration from ``clients`` threads; inserts/s."""
    sqlite_path = make_url(url).database if make_url(url).get_backend_name() == "sqlite" else None
    ddl = (
        "CREATE TABLE IF NOT EXISTS bench_raw "
        "(id INTEGER PRIMARY KEY, metadata TEXT NOT NULL, data BLOB)"
        if sqlite_path
        else "CREATE TABLE IF NOT EXISTS bench_raw "
        "(id bigserial PRIMARY KEY, metadata text NOT NULL, data bytea NOT NULL)"
    )

    def connect() -> Any:
        if sqlite_path:
            conn = sqlite3.connect(sqlite_path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        import psycopg

        return psycopg.connect(libpq_url(url))

    setup = connect()
    setup.execute(ddl)
    setup.commit()
    setup.close()
    sql = "INSERT INTO bench_raw (metadata, data) VALUES (%s, %s)"
    if sqlite_path:
        sql = sql.replace("%s", "?")
    counts = [0] * clients
    barrier = threading.Barrier(clients + 1)
    bounds: dict[str, float] = {}

    def worker(i: int) -> None:
        conn = connect()
        try:
            barrier.wait()
            deadline = bounds["start"] + seconds
            n = 0
            while time.perf_counter() < deadline:
                conn.execute(sql, (metadata, data))
                conn.commit()
                n += 1
            counts[i] = n
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    bounds["start"] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - bounds["start"]
    rate = sum(counts) / elapsed
    print(
        f"[1] plafond brut : {sum(counts)} INSERT+COMMIT en {elapsed:.1f} s, {clients} clients "
        f"= {rate:,.0f} insertions/s (métadonnées {len(metadata)} o, document {len(data)} o)"
    )
    return rate


# --- 3a. bulk generation -------------------------------------------------------------------------

DOC_COLUMNS = [
    "id",
    "patient_id",
    "submission_id",
    "version",
    "last_updated",
    "status",
    "deleted_at",
    "deleted_by",
    "master_identifier",
    "class_code",
    "type_code",
    "space",
    "date",
    "creation",
    "period_start",
    "period_end",
    "confidentiality",
    "masque_ps",
    "invisible_patient",
    "invisible_representants",
    "archived",
    "author_idnps",
    "authored_by_patient",
    "published_by",
    "title",
    "content_type",
    "size",
    "sha1",
    "sha256",
    "binary_id",
    "blob_key",
    "key_id",
    "wrapped_key",
    "resource",
]
PATIENT_COLUMNS = [
    "id",
    "ins",
    "ins_system",
    "family",
    "given",
    "family_folded",
    "birth_date",
    "gender",
    "version",
    "created_at",
    "last_updated",
]
RECORD_COLUMNS = [
    "patient_id",
    "status",
    "channel",
    "consent_id",
    "opened_at",
    "opened_by",
    "mt",
]
BULK_TABLES = ("dmp_document", "dmp_document_token", "dmp_document_term")


class Generator:
    """Patients with open records, then documents drawn over them: 90 % uniformly, 10 % on the
    1 % "chronic" patients (about ten times the mean each), 3 % superseded, dates over ten years.
    """

    def __init__(self, templates: list[Template], patients: int, seed: int, sqlite: bool):
        self.templates = templates
        self.rng = random.Random(seed)
        self.sqlite = sqlite
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.patient_ids = [fast_uuid(self.rng) for _ in range(patients)]
        self.chronic = max(1, patients // 100)

    def ts(self, value: datetime) -> str:
        if self.sqlite:  # SQLAlchemy's SQLite storage format (UTC, no offset)
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value.isoformat()

    def flag(self, value: bool) -> Any:
        return int(value) if self.sqlite else value

    def patients(self) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        rng, now = self.rng, self.ts(self.now)
        for i, pid in enumerate(self.patient_ids):
            family = FAMILIES[rng.randrange(len(FAMILIES))]
            year, month, day = (
                1930 + rng.randrange(90),
                1 + rng.randrange(12),
                1 + rng.randrange(28),
            )
            born = f"{year}-{month:02d}-{day:02d}"
            yield (
                (
                    pid,
                    nir(i, "35"),
                    builders.INS_NIR,
                    family,
                    GIVEN[rng.randrange(len(GIVEN))],
                    fold(family),
                    born,
                    "female" if i % 2 else "male",
                    2,
                    now,
                    now,
                ),
                (pid, "open", "guichet-cpam", fast_uuid(rng), now, "CPAM35-BENCH", IDNPS),
            )

    def documents(
        self, count: int, terms_per_doc: int
    ) -> Iterator[tuple[tuple[Any, ...], Template, str, list[str]]]:
        """(document row, its template, master identifier, blind terms) per document."""
        rng, ids, chronic = self.rng, self.patient_ids, self.chronic
        n_patients = len(ids)
        updated_iso = self.now.isoformat()
        updated = self.ts(self.now)
        start = datetime(2016, 1, 1, tzinfo=UTC)
        span = int((self.now - start).total_seconds())
        consts = []
        for t in self.templates:
            c = t.columns
            consts.append(
                (
                    (c["class_code"], c["type_code"], c["space"]),
                    (
                        c["confidentiality"],
                        self.flag(c["masque_ps"]),
                        self.flag(c["invisible_patient"]),
                        self.flag(c["invisible_representants"]),
                        self.flag(c["archived"]),
                        c["author_idnps"],
                        self.flag(c["authored_by_patient"]),
                        c["published_by"],
                        c["title"],
                        c["content_type"],
                        c["size"],
                        c["sha1"],
                        c["sha256"],
                    ),
                    (c["key_id"], c["wrapped_key"]),
                )
            )
        n_kinds = len(self.templates)
        for _ in range(count):
            pid = (
                ids[rng.randrange(chronic)]
                if rng.random() < 0.1
                else ids[rng.randrange(n_patients)]
            )
            k = rng.randrange(n_kinds)
            t, (head, middle, tail) = self.templates[k], consts[k]
            doc_id, bid = fast_uuid(rng), fast_uuid(rng)
            master = "urn:uuid:" + fast_uuid(rng)
            when = start + timedelta(seconds=rng.randrange(span))
            when_iso = when.isoformat()
            when_col = self.ts(when) if self.sqlite else when_iso
            status = "superseded" if rng.random() < 0.03 else "current"
            resource = t.resource % {
                "id": doc_id,
                "pid": pid,
                "master": master,
                "bid": bid,
                "date": when_iso,
                "updated": updated_iso,
                "status": status,
            }
            row = (
                *(doc_id, pid, None, 1, updated, status, None, None, master),
                *head,
                *(when_col, when_col, when_col, None),
                *middle,
                *(bid, f"{pid[:2]}/{pid}/{bid}"),
                *tail,
                resource,
            )
            terms = rng.sample(t.terms, min(terms_per_doc, len(t.terms)))
            yield row, t, master, terms


def _pg_schema_objects(cur: Any) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """(FK constraints, plain index definitions, PK/unique constraints) touching BULK_TABLES."""
    tables = list(BULK_TABLES)
    cur.execute(
        """SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
           FROM pg_constraint c
           WHERE c.contype IN ('p', 'u', 'f')
             AND (c.conrelid::regclass::text = ANY(%s) OR c.confrelid::regclass::text = ANY(%s))""",
        (tables, tables),
    )
    found = cur.fetchall()
    fks = [(t, n, d) for t, n, d, k in found if k == "f"]
    keys = [(t, n, d) for t, n, d, k in found if k in ("p", "u") and t in tables]
    cur.execute(
        """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid::regclass::text = ANY(%s)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                             WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))""",
        (tables,),
    )
    indexes = [r[0] for r in cur.fetchall()]
    return fks, indexes, keys  # type: ignore[return-value]


def bulk_load_pg(url: str, gen: Generator, count: int, terms_per_doc: int) -> None:
    import psycopg

    conninfo = libpq_url(url)
    t0 = time.perf_counter()
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        with cur.copy(f"COPY dmp_patient ({', '.join(PATIENT_COLUMNS)}) FROM STDIN") as cp:
            records_rows = []
            for patient, record in gen.patients():
                cp.write_row(patient)
                records_rows.append(record)
        with cur.copy(f"COPY dmp_record ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as cp:
            for record in records_rows:
                cp.write_row(record)
        conn.commit()
    t1 = time.perf_counter()
    print(f"    {len(gen.patient_ids):,} patients + DMP ouverts : {t1 - t0:6.1f} s")

    with psycopg.connect(conninfo, autocommit=True) as admin, admin.cursor() as cur:
        fks, indexes, keys_ = _pg_schema_objects(cur)
        for table, name, _ in fks:
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for definition in indexes:
            name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
            cur.execute(f"DROP INDEX {name}")
        for table, name, _ in keys_:
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')

    token_templates = []
    for t in gen.templates:
        lines = []
        for param, system, code in t.tokens:
            lines.append(
                f"%(d)s\t{param}\t{system if system is not None else chr(92) + 'N'}\t{code}\n"
            )
        token_templates.append("".join(lines))
    by_template = {id(t): tt for t, tt in zip(gen.templates, token_templates, strict=True)}

    conns = [psycopg.connect(conninfo) for _ in range(3)]
    t2 = time.perf_counter()
    n_tokens = n_terms = 0
    try:
        for c in conns:
            c.execute("SET synchronous_commit = off")
        cur_d, cur_t, cur_x = (c.cursor() for c in conns)
        with (
            cur_d.copy(f"COPY dmp_document ({', '.join(DOC_COLUMNS)}) FROM STDIN") as cp_d,
            cur_t.copy(
                "COPY dmp_document_token (document_id, param, system, code) FROM STDIN"
            ) as cp_t,
            cur_x.copy("COPY dmp_document_term (document_id, term, patient_id) FROM STDIN") as cp_x,
        ):
            tok_buf: list[str] = []
            term_buf: list[str] = []
            for i, (row, t, master, terms) in enumerate(gen.documents(count, terms_per_doc), 1):
                cp_d.write_row(row)
                doc_id, pid = row[0], row[1]
                tok_buf.append(by_template[id(t)] % {"d": doc_id, "m": master})
                n_tokens += len(t.tokens)
                for term in terms:
                    term_buf.append(f"{doc_id}\t{term}\t{pid}\n")
                n_terms += len(terms)
                if i % 5000 == 0:
                    cp_t.write("".join(tok_buf))
                    cp_x.write("".join(term_buf))
                    tok_buf.clear()
                    term_buf.clear()
                if i % 200_000 == 0:
                    print(f"    ... {i:,} documents ({time.perf_counter() - t2:.0f} s)", flush=True)
            cp_t.write("".join(tok_buf))
            cp_x.write("".join(term_buf))
        for c in conns:
            c.commit()
    finally:
        for c in conns:
            c.close()
    t3 = time.perf_counter()
    print(
        f"    COPY {count:,} documents, {n_tokens:,} jetons, {n_terms:,} termes : "
        f"{t3 - t2:6.1f} s = {count / (t3 - t2):,.0f} documents/s"
    )
    with psycopg.connect(conninfo, autocommit=True) as admin, admin.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        for table, name, definition in keys_:
            cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for definition in indexes:
            cur.execute(definition)
        t4 = time.perf_counter()
        print(f"    clés et index reconstruits : {t4 - t3:6.1f} s")
        for table, name, definition in fks:
            cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        t5 = time.perf_counter()
        print(f"    clés étrangères revalidées : {t5 - t4:6.1f} s")
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('dmp_document_token', 'id'), "
            "(SELECT max(id) FROM dmp_document_token))"
        )
        cur.execute(
            "VACUUM (ANALYZE) dmp_patient, dmp_record, dmp_document, dmp_document_token, "
            "dmp_document_term"
        )
        t6 = time.perf_counter()
        print(f"    VACUUM ANALYZE : {t6 - t5:6.1f} s")
        cur.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
            "WHERE c.relname = ANY(%s)",
            (list(BULK_TABLES),),
        )
        print(f"    taille des tables de documents (index compris) : {cur.fetchone()[0]}")


def bulk_load_sqlite(url: str, gen: Generator, count: int, terms_per_doc: int) -> None:
    path = make_url(url).database
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    t0 = time.perf_counter()
    patients, recs = zip(*gen.patients(), strict=True)
    conn.executemany(
        f"INSERT INTO dmp_patient ({', '.join(PATIENT_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(PATIENT_COLUMNS))})",
        patients,
    )
    conn.executemany(
        f"INSERT INTO dmp_record ({', '.join(RECORD_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))})",
        recs,
    )
    conn.commit()
    doc_sql = (
        f"INSERT INTO dmp_document ({', '.join(DOC_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(DOC_COLUMNS))})"
    )
    tok_sql = "INSERT INTO dmp_document_token (document_id, param, system, code) VALUES (?,?,?,?)"
    term_sql = "INSERT INTO dmp_document_term (document_id, term, patient_id) VALUES (?,?,?)"
    docs: list[tuple[Any, ...]] = []
    toks: list[tuple[Any, ...]] = []
    terms_rows: list[tuple[Any, ...]] = []
    for i, (row, t, master, terms) in enumerate(gen.documents(count, terms_per_doc), 1):
        docs.append(row)
        values = {"d": row[0], "m": master}
        toks += [(row[0], p, s, c % values) for p, s, c in t.tokens]
        terms_rows += [(row[0], term, row[1]) for term in terms]
        if i % 20_000 == 0 or i == count:
            conn.executemany(doc_sql, docs)
            conn.executemany(tok_sql, toks)
            conn.executemany(term_sql, terms_rows)
            conn.commit()
            docs.clear()
            toks.clear()
            terms_rows.clear()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    t1 = time.perf_counter()
    print(
        f"    INSERT {count:,} documents : {t1 - t0:6.1f} s = {count / (t1 - t0):,.0f} documents/s"
    )


# --- the running server ---------------------------------------------------------------------------


@dataclass
class Bench:
    url: str
    db: Database
    settings: Settings
    store: DocumentStore
    base: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str = "dupont") -> httpx.Client:
        return httpx.Client(
            base_url=self.settings.base_url,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=120,
        )


@contextmanager
def running_server(bench: Bench) -> Iterator[None]:
    app = create_app(bench.settings, bench.db, bench.store)
    port = int(bench.settings.base_url.rsplit(":", 1)[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def make_tokens(settings: Settings) -> dict[str, str]:
    key = keys.load_or_create(settings.keys_dir)

    def token(subject: str, claims: dict[str, Any]) -> str:
        return mint_token(
            key,
            issuer=settings.dev_issuer,
            audience=settings.audience,
            subject=subject,
            claims=claims,
            ttl_seconds=4 * 3600,
        )

    return {
        "dupont": token(
            IDNPS,
            {
                "actor": "professional",
                "idnat_ps": IDNPS,
                "structure": STRUCTURE,
                "profession": "10",
                "acr": "eidas1",  # CPS / e-CPS: the policy's G1
            },
        ),
        "agent": token("CPAM35-A001", {"actor": "agent", "agent_id": "CPAM35-A001"}),
    }


def open_record_http(client: httpx.Client, ins: str) -> str:
    created = client.post("/fhir/Patient", json=patient_resource(ins))
    assert created.status_code in (200, 201), created.text
    pid = created.json()["id"]
    response = client.post("/fhir/Consent", json=consent_resource(pid))
    assert response.status_code == 201, response.text
    return str(pid)


# --- 2. publish -------------------------------------------------------------------------------


def bench_publish(
    bench: Bench, clients: int, total: int
) -> tuple[float, list[float], list[str], list[str]]:
    """(publishes/s, latencies, patient ids, published document ids)."""
    with bench.client("agent") as agent:
        pids = [open_record_http(agent, nir(i + 1, "29")) for i in range(clients)]
    with bench.db.session() as session:  # the publishing GP is their médecin traitant (R10)
        session.execute(update(Record).where(Record.patient_id.in_(pids)).values(mt=IDNPS))
    per_client = max(1, total // clients)
    warmup = 3
    payloads = [
        [
            orjson.dumps(bundle_for(f"Patient/{pids[c]}", KINDS[j % len(KINDS)], document_bytes(j)))
            for j in range(per_client + warmup)
        ]
        for c in range(clients)
    ]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    doc_ids: list[list[str]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    headers = {"Content-Type": "application/fhir+json"}

    def worker(c: int) -> None:
        with bench.client() as client:
            for body in payloads[c][:warmup]:
                r = client.post("/fhir", content=body, headers=headers)
                if r.status_code != 200:
                    errors.append(r.text)
            barrier.wait()
            for body in payloads[c][warmup:]:
                t0 = time.perf_counter()
                r = client.post("/fhir", content=body, headers=headers)
                latencies[c].append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                doc_ids[c].append(r.json()["entry"][1]["response"]["location"].split("/")[1])

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} publications refusées, la première : {errors[0][:2000]}")
    done = sum(len(x) for x in latencies)
    rate = done / elapsed
    flat = [x for lat in latencies for x in lat]
    print(
        f"[2] ITI-65 : {done} publications en {elapsed:.1f} s, {clients} clients = "
        f"{rate:,.1f} publications/s ; latence {p50_p99(flat)}"
    )
    return rate, flat, pids, [d for ids in doc_ids for d in ids]


# --- 3. search --------------------------------------------------------------------------------


def bench_search(
    bench: Bench, patient_ids: list[str], searches: int, seed: int
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    targets = [rng.choice(patient_ids) for _ in range(searches)]
    out: dict[str, list[float]] = {"http": [], "service": [], "sql": []}
    found: list[int] = []
    with bench.client() as client:
        for pid in targets[:20]:  # warm-up
            client.get("/fhir/DocumentReference", params={"patient": pid, "status": "current"})
        for pid in targets:
            t0 = time.perf_counter()
            r = client.get("/fhir/DocumentReference", params={"patient": pid, "status": "current"})
            out["http"].append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
            found.append(r.json().get("total", 0))
    principal = principal_ps()
    params = documents.document_params(lambda: bench.store.keys.index_key)
    for pid in targets:
        t0 = time.perf_counter()
        with bench.db.session() as session:
            query = parse_search(
                "DocumentReference", [("patient", pid), ("status", "current")], params
            )
            documents.search(session, principal, query, bench.base)
        out["service"].append((time.perf_counter() - t0) * 1000)
    out["sql"] = bare_search_sql(bench.url, targets)
    print(
        f"[3] ITI-67 patient+status ({searches} recherches, {statistics.mean(found):.1f} "
        f"documents courants en moyenne, max {max(found)}) :\n"
        f"    HTTP      {p50_p99(out['http'])}\n"
        f"    service   {p50_p99(out['service'])}\n"
        f"    SQL seul  {p50_p99(out['sql'])}"
    )
    return out


SEARCH_WHERE = (
    "deleted_at IS NULL AND (masque_ps = {false} OR author_idnps = {p} OR published_by = {p}) "
    "AND patient_id = {p} AND status = 'current'"
)


def bare_search_sql(url: str, targets: list[str]) -> list[float]:
    """The statements ``documents.search`` issues (record facts, page, count), on the raw
    driver: the database's share of a search."""
    sqlite_path = make_url(url).database if make_url(url).get_backend_name() == "sqlite" else None
    if sqlite_path:
        conn: Any = sqlite3.connect(sqlite_path)
        p, false = "?", "0"
    else:
        import psycopg

        conn = psycopg.connect(libpq_url(url), autocommit=True)
        p, false = "%s", "false"
    where = SEARCH_WHERE.format(p=p, false=false)
    page = f"SELECT resource FROM dmp_document WHERE {where} ORDER BY date DESC, id LIMIT 21"
    count = f"SELECT count(*) FROM dmp_document WHERE {where}"
    args = (IDNPS, IDNPS)
    timings = []
    try:
        for pid in targets:
            t0 = time.perf_counter()
            conn.execute(f"SELECT * FROM dmp_patient WHERE id = {p}", (pid,)).fetchall()
            conn.execute(f"SELECT * FROM dmp_record WHERE patient_id = {p}", (pid,)).fetchall()
            rows = conn.execute(page, (*args, pid)).fetchall()
            [orjson.loads(r[0]) for r in rows]
            conn.execute(count, (*args, pid)).fetchone()
            timings.append((time.perf_counter() - t0) * 1000)
        if not sqlite_path:
            heavy = conn.execute(
                "SELECT patient_id FROM dmp_document GROUP BY patient_id "
                "ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()[0]
            plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {page}", (*args, heavy)).fetchall()
            print("    plan (patient le plus chargé) :")
            for (line,) in plan:
                print("      " + line)
    finally:
        conn.close()
    return timings


# --- 4. retrieve ------------------------------------------------------------------------------


def bench_retrieve(bench: Bench, doc_ids: list[str], count: int) -> list[float]:
    with bench.db.session() as session:
        binaries = list(
            session.execute(select(Document.binary_id).where(Document.id.in_(doc_ids))).scalars()
        )
    timings = []
    with bench.client() as client:
        client.get(f"/fhir/Binary/{binaries[0]}")
        for i in range(count):
            t0 = time.perf_counter()
            r = client.get(f"/fhir/Binary/{binaries[i % len(binaries)]}", headers={"Accept": "*/*"})
            timings.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and len(r.content) > 1000, r.text
    print(f"[4] ITI-68 ({count} lectures de {len(binaries)} documents) : {p50_p99(timings)}")
    return timings


# --- 5. read: policy and audit share ----------------------------------------------------------


def audit_entry(request_id: str, doc_id: str, patient_id: str | None) -> Any:
    return audit_service.AuditEntry(
        request_id=request_id,
        actor_kind="professional",
        actor_id=IDNPS,
        actor_structure=STRUCTURE,
        access_mode="normal",
        action="read",
        resource_type="DocumentReference",
        resource_id=doc_id,
        query=None,
        outcome=200,
        client_ip="127.0.0.1",
        patient_id=patient_id,
        rule="professionnel-authentifie",
    )


def bench_read(bench: Bench, doc_ids: list[str], count: int) -> dict[str, list[float]]:
    principal = principal_ps()
    targets = [doc_ids[i % len(doc_ids)] for i in range(count)]
    out: dict[str, list[float]] = {k: [] for k in ("http", "service", "bare", "policy", "decide")}
    out["audit"] = []
    out["health"], out["verify"] = [], []
    with bench.client() as client:
        client.get(f"/fhir/DocumentReference/{targets[0]}")
        for _ in targets:  # the HTTP floor: no token, no trace, one SELECT 1
            t0 = time.perf_counter()
            client.get("/health")
            out["health"].append((time.perf_counter() - t0) * 1000)
        for doc_id in targets:
            t0 = time.perf_counter()
            r = client.get(f"/fhir/DocumentReference/{doc_id}")
            out["http"].append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    for doc_id in targets:  # the full service read: load, facts, decide, render
        t0 = time.perf_counter()
        with bench.db.session() as session:
            documents.read(session, principal, doc_id, bench.base)
        out["service"].append((time.perf_counter() - t0) * 1000)
    for doc_id in targets:  # the same without the policy: load and render only
        t0 = time.perf_counter()
        with bench.db.session() as session:
            doc = session.get(Document, doc_id)
            assert doc is not None
            documents.absolute(doc.resource, bench.base)
        out["bare"].append((time.perf_counter() - t0) * 1000)
    for doc_id in targets:  # the policy alone: patient + record facts, then decide
        with bench.db.session() as session:
            doc = session.get(Document, doc_id)
            assert doc is not None
            t0 = time.perf_counter()
            documents._authorise(session, principal, doc, "read")
            out["policy"].append((time.perf_counter() - t0) * 1000)
    with bench.db.session() as session:
        doc = session.get(Document, targets[0])
        patient = session.get(Patient, doc.patient_id) if doc else None
        assert doc is not None and patient is not None
        facts = records.load(session, patient).state
        doc_facts = documents.document_state(doc)
    actor = pep.actor_for(principal, facts)
    for _ in range(count):
        t0 = time.perf_counter()
        decide(pep.request_for(principal, "read", utcnow()), actor, facts, doc_facts)
        out["decide"].append((time.perf_counter() - t0) * 1000)
    for i, doc_id in enumerate(targets):  # the audit write alone, as the middleware makes it
        entry = audit_entry(f"bench-{i}", doc_id, facts.patient_id)
        t0 = time.perf_counter()
        audit_service.record(bench.db, entry)
        out["audit"].append((time.perf_counter() - t0) * 1000)
    verifier = build_verifier(bench.settings, keys.load_or_create(bench.settings.keys_dir))
    for _ in targets:
        t0 = time.perf_counter()
        verifier.verify(bench.tokens["dupont"])
        out["verify"].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in out.items()}
    print(
        f"[5] lecture DocumentReference ({count}) :\n"
        f"    HTTP à vide /health {p50_p99(out['health'])}\n"
        f"    jeton (ES256)       {p50_p99(out['verify'])}\n"
        f"    HTTP complet        {p50_p99(out['http'])}\n"
        f"    service read()      {p50_p99(out['service'])}\n"
        f"    sans politique      {p50_p99(out['bare'])}\n"
        f"    politique (faits+decide) {p50_p99(out['policy'])}\n"
        f"    decide() seul       {med['decide'] * 1000:7.1f} µs\n"
        f"    écriture d'audit    {p50_p99(out['audit'])}"
    )
    return out


# --- 6. the policy and trace chain on, versus a policy that permits everything -------------


@contextmanager
def permit_all(trace: bool = False) -> Iterator[None]:
    """Swap the decision point for one that permits everything (and, unless ``trace``, the
    trace writer for a no-op), in this process (the benchmark's server runs in a thread)."""
    from parcours.audit import middleware
    from parcours.dossier import documents as documents_module
    from parcours.dossier import records as records_module
    from parcours.policy.engine import Decision

    def allow(*_args: Any, **_kwargs: Any) -> Decision:
        return Decision(True, "permit-all", "bench", ("permit-all",))

    saved = (
        records_module.decide,
        documents_module.decide,
        documents_module._authorise,
        middleware.record,
    )
    records_module.decide = allow  # type: ignore[assignment]
    documents_module.decide = allow  # type: ignore[assignment]
    # A read then loads no facts at all (patient, record, first-access): only the document.
    documents_module._authorise = lambda *_a, **_k: None  # type: ignore[assignment]
    if not trace:
        middleware.record = lambda *_a, **_k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        (
            records_module.decide,
            documents_module.decide,
            documents_module._authorise,
            middleware.record,
        ) = saved


def bench_overhead(
    bench: Bench, doc_ids: list[str], patient_ids: list[str], count: int, seed: int
) -> dict[str, list[float]]:
    """Interleaved rounds (full, permit-all, full, …) of the same reads and searches over HTTP,
    so that drift in the machine's load hits both sides alike."""
    rng = random.Random(seed)
    reads = [doc_ids[i % len(doc_ids)] for i in range(count)]
    searches = [rng.choice(patient_ids) for _ in range(count)]
    variants = {
        "": nullcontext,  # the real thing
        "T": lambda: permit_all(trace=True),  # permit-all, still traced
        "0": permit_all,  # permit-all, no trace
    }
    out: dict[str, list[float]] = {
        f"{kind}{suffix}": [] for kind in ("read", "search") for suffix in variants
    }
    rounds = 5
    with bench.client() as client:
        for r in range(rounds):
            lo, hi = r * count // rounds, (r + 1) * count // rounds
            for suffix, variant in variants.items():
                with variant():
                    for doc_id in reads[lo:hi]:
                        t0 = time.perf_counter()
                        resp = client.get(f"/fhir/DocumentReference/{doc_id}")
                        out[f"read{suffix}"].append((time.perf_counter() - t0) * 1000)
                        assert resp.status_code == 200, resp.text
                    for pid in searches[lo:hi]:
                        t0 = time.perf_counter()
                        resp = client.get(f"/fhir/DocumentReference?patient={pid}&status=current")
                        out[f"search{suffix}"].append((time.perf_counter() - t0) * 1000)
                        assert resp.status_code == 200, resp.text
    print(
        f"[6] politique + traces vs tout-permis ({count} de chaque) :\n"
        f"    lecture complète    {p50_p99(out['read'])}\n"
        f"    lecture tout-permis tracée {p50_p99(out['readT'])}\n"
        f"    lecture tout-permis {p50_p99(out['read0'])}\n"
        f"    recherche complète  {p50_p99(out['search'])}\n"
        f"    recherche tout-permis tracée {p50_p99(out['searchT'])}\n"
        f"    recherche tout-permis {p50_p99(out['search0'])}"
    )
    return out


# --- profile --------------------------------------------------------------------------------


def profile_step(bench: Bench, step: str, pids: list[str], doc_ids: list[str], n: int) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("(pyinstrument absent : pas de profil)")
        return
    principal = principal_ps()
    work: Callable[[int], None]
    if step == "publish":
        bundles = [
            bundle_for(f"Patient/{pids[0]}", KINDS[i % len(KINDS)], document_bytes(i))
            for i in range(n)
        ]

        def work(i: int) -> None:
            documents.publish(bench.db, bench.store, principal, bundles[i])

    elif step == "search":
        params = documents.document_params(lambda: bench.store.keys.index_key)
        rng = random.Random(3)

        def work(i: int) -> None:
            with bench.db.session() as session:
                query = parse_search(
                    "DocumentReference",
                    [("patient", rng.choice(pids)), ("status", "current")],
                    params,
                )
                documents.search(session, principal, query, bench.base)

    elif step == "read":

        def work(i: int) -> None:
            doc_id = doc_ids[i % len(doc_ids)]
            with bench.db.session() as session:
                documents.read(session, principal, doc_id, bench.base)
            audit_service.record(bench.db, audit_entry(f"profile-{i}", doc_id, None))

    else:
        with bench.db.session() as session:
            binaries = list(
                session.execute(
                    select(Document.binary_id).where(Document.id.in_(doc_ids))
                ).scalars()
            )

        def work(i: int) -> None:
            with bench.db.session() as session:
                documents.retrieve(session, bench.store, principal, binaries[i % len(binaries)])

    statements: dict[str, list[float]] = {}  # statement kind: [calls, seconds]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool):
        took = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        words = statement.split()
        key = " ".join(words[:3] if words[0] in ("INSERT", "UPDATE", "DELETE") else words[:1])
        if words[0] == "SELECT":
            key = f"SELECT … FROM {words[words.index('FROM') + 1]}" if "FROM" in words else words[1]
        if many:
            key += " (executemany)"
        entry = statements.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += took

    profiler = Profiler(interval=0.0005)
    event.listen(bench.db.engine, "before_cursor_execute", before)
    event.listen(bench.db.engine, "after_cursor_execute", after)
    t0 = time.perf_counter()
    profiler.start()
    for i in range(n):
        work(i)
    profiler.stop()
    elapsed = time.perf_counter() - t0
    event.remove(bench.db.engine, "before_cursor_execute", before)
    event.remove(bench.db.engine, "after_cursor_execute", after)
    print(
        f"\nprofil pyinstrument de {n} × {step} au niveau service ({elapsed / n * 1000:.2f} ms "
        "par appel) : fonctions les plus coûteuses (temps propre)"
    )
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is None:
        return
    spots: dict[str, float] = {}
    layers: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        real = [c for c in frame.children if not c.is_synthetic]
        stack += real
        if frame.is_synthetic:
            continue
        own = frame.time - sum(c.time for c in real)
        where = frame.file_path_short or "?"
        key = f"{frame.function}  {where}:{frame.line_no}"
        spots[key] = spots.get(key, 0.0) + own
        layer = where.split("/")[0] if "/" in where else where
        layers[layer] = layers.get(layer, 0.0) + own
    total = root.time or 1.0
    for key, own in sorted(spots.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {own / total:6.1%}  {key}")
    print(
        "temps propre par couche : "
        + ", ".join(
            f"{name} {own / total:.0%}"
            for name, own in sorted(layers.items(), key=lambda kv: -kv[1])[:8]
        )
    )
    print("instructions SQL par appel (temps dans le pilote, aller-retour compris) :")
    for key, (calls, took) in sorted(statements.items(), key=lambda kv: -kv[1][1]):
        print(f"  {calls / n:5.1f} × {key:<58} {took / n * 1000:6.2f} ms")
    print("arbre d'appels (code de l'application) :")
    print(profiler.output_text(show_all=False, short_mode=False))


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--documents", type=int, help="documents générés (défaut : --scale)")
    parser.add_argument("--patients", type=int, help="patients générés (défaut : --scale)")
    parser.add_argument("--terms", type=int, default=4, help="termes d'index aveugle/document")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--raw-seconds", type=float, default=10.0)
    parser.add_argument("--publishes", type=int, default=400)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--retrieves", type=int, default=300)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument(
        "--profile",
        default="publish",
        help="étapes profilées, séparées par des virgules : publish, search, read, retrieve, none",
    )
    parser.add_argument("--profile-calls", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="conserver la base de travail")
    args = parser.parse_args()
    steps = [p for p in args.profile.split(",") if p and p != "none"]
    if set(steps) - {"publish", "search", "read", "retrieve"}:
        parser.error(f"--profile : étape inconnue dans {args.profile}")
    n_docs = args.documents if args.documents is not None else SCALES[args.scale][0]
    n_patients = args.patients if args.patients is not None else SCALES[args.scale][1]
    figures = Figures()

    with (
        tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp,
        scratch_database(args.database_url, args.keep, Path(tmp)) as url,
    ):
        work = Path(tmp)
        db = Database(url)
        sqlite = db.dialect == "sqlite"
        print(
            f"base : {db.dialect} ({make_url(url).database}), {os.cpu_count()} cœurs, "
            f"charge {os.getloadavg()[0]:.2f}"
        )
        migrate.upgrade(db)
        (work / "annuaire").mkdir()
        load_scenario(db, work / "annuaire")
        port = _free_port()
        settings = Settings(
            env="development",
            data_dir=work / "data",
            database_url=url,
            base_url=f"http://127.0.0.1:{port}",
        )
        store = open_store(settings)
        bench = Bench(url, db, settings, store, base=settings.base_url + "/fhir")
        templates = make_templates(db, store)
        metadata = templates[0].resource % {
            "id": "00000000-0000-4000-a000-000000000000",
            "pid": "00000000-0000-4000-a000-000000000001",
            "master": "urn:uuid:00000000-0000-4000-a000-000000000002",
            "bid": "00000000-0000-4000-a000-000000000003",
            "date": "2026-06-12T10:00:00+02:00",
            "updated": datetime.now(UTC).isoformat(),
            "status": "current",
        }

        data = document_bytes(0)
        raw = raw_ceiling(url, args.clients, args.raw_seconds, metadata, data)
        figures.add(f"[1] plafond brut INSERT+COMMIT ({args.clients} clients)", f"{raw:,.0f} /s")

        gen = None
        if n_docs:
            print(f"[3] génération de {n_docs:,} documents pour {n_patients:,} patients")
            gen = Generator(templates, n_patients, args.seed, sqlite)
            t0 = time.perf_counter()
            (bulk_load_sqlite if sqlite else bulk_load_pg)(url, gen, n_docs, args.terms)
            load_s = time.perf_counter() - t0
            print(f"    génération totale : {load_s:.0f} s")
            figures.add(f"[3] génération {n_docs:,} documents (COPY + index)", f"{load_s:.0f} s")
            # The same ceiling once the server carries the generated volume (and still writes
            # it back): the publish figure below is measured in these conditions.
            raw = raw_ceiling(url, args.clients, args.raw_seconds, metadata, data)
            figures.add("[1] plafond brut, après génération", f"{raw:,.0f} /s")

        bench.tokens = make_tokens(settings)
        with running_server(bench):
            rate, lat, pids, doc_ids = bench_publish(bench, args.clients, args.publishes)
            ratio = rate / raw
            figures.add(f"[2] ITI-65 publications ({args.clients} clients)", f"{rate:,.1f} /s")
            figures.add("[2] ITI-65 latence sous charge", p50_p99(lat))
            figures.add(
                "[2] ratio au plafond brut" + (" (après génération)" if gen else ""),
                f"{ratio:.1%}",
                f">= 60 % : {verdict(ratio >= 0.6)}",
            )

            searched = gen.patient_ids if gen else pids
            s = bench_search(bench, searched, args.searches, args.seed)
            scale = (
                f"{n_docs:,} docs / {len(searched):,} patients"
                if gen
                else f"{len(doc_ids)} docs publiés / {len(searched)} patients"
            )
            p99 = percentile(s["http"], 0.99)
            figures.add(
                f"[3] ITI-67 HTTP ({scale})",
                p50_p99(s["http"]),
                f"p99 <= 10 ms : {verdict(p99 <= 10)}",
            )
            figures.add("[3] ITI-67 service (sans HTTP)", p50_p99(s["service"]))
            figures.add("[3] ITI-67 SQL seul", p50_p99(s["sql"]))

            r = bench_retrieve(bench, doc_ids, args.retrieves)
            figures.add("[4] ITI-68 Binary (HTTP)", p50_p99(r))

            rd = bench_read(bench, doc_ids, args.reads)
            med = {k: statistics.median(v) for k, v in rd.items()}
            share = (med["policy"] + med["audit"]) / med["http"]
            figures.add("[5] lecture DocumentReference HTTP", p50_p99(rd["http"]))
            figures.add("[5] HTTP à vide (/health : ni jeton ni trace)", p50_p99(rd["health"]))
            figures.add("[5] vérification du jeton ES256, médiane", f"{med['verify']:.2f} ms")
            figures.add("[5] service read() sans HTTP", p50_p99(rd["service"]))
            figures.add("[5] politique (faits + decide), médiane", f"{med['policy']:.2f} ms")
            figures.add("[5] decide() seul, médiane", f"{med['decide'] * 1000:.1f} µs")
            figures.add("[5] écriture d'audit, médiane", f"{med['audit']:.2f} ms")
            figures.add(
                "[5] plafond des requêtes tracées d'un même client",
                f"~{1000 / med['audit']:,.0f} /s",
                "un COMMIT par trace ; verrou par dossier (PostgreSQL), par processus (SQLite)",
            )
            figures.add(
                "[5] part politique + audit d'une lecture",
                f"{share:.0%} (politique {med['policy'] / med['http']:.0%}, "
                f"audit {med['audit'] / med['http']:.0%})",
                f"<= 10 % : {verdict(share <= 0.10)}",
            )

            ov = bench_overhead(bench, doc_ids, searched, args.reads, args.seed)
            med = {k: statistics.median(v) for k, v in ov.items()}
            read_over = (med["read"] - med["read0"]) / med["read0"]
            search_over = (med["search"] - med["search0"]) / med["search0"]
            policy_over = (med["read"] - med["readT"]) / med["readT"]
            figures.add("[6] lecture HTTP, politique + traces", p50_p99(ov["read"]))
            figures.add("[6] lecture HTTP, tout-permis sans trace", p50_p99(ov["read0"]))
            figures.add(
                "[6] surcoût politique + traces sur une lecture (médianes)",
                f"{read_over:+.0%}",
                f"<= 10 % : {verdict(read_over <= 0.10)}",
            )
            figures.add("[6] lecture HTTP, tout-permis mais tracée", p50_p99(ov["readT"]))
            figures.add(
                "[6] surcoût de la politique seule sur une lecture (médianes)",
                f"{policy_over:+.0%}",
                f"<= 10 % : {verdict(policy_over <= 0.10)}",
            )
            figures.add("[6] recherche HTTP, politique + traces", p50_p99(ov["search"]))
            figures.add("[6] recherche HTTP, tout-permis sans trace", p50_p99(ov["search0"]))
            figures.add("[6] surcoût sur une recherche (médianes)", f"{search_over:+.0%}")

        for step in steps:
            profile_step(
                bench, step, pids if step == "publish" else searched, doc_ids, args.profile_calls
            )
        figures.add("charge système (loadavg 1 min) en fin de mesure", f"{os.getloadavg()[0]:.2f}")
        figures.print()
        db.dispose()


if __name__ == "__main__":
    main()
