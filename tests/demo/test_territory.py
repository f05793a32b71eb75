"""The synthetic Ille-et-Vilaine: real extract formats, the seed document's figures, valid ids."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parcours.demo import (
    ACTIVITY_HEADER,
    MSSANTE_HEADER,
    TerritoryManifest,
    generate_territory,
    write_extract,
)
from parcours.identity import (
    ADELI,
    FINESS,
    RPPS,
    SIRET,
    IdNatPS,
    IdNatStruct,
)

# Column lists exactly as the shared reference (mssante.md §5.4) prints them, kept here as text
# so that the test does not merely compare the module with itself.
REFERENCE_ACTIVITY = """Type d'identifiant PP | Identifiant PP | Identification nationale PP |
Code civilité d'exercice | Libellé civilité d'exercice | Code civilité | Libellé civilité |
Nom d'exercice | Prénom d'exercice | Code profession | Libellé profession |
Code catégorie professionnelle | Libellé catégorie professionnelle | Code type savoir-faire |
Libellé type savoir-faire | Code savoir-faire | Libellé savoir-faire | Code mode exercice |
Libellé mode exercice | Numéro SIRET site | Numéro SIREN site | Numéro FINESS site |
Numéro FINESS établissement juridique | Identifiant technique de la structure |
Raison sociale site | Enseigne commerciale site | Complément destinataire (coord. structure) |
Complément point géographique (coord. structure) | Numéro Voie (coord. structure) |
Indice répétition voie (coord. structure) | Code type de voie (coord. structure) |
Libellé type de voie (coord. structure) | Libellé Voie (coord. structure) |
Mention distribution (coord. structure) | Bureau cedex (coord. structure) |
Code postal (coord. structure) | Code commune (coord. structure) |
Libellé commune (coord. structure) | Code pays (coord. structure) |
Libellé pays (coord. structure) | Téléphone (coord. structure) |
Téléphone 2 (coord. structure) | Télécopie (coord. structure) |
Adresse e-mail (coord. structure) | Code département (coord. structure) |
Libellé département (coord. structure) | Ancien identifiant de la structure |
Autorité d'enregistrement | Code secteur d'activité | Libellé secteur d'activité |
Code section tableau pharmaciens | Libellé section tableau pharmaciens | Code fonction |
Libellé fonction | Code genre d'activité | Libellé genre d'activité"""

REFERENCE_MSSANTE = """Type de BAL | Adresse BAL | Type Identifiant PP | Identifiant PP |
Identification nationale PP | Type identifiant structure | Identification Structure |
Service de rattachement | Civilité d'exercice | Nom d'exercice | Prénom d'exercice |
Catégorie profession | Libellé de catégorie profession | Code Profession | Libellé Profession |
Code savoir-faire | Libellé savoir-faire | Dématérialisation | Raison Sociale structure BAL |
Enseigne commerciale structure BAL | L2COMPLEMENTLOCALISATION | L3COMPLEMENTDISTRIBUTION |
L4NUMEROVOIE | L4COMPLEMENTNUMEROVOIE | NL4TYPEVOIE | L4LIBELLEVOIE | L5LIEUDITMENTION |
L6LIGNEACHEMINEMENT | Code postal | Département | Pays"""

ES_SECTORS = {"SA01", "SA03", "SA04", "SA34", "SA36"}
MOMENT = datetime(2018, 6, 1, 6, 0, tzinfo=UTC)


def _columns(text: str) -> list[str]:
    return [part.strip() for part in " ".join(text.split("\n")).split(" | ")]


def _idnat_struct(row: dict[str, str]) -> str:
    """The IDNST of an activity line's site: 1 + FINESS, else 3 + SIRET."""
    if row["Numéro FINESS site"]:
        return "1" + row["Numéro FINESS site"]
    return "3" + row["Numéro SIRET site"]


def _read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def territory(tmp_path_factory: pytest.TempPathFactory) -> TerritoryManifest:
    return generate_territory(tmp_path_factory.mktemp("t35"), seed=35, generated_at=MOMENT)


@pytest.fixture(scope="module")
def activity(territory: TerritoryManifest) -> list[dict[str, str]]:
    lines = _read(territory.activity_path)
    header = lines[0][:-1]
    return [dict(zip(header, line[:-1], strict=True)) for line in lines[1:]]


