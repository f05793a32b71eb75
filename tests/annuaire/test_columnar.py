"""The columnar import path checked against the format's own reading and the scalar rules.

The reference reading is the one `mssante.md` §5.4 prescribes (``csv.reader`` with ``|`` and
``QUOTE_NONE``, last empty column dropped); the scalar rules are the functions the rest of the
platform uses (``fold`` for search, ``IdNatPS`` for identifiers). The native expressions must
agree with them on every value, including the awkward ones.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import orjson
import polars as pl
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from parcours.annuaire import importer
from parcours.annuaire.extracts import (
    ACTIVITY_FIELDS,
    ACTIVITY_HEADER,
    ExtractError,
    read_extract_frame,
)
from parcours.annuaire.models import Practitioner, PractitionerRole
from parcours.demo.territory import generate_territory
from parcours.fhir.search import fold
from parcours.identity import RPPS, IdentifierError, IdNatPS
from parcours.storage.db import Database
from parcours.storage.models import utcnow
from tests.annuaire.builders import professional, write_activity
from tests.scenario import CABINET, DUPONT, MARTIN


def _reference_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The extract as mssante.md §5.4 says to read it, keyed like the importer's fields."""
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE)
        header = [fold(h) for h in next(reader)[:-1]]
        for values in reader:
            if not values or not "".join(values).strip():
                continue
            fields = values[:-1]
            row = {ACTIVITY_FIELDS[h]: v.strip() for h, v in zip(header, fields, strict=True)}
            out.append((reader.line_num, row))
    return out


def test_frame_reader_matches_the_reference_reading_of_the_demo_extract(tmp_path: Path) -> None:
    manifest = generate_territory(tmp_path / "territoire", seed=35)
    _, frame = read_extract_frame(manifest.activity_path)
    expected = _reference_rows(manifest.activity_path)
    assert frame.height == len(expected) > 5000
    got = frame.to_dicts()
    for (line_no, ref), row in zip(expected, got, strict=True):
        assert row.pop("line_no") == line_no
        assert {k: row[k] for k in ref} == ref


def test_frame_reader_checks_structure_and_numbers_lines(tmp_path: Path) -> None:
    header = "|".join(ACTIVITY_HEADER) + "|\n"
    good = "|".join(professional(DUPONT, " Dupont ", "Élise")) + "|\n"
    path = tmp_path / "PS_LibreAcces_Personne_activite_202601010000.txt"
    # Blank lines and CRLF endings are tolerated, and line numbers stay those of the file.
    path.write_bytes((header + "\n" + good.replace("\n", "\r\n") + "   \n" + good).encode())
    _, frame = read_extract_frame(path)
    assert frame["line_no"].to_list() == [3, 5]
    assert frame["family"].to_list() == ["Dupont", "Dupont"]
    # A line without the closing '|' but with every field (the last one filled) is read too.
    path.write_text(header + good[:-2] + "Libéral\n", encoding="utf-8")
    assert read_extract_frame(path)[1].height == 1
    # One field short, one field more, a '|' inside a value: the line number is given.
    for bad in (good.replace("| Dupont |", "|"), good.replace("| Dupont |", "|Dup|ont|")):
        path.write_text(header + good + bad, encoding="utf-8")
        with pytest.raises(ExtractError, match=r"ligne 3 : \d+ champs au lieu de 56"):
            read_extract_frame(path)
    path.write_bytes(header.encode() + good.encode() + good.encode().replace(b"Dupont", b"Dup\xe9"))
    with pytest.raises(ExtractError, match="ligne 3 : octets non UTF-8"):
        read_extract_frame(path)


AWKWARD = [
    "Émile",
    "  LE  GALL ",
    "Straße",
    "ǅemal",
    "ﬁlou",  # a ligature NFKD splits
    "Nguyễn",
    "O'Neil",
    "a\x1fb",  # a control character Python's strip() treats as whitespace
    "\x1f",
    "",
    "Ångström-Ørsted",
    "İstanbul",
]


def test_fold_series_is_fold_on_every_value() -> None:
    rng = random.Random(3)
    values = AWKWARD + ["".join(rng.choice("aÉé ßxZ-'\x1c") for _ in range(8)) for _ in range(300)]
    folded = importer._fold_series(pl.Series("v", values)).to_list()
    assert folded == [fold(v) for v in values]


