"""Annuaire benchmark: extract import throughput and FHIR search latency.

    python bench/annuaire.py [--rows 200000] [--database-url URL] [--searches 400]

Prints: rows/s for a first import and for an incremental re-import of a national-size-like
personal-activity extract; then, with the synthetic Ille-et-Vilaine department loaded, p50/p99
latencies of Practitioner searches by name and by mailbox-mss over real HTTP (uvicorn + httpx).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from parcours.annuaire.extracts import ACTIVITY_HEADER, write_extract
from parcours.annuaire.importer import import_file
from parcours.annuaire.models import Mailbox, Practitioner
from parcours.app import create_app
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.config import Settings
from parcours.identity import RPPS
from parcours.storage import migrate
from parcours.storage.db import Database, normalise_url

FAMILIES = [
    "Martin",
    "Bernard",
    "Le Gall",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
]
GIVEN = ["Élise", "Paul", "Yann", "Marie", "Jean", "Anne", "Luc", "Sophie", "Pierre", "Nolwenn"]
PROFESSIONS = [
    ("10", "Médecin"),
    ("60", "Infirmier"),
    ("70", "Masseur-Kinésithérapeute"),
    ("21", "Pharmacien"),
]


def big_activity_rows(n: int, seed: int, rename_every: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    index = {h: i for i, h in enumerate(ACTIVITY_HEADER)}
    rows = []
    for i in range(n):
        rpps = str(RPPS.generate(rng))
        code, label = PROFESSIONS[i % 4]
        row = [""] * len(ACTIVITY_HEADER)
        family = FAMILIES[rng.randrange(10)] + (
            "-Bis" if rename_every and i % rename_every == 0 else ""
        )
        for key, value in {
            "Type d'identifiant PP": "8",
            "Identifiant PP": rpps,
            "Identification nationale PP": "8" + rpps,
            "Code civilité": "M",
            "Nom d'exercice": family,
            "Prénom d'exercice": GIVEN[rng.randrange(10)],
            "Code profession": code,
            "Libellé profession": label,
            "Code catégorie professionnelle": "C",
            "Code mode exercice": "L",
            "Identifiant technique de la structure": f"R1{i // 3:013d}",
            "Raison sociale site": f"Cabinet {i // 3}",
            "Code postal (coord. structure)": "35000",
            "Libellé commune (coord. structure)": "RENNES",
            "Code commune (coord. structure)": "35238",
        }.items():
            row[index[key]] = value
        rows.append(row)
    return rows


def bench_import(url: str, rows: int, workdir: Path) -> None:
    db = Database(url)
    migrate.upgrade(db)
    data = big_activity_rows(rows, seed=1)
    first = workdir / "PS_LibreAcces_Personne_activite_202601010000.txt"
    write_extract(first, ACTIVITY_HEADER, data)
    t0 = time.perf_counter()
    with db.session() as session:
        report = import_file(session, first)
    t1 = time.perf_counter()
    print(
        f"import initial   : {report.rows:>8} lignes en {t1 - t0:6.2f} s = "
        f"{report.rows / (t1 - t0):>9,.0f} lignes/s ({db.dialect})"
    )
    # Incremental: 1 % renamed, 1 % vanished, 1 % new.
    changed = big_activity_rows(rows, seed=1, rename_every=100)
    changed = changed[: -rows // 100] + big_activity_rows(rows // 100, seed=2)
    second = workdir / "PS_LibreAcces_Personne_activite_202602010000.txt"
    write_extract(second, ACTIVITY_HEADER, changed)
    t0 = time.perf_counter()
    with db.session() as session:
        report = import_file(session, second)
    t1 = time.perf_counter()
    p = report.entities["Practitioner"]
    print(
        f"import incrémental: {report.rows:>8} lignes en {t1 - t0:6.2f} s = "
        f"{report.rows / (t1 - t0):>9,.0f} lignes/s "
        f"(+{p.created} ~{p.updated} -{p.deactivated} ={p.unchanged})"
    )
    db.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_search(url: str, workdir: Path, searches: int) -> None:
    from parcours.demo.territory import generate_territory

    db = Database(url)
    migrate.upgrade(db)
    manifest = generate_territory(workdir / "territoire", seed=35)
    for path in (manifest.activity_path, manifest.mssante_path):
        with db.session() as session:
            import_file(session, path)
    with db.session() as session:
        families = list(session.execute(select(Practitioner.family)).scalars())
        boxes = list(
            session.execute(select(Mailbox.address).where(Mailbox.type == "PER")).scalars()
        )
        total = len(families)
    port = _free_port()
    settings = Settings(
        env="development", data_dir=workdir, database_url=url, base_url=f"http://127.0.0.1:{port}"
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, db), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    key = keys.load_or_create(settings.keys_dir)
    token = mint_token(
        key,
        issuer=settings.dev_issuer,
        audience=settings.audience,
        subject="bench",
        claims={"actor": "agent", "agent_id": "bench"},
        ttl_seconds=3600,
    )
    rng = random.Random(7)
    with httpx.Client(
        base_url=settings.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        for label, make in (
            ("name", lambda: {"name": rng.choice(families)[:4]}),
            ("mailbox-mss", lambda: {"mailbox-mss": rng.choice(boxes)}),
        ):
            client.get("/fhir/Practitioner", params=make())  # warm-up
            timings = []
            for _ in range(searches):
                t0 = time.perf_counter()
                r = client.get("/fhir/Practitioner", params=make())
                timings.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
            print(
                f"Practitioner?{label:<12}: p50 {statistics.median(timings):6.2f} ms  "
                f"p99 {percentile(timings, 0.99):6.2f} ms ({searches} requêtes HTTP, "
                f"{total} professionnels, {len(boxes)} BAL PER, {db.dialect})"
            )
    server.should_exit = True
    thread.join(5)
    db.dispose()


@contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A fresh database on the same server, so the search figures see only the department."""
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    name = f"parcours_bench_search_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalise_url(url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.database_url or f"sqlite:///{work / 'bench.sqlite3'}"
        bench_import(url, args.rows, work)
        if not args.skip_search:
            if args.database_url:
                with scratch_postgres(args.database_url) as search_url:
                    bench_search(search_url, work, args.searches)
            else:
                bench_search(f"sqlite:///{work / 'search.sqlite3'}", work, args.searches)


if __name__ == "__main__":
    main()