@pytest.fixture(scope="module")
def mssante(territory: TerritoryManifest) -> list[dict[str, str]]:
    lines = _read(territory.mssante_path)
    header = lines[0][:-1]
    return [dict(zip(header, line[:-1], strict=True)) for line in lines[1:]]


# -- format -----------------------------------------------------------------------------------


def test_files_exist_with_ans_names(territory: TerritoryManifest) -> None:
    assert territory.activity_path.name == "PS_LibreAcces_Personne_activite_201806010600.txt"
    assert territory.mssante_path.name == "Extraction_Correspondance_MSSante_201806010600.txt"
    assert territory.manifest_path.name == "territory.json"
    for path in territory.files:
        assert path.is_file() and path.parent == territory.out_dir


@pytest.mark.parametrize(
    ("attribute", "width", "reference", "module_header"),
    [
        ("activity_path", 56, REFERENCE_ACTIVITY, ACTIVITY_HEADER),
        ("mssante_path", 31, REFERENCE_MSSANTE, MSSANTE_HEADER),
    ],
)
def test_real_format_every_line(
    territory: TerritoryManifest,
    attribute: str,
    width: int,
    reference: str,
    module_header: tuple[str, ...],
) -> None:
    path: Path = getattr(territory, attribute)
    raw = path.read_bytes()
    raw.decode("utf-8")  # strictly UTF-8
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
    text = raw.decode("utf-8")
    assert all(line.endswith("|") for line in text.split("\n")[:-1])
    assert text.endswith("|\n")
    lines = _read(path)
    assert len(lines) > 1
    for line in lines:
        assert len(line) == width + 1
        assert line[-1] == ""
    expected = _columns(reference)
    assert len(expected) == width
    assert lines[0][:-1] == expected
    assert list(module_header) == expected


# -- figures of the seed document ---------------------------------------------------------------


def test_distinct_persons_per_profession(activity: list[dict[str, str]]) -> None:
    persons: dict[str, set[str]] = defaultdict(set)
    for row in activity:
        persons[row["Code profession"]].add(row["Identification nationale PP"])
    assert len(persons["10"]) == 1622
    assert len(persons["60"]) == 1042
    assert len(persons["70"]) == 1043
    assert len(persons["40"]) == 592
    assert len(persons["91"]) == 359
    assert len(persons["92"]) == 55
    assert persons["21"]  # pharmaciens: 1-3 per officine plus labs and hospitals


def test_930_generalistes(activity: list[dict[str, str]]) -> None:
    gps = {
        r["Identification nationale PP"]
        for r in activity
        if r["Code profession"] == "10" and r["Code savoir-faire"] == "SM54"
    }
    assert len(gps) == 930
    labels = {r["Libellé savoir-faire"] for r in activity if r["Code savoir-faire"] == "SM54"}
    assert len(labels) == 1 and "Médecine générale" in labels.pop()
    specialties = {
        r["Code savoir-faire"]
        for r in activity
        if r["Code profession"] == "10" and r["Code savoir-faire"] != "SM54"
    }
    assert len(specialties) >= 20


def test_structures_distinct_finess(activity: list[dict[str, str]]) -> None:
    by_sector: dict[str, set[str]] = defaultdict(set)
    for row in activity:
        if row["Numéro FINESS site"]:
            by_sector[row["Code secteur d'activité"]].add(row["Numéro FINESS site"])
    assert len(by_sector["SA33"]) == 304
    assert len(by_sector["SA17"]) == 143
    assert len(by_sector["SA25"]) == 47
    assert len(set().union(*(by_sector[s] for s in ES_SECTORS))) == 61
    # FINESS only for establishments, officines and labs; cabinets carry a SIRET
    assert set(by_sector) <= ES_SECTORS | {"SA33", "SA17", "SA25"}


def test_pharmacies_have_one_to_three_pharmacists(activity: list[dict[str, str]]) -> None:
    staff: dict[str, set[str]] = defaultdict(set)
    for row in activity:
        if row["Code secteur d'activité"] == "SA33":
            assert row["Code profession"] == "21"
            staff[row["Numéro FINESS site"]].add(row["Identification nationale PP"])
    assert {len(s) for s in staff.values()} <= {1, 2, 3}