def _idnat_or_none(raw: str) -> str | None:
    try:
        return str(IdNatPS.parse(raw))
    except IdentifierError:
        return None


def test_fast_identifier_check_agrees_with_idnatps() -> None:
    rng = random.Random(5)
    values = []
    for _ in range(400):
        good = "8" + str(RPPS.generate(rng))
        values.append(good)
        i = rng.randrange(len(good))
        values.append(good[:i] + rng.choice("0123456789x ") + good[i + 1 :])
    values += ["", "8", "81234567890", "0" + "351234567", "8" + "1" * 11, "٨" * 12]
    fast = (
        pl.DataFrame({"v": values}).select(importer._luhn_valid_rpps_idnat(pl.col("v"))).to_series()
    )
    for value, ok in zip(values, fast.to_list(), strict=True):
        if ok:  # the fast path only ever accepts what the full parser accepts, unchanged
            assert _idnat_or_none(value) == value
        elif value.startswith("8") and len(value) == 12 and value.isascii():
            assert _idnat_or_none(value) is None


def test_attrs_json_drops_nulls_and_keeps_awkward_text() -> None:
    tricky = 'a,"b":null,{"c":null} \\ é'
    frame = pl.DataFrame(
        {"x": [None, tricky, None], "y": ["1", None, None], "z": [None, None, None]},
        schema={"x": pl.String, "y": pl.String, "z": pl.String},
    )
    encoded = frame.select(
        importer._json_attrs(
            pl.col("x"), pl.col("y"), pl.struct(pl.col("z").alias("w")).alias("nested")
        )
    ).to_series()
    assert [orjson.loads(v) for v in encoded] == [
        {"y": "1", "nested": {}},
        {"x": tricky, "nested": {}},
        {"nested": {}},
    ]


def _catalogue(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                    "WHERE indrelid::regclass::text LIKE 'annuaire_%' UNION ALL "
                    "SELECT conname || pg_get_constraintdef(oid) "
                    "FROM pg_constraint WHERE conrelid::regclass::text LIKE 'annuaire_%'"
                )
            )
        else:
            rows = conn.execute(
                text("SELECT name || coalesce(sql, '') FROM sqlite_master WHERE type = 'index'")
            )
        return {r[0] for r in rows}


def test_first_load_rebuilds_indexes_and_foreign_keys_exactly(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _catalogue(db)
    assert any("family_folded" in c for c in before)
    monkeypatch.setattr(importer, "REBUILD_THRESHOLD", 1)
    path = write_activity(
        tmp_path,
        "202601010800",
        [
            professional(DUPONT, "Dupont", "Élise", structure=CABINET, name="Cabinet Dupont"),
            professional(MARTIN, "Martin", "Paul", structure=CABINET, name="Cabinet Dupont"),
        ],
    )
    with db.session() as session:
        report = importer.import_file(session, path)
    assert report.entities["PractitionerRole"].created == 2
    assert _catalogue(db) == before
    with db.session() as session:
        # The rebuilt index answers the search, and the foreign key refuses an orphan role.
        assert (
            session.execute(
                select(func.count()).where(Practitioner.family_folded == "dupont")
            ).scalar_one()
            == 1
        )
    with pytest.raises(IntegrityError), db.session() as session:
        session.execute(
            insert(PractitionerRole).values(
                id="r-orphan",
                practitioner_id="8" + "0" * 11,
                profession_code="10",
                active=True,
                version=1,
                digest="x",
                last_updated=utcnow(),
                source="rpps",
                attrs={},
            )
        )


def test_a_failed_first_load_leaves_no_row_and_every_index(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _catalogue(db)
    monkeypatch.setattr(importer, "REBUILD_THRESHOLD", 1)
    path = write_activity(
        tmp_path, "202601010800", [professional(DUPONT, "Dupont", "Élise", structure=CABINET)]
    )

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disque plein")

    monkeypatch.setattr(importer, "bulk_insert_frame", broken)
    with pytest.raises(RuntimeError), db.session() as session:
        importer.import_file(session, path)
    assert _catalogue(db) == before
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(Practitioner)).scalar_one() == 0