def test_labs_have_biologists(activity: list[dict[str, str]]) -> None:
    labs: dict[str, set[str]] = defaultdict(set)
    for row in activity:
        if row["Code secteur d'activité"] == "SA25":
            labs[row["Numéro FINESS site"]].add(row["Code profession"])
    assert len(labs) == 47
    assert all(professions <= {"10", "21"} and professions for professions in labs.values())


def test_modes_of_practice(activity: list[dict[str, str]]) -> None:
    modes = {r["Code mode exercice"] for r in activity}
    assert modes == {"L", "S"}
    for row in activity:
        if row["Code profession"] == "10" and row["Code mode exercice"] == "S":
            assert row["Numéro FINESS site"], "salaried doctors work in a FINESS structure"
        if row["Code mode exercice"] == "L" and row["Code secteur d'activité"] in {
            "SA07",
            "SA08",
            "SA52",
        }:
            assert row["Numéro SIRET site"] and not row["Numéro FINESS site"]
    liberal_gp = {
        r["Identification nationale PP"]
        for r in activity
        if r["Code savoir-faire"] == "SM54" and r["Code mode exercice"] == "L"
    }
    assert 0.75 * 930 < len(liberal_gp) < 930


def test_some_liberal_ps_have_two_sites(activity: list[dict[str, str]]) -> None:
    lines: dict[str, int] = defaultdict(int)
    liberal: set[str] = set()
    for row in activity:
        lines[row["Identification nationale PP"]] += 1
        if row["Code mode exercice"] == "L":
            liberal.add(row["Identification nationale PP"])
    two = [p for p, n in lines.items() if n == 2]
    assert max(lines.values()) == 2
    assert 0.01 < len(two) / len(liberal) < 0.08
    assert set(two) <= liberal


def test_real_communes_of_ille_et_vilaine(activity: list[dict[str, str]]) -> None:
    communes = {
        (r["Libellé commune (coord. structure)"], r["Code commune (coord. structure)"])
        for r in activity
    }
    assert ("Rennes", "35238") in communes
    assert ("Saint-Malo", "35288") in communes
    assert ("Fougères", "35115") in communes
    assert ("Vitré", "35360") in communes
    assert ("Redon", "35236") in communes
    assert 20 <= len(communes) <= 40
    assert all(code.startswith("35") and len(code) == 5 for _, code in communes)
    assert {r["Code département (coord. structure)"] for r in activity} == {"35"}
    for row in activity:
        assert re.fullmatch(r"35\d{3}", row["Code postal (coord. structure)"])


def test_codes_come_from_the_nomenclatures(activity: list[dict[str, str]]) -> None:
    from parcours.annuaire import nomenclatures as nom

    for row in activity:
        assert nom.PROFESSIONS[row["Code profession"]] == row["Libellé profession"]
        assert nom.MODES_EXERCICE[row["Code mode exercice"]] == row["Libellé mode exercice"]
        assert nom.CIVILITES[row["Code civilité"]] == row["Libellé civilité"]
        assert (
            nom.SECTEURS_ACTIVITE[row["Code secteur d'activité"]]
            == (row["Libellé secteur d'activité"])
        )
        if row["Code savoir-faire"]:
            assert nom.SAVOIR_FAIRE[row["Code savoir-faire"]] == row["Libellé savoir-faire"]
        if row["Code civilité d'exercice"]:
            assert (
                nom.CIVILITES_EXERCICE[row["Code civilité d'exercice"]]
                == row["Libellé civilité d'exercice"]
            )


# -- identifiers --------------------------------------------------------------------------------


def test_every_identifier_is_valid(activity: list[dict[str, str]]) -> None:
    rpps_count = adeli_count = 0
    for row in activity:
        kind, ident, idnat = (
            row["Type d'identifiant PP"],
            row["Identifiant PP"],
            row["Identification nationale PP"],
        )
        parsed = IdNatPS.parse(idnat)
        assert parsed.value == kind + ident
        if kind == "8":
            assert RPPS.parse(ident) == parsed.rpps
            rpps_count += 1
        else:
            assert kind == "0"
            assert ADELI.parse(ident) == parsed.adeli
            adeli_count += 1
        if row["Numéro FINESS site"]:
            FINESS.parse(row["Numéro FINESS site"])
            FINESS.parse(row["Numéro FINESS établissement juridique"])
        if row["Numéro SIRET site"]:
            siret = SIRET.parse(row["Numéro SIRET site"])
            assert siret.siren == row["Numéro SIREN site"]
        IdNatStruct.parse(row["Ancien identifiant de la structure"])
    assert adeli_count < 0.02 * rpps_count  # RPPS for (nearly) everyone


def test_one_identity_per_identifier(activity: list[dict[str, str]]) -> None:
    people: dict[str, tuple[str, str, str]] = {}
    for row in activity:
        who = (row["Nom d'exercice"], row["Prénom d'exercice"], row["Code profession"])
        assert people.setdefault(row["Identification nationale PP"], who) == who
    structures: dict[str, str] = {}
    for row in activity:
        key = row["Identifiant technique de la structure"]
        assert structures.setdefault(key, row["Raison sociale site"]) == row["Raison sociale site"]


# -- MSSanté ----------------------------------------------------------------------------------


def test_mailboxes(mssante: list[dict[str, str]], activity: list[dict[str, str]]) -> None:
    known = {r["Identification nationale PP"] for r in activity}
    known_structures = {_idnat_struct(r) for r in activity}
    kinds = {r["Type de BAL"] for r in mssante}
    assert kinds == {"PER", "ORG"}
    for row in mssante:
        address = row["Adresse BAL"]
        assert re.fullmatch(r"[a-z0-9.-]+@[a-z0-9.-]+\.mssante\.fr", address), address
        if row["Type de BAL"] == "PER":
            assert IdNatPS.parse(row["Identification nationale PP"]).value in known
            assert (
                row["Type Identifiant PP"] + row["Identifiant PP"]
                == (row["Identification nationale PP"])
            )
        else:
            assert not row["Identification nationale PP"] and not row["Identifiant PP"]
            assert row["Identification Structure"]
        if row["Identification Structure"]:
            structure = IdNatStruct.parse(row["Identification Structure"])
            assert structure.kind in ("FINESS", "SIRET")
            assert row["Type identifiant structure"] == structure.value[0]
            assert structure.value in known_structures


def test_mailbox_rates(mssante: list[dict[str, str]], activity: list[dict[str, str]]) -> None:
    with_box = {r["Identification nationale PP"] for r in mssante if r["Type de BAL"] == "PER"}
    liberal_doctors = {
        r["Identification nationale PP"]
        for r in activity
        if r["Code profession"] == "10" and r["Code mode exercice"] == "L"
    }
    rate = len(liberal_doctors & with_box) / len(liberal_doctors)
    assert 0.58 < rate < 0.72
    org_structures = {r["Identification Structure"] for r in mssante if r["Type de BAL"] == "ORG"}
    sectors = {_idnat_struct(r): r["Code secteur d'activité"] for r in activity}
    equipped = defaultdict(int)
    for structure in org_structures:
        equipped[sectors[structure]] += 1
    assert sum(equipped[s] for s in ES_SECTORS) == round(61 * 0.67)
    assert equipped["SA17"] == round(143 * 0.34)
    assert equipped["SA25"] == round(47 * 0.63)
    assert 1 <= equipped["SA52"] <= 10


def test_mailbox_domains(mssante: list[dict[str, str]]) -> None:
    domains = {r["Adresse BAL"].split("@")[1] for r in mssante}
    for domain in (
        "medecin.mssante.fr",
        "pharmacien.mssante.fr",
        "infirmier.mssante.fr",
        "chu-rennes.mssante.fr",
        "ch-stmalo.mssante.fr",
    ):
        assert domain in domains
    for row in mssante:
        if row["Adresse BAL"].endswith("@chu-rennes.mssante.fr") and row["Type de BAL"] == "PER":
            assert row["Code Profession"] in ("10", "21")
            assert row["Identification Structure"].startswith("1")


def test_duplicate_lines_and_homonyms(mssante: list[dict[str, str]]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for row in mssante:
        counts[row["Adresse BAL"]] += 1
    duplicated = [a for a, n in counts.items() if n > 1]
    assert 0.002 < len(duplicated) / len(counts) < 0.01
    assert any(re.search(r"\d@", address) for address in counts)  # homonym suffix


# -- reproducibility, speed, manifest ---------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    started = time.perf_counter()
    first = generate_territory(tmp_path / "a", seed=1, generated_at=MOMENT)
    elapsed = time.perf_counter() - started
    second = generate_territory(tmp_path / "b", seed=1, generated_at=MOMENT)
    other = generate_territory(tmp_path / "c", seed=2, generated_at=MOMENT)
    for one, two, three in zip(first.files, second.files, other.files, strict=True):
        assert one.read_bytes() == two.read_bytes()
        assert one.read_bytes() != three.read_bytes()
    assert elapsed < 5.0


def test_default_generated_at_is_reproducible(tmp_path: Path) -> None:
    one = generate_territory(tmp_path / "a", seed=3)
    two = generate_territory(tmp_path / "b", seed=3)
    assert one.activity_path.name == two.activity_file.name
    assert one.manifest_path.read_bytes() == two.manifest_path.read_bytes()


def test_manifest(territory: TerritoryManifest, activity: list[dict[str, str]]) -> None:
    document = json.loads(territory.manifest_path.read_text(encoding="utf-8"))
    assert document["seed"] == 35
    assert document["department"] == {
        "code": "35",
        "label": "Ille-et-Vilaine",
        "region": "Bretagne",
    }
    assert document["generated_at"] == "2018-06-01T06:00:00+00:00"
    counts = document["counts"]
    assert counts["persons_by_profession"]["10"] == 1622
    assert counts["medecins_generalistes"] == 930
    assert counts["structures"]["pharmacies"] == 304
    assert counts["structures"]["etablissements_sante"] == 61
    assert counts["structures"]["ehpad"] == 143
    assert counts["structures"]["laboratoires"] == 47
    assert counts["activity_lines"] == len(activity)
    points = document["cpam_accueils"]
    assert len(points) == counts["cpam_accueils"] == 8
    assert sum(1 for p in points if p["commune"] == "Rennes") == 4
    assert {p["commune"] for p in points} == {"Rennes", "Saint-Malo", "Fougères", "Vitré", "Redon"}
    agents = [a for p in points for a in p["agents"]]
    assert all(re.fullmatch(r"CPAM35-A\d{3}", a) for a in agents)
    assert len(set(agents)) == len(agents) and all(p["agents"] for p in points)
    for point in points:
        assert point["name"] and point["address"] and re.fullmatch(r"35\d{3}", point["postal_code"])

    idnats = {r["Identification nationale PP"] for r in activity}
    logins = {login["role"]: login for login in document["demo_logins"]}
    assert set(logins) >= {"medecin_generaliste", "pharmacien", "infirmier", "medecin_hospitalier"}
    for login in logins.values():
        assert RPPS.parse(login["rpps"]).idnat == login["idnat_ps"]
        assert login["idnat_ps"] in idnats
    assert logins["medecin_generaliste"]["savoir_faire"] == "SM54"
    assert logins["medecin_generaliste"]["mailbox"].endswith("@medecin.mssante.fr")
    assert logins["pharmacien"]["profession"] == "21"
    assert logins["infirmier"]["profession"] == "60"
    assert logins["medecin_hospitalier"]["mode"] == "S"
    assert territory.demo_logins == document["demo_logins"]


# -- write_extract ----------------------------------------------------------------------------


def test_write_extract_format(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    written = write_extract(path, ["A", "B é"], [["1", ""], ["", "ü"]])
    assert written == 2
    assert path.read_bytes() == "A|B é|\n1||\n|ü|\n".encode()
    assert _read(path) == [["A", "B é", ""], ["1", "", ""], ["", "ü", ""]]


@pytest.mark.parametrize("row", [["a|b", "c"], ["a\nb", "c"], ["only one"]])
def test_write_extract_refuses_what_the_format_cannot_hold(tmp_path: Path, row: list[str]) -> None:
    with pytest.raises(ValueError):
        write_extract(tmp_path / "x.txt", ["A", "B"], [row])
