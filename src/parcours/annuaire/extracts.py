"""Reading the public Annuaire santé extract files exactly as ANS publishes them.

Format (shared reference ``mssante.md`` §5.4): UTF-8, ``|`` separator, one header line, every
line (header included) ends with a trailing ``|``, no quoting. Because there is no quoting, a
plain ``split('|')`` is exactly the csv module's ``QUOTE_NONE`` reading, and twice as fast on
the hot path. Columns are found **by header name** (folded: case and accents ignored), never by
position: the personal-activity file exists with 48 and with 56 columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from parcours.fhir.search import fold

ACTIVITY = "personne_activite"
MSSANTE = "mssante"

# The column headers of the current files, in order, exactly as published (mssante.md §5.4).
ACTIVITY_HEADER: tuple[str, ...] = (
    "Type d'identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Code civilité d'exercice",
    "Libellé civilité d'exercice",
    "Code civilité",
    "Libellé civilité",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Code profession",
    "Libellé profession",
    "Code catégorie professionnelle",
    "Libellé catégorie professionnelle",
    "Code type savoir-faire",
    "Libellé type savoir-faire",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Code mode exercice",
    "Libellé mode exercice",
    "Numéro SIRET site",
    "Numéro SIREN site",
    "Numéro FINESS site",
    "Numéro FINESS établissement juridique",
    "Identifiant technique de la structure",
    "Raison sociale site",
    "Enseigne commerciale site",
    "Complément destinataire (coord. structure)",
    "Complément point géographique (coord. structure)",
    "Numéro Voie (coord. structure)",
    "Indice répétition voie (coord. structure)",
    "Code type de voie (coord. structure)",
    "Libellé type de voie (coord. structure)",
    "Libellé Voie (coord. structure)",
    "Mention distribution (coord. structure)",
    "Bureau cedex (coord. structure)",
    "Code postal (coord. structure)",
    "Code commune (coord. structure)",
    "Libellé commune (coord. structure)",
    "Code pays (coord. structure)",
    "Libellé pays (coord. structure)",
    "Téléphone (coord. structure)",
    "Téléphone 2 (coord. structure)",
    "Télécopie (coord. structure)",
    "Adresse e-mail (coord. structure)",
    "Code département (coord. structure)",
    "Libellé département (coord. structure)",
    "Ancien identifiant de la structure",
    "Autorité d'enregistrement",
    "Code secteur d'activité",
    "Libellé secteur d'activité",
    "Code section tableau pharmaciens",
    "Libellé section tableau pharmaciens",
    "Code fonction",
    "Libellé fonction",
    "Code genre d'activité",
    "Libellé genre d'activité",
)
MSSANTE_HEADER: tuple[str, ...] = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    "L2COMPLEMENTLOCALISATION",
    "L3COMPLEMENTDISTRIBUTION",
    "L4NUMEROVOIE",
    "L4COMPLEMENTNUMEROVOIE",
    "NL4TYPEVOIE",
    "L4LIBELLEVOIE",
    "L5LIEUDITMENTION",
    "L6LIGNEACHEMINEMENT",
    "Code postal",
    "Département",
    "Pays",
)

# Folded header name -> field key used by the importer. Only the fields we use are mapped.
ACTIVITY_FIELDS = {
    "type d'identifiant pp": "id_type",
    "identifiant pp": "id_pp",
    "identification nationale pp": "idnat",
    "code civilite d'exercice": "civ_ex_code",
    "libelle civilite d'exercice": "civ_ex_label",
    "code civilite": "civ_code",
    "libelle civilite": "civ_label",
    "nom d'exercice": "family",
    "prenom d'exercice": "given",
    "code profession": "profession_code",
    "libelle profession": "profession_label",
    "code categorie professionnelle": "category_code",
    "libelle categorie professionnelle": "category_label",
    "code type savoir-faire": "sf_type_code",
    "libelle type savoir-faire": "sf_type_label",
    "code savoir-faire": "sf_code",
    "libelle savoir-faire": "sf_label",
    "code mode exercice": "mode_code",
    "libelle mode exercice": "mode_label",
    "numero siret site": "siret",
    "numero siren site": "siren",
    "numero finess site": "finess",
    "numero finess etablissement juridique": "finess_ej",
    "identifiant technique de la structure": "structure_key",
    "raison sociale site": "name",
    "enseigne commerciale site": "brand",
    "complement destinataire (coord. structure)": "addr_recipient",
    "complement point geographique (coord. structure)": "addr_point",
    "numero voie (coord. structure)": "addr_number",
    "indice repetition voie (coord. structure)": "addr_number_suffix",
    "code type de voie (coord. structure)": "addr_street_type_code",
    "libelle type de voie (coord. structure)": "addr_street_type",
    "libelle voie (coord. structure)": "addr_street",
    "mention distribution (coord. structure)": "addr_distribution",
    "bureau cedex (coord. structure)": "addr_cedex",
    "code postal (coord. structure)": "postal_code",
    "code commune (coord. structure)": "commune_code",
    "libelle commune (coord. structure)": "city",
    "code pays (coord. structure)": "country_code",
    "libelle pays (coord. structure)": "country",
    "telephone (coord. structure)": "phone",
    "telephone 2 (coord. structure)": "phone2",
    "telecopie (coord. structure)": "fax",
    "adresse e-mail (coord. structure)": "email",
    "code departement (coord. structure)": "department_code",
    "libelle departement (coord. structure)": "department",
    "ancien identifiant de la structure": "old_structure_id",
    "autorite d'enregistrement": "registration_authority",
    "code secteur d'activite": "sector_code",
    "libelle secteur d'activite": "sector_label",
    "code section tableau pharmaciens": "pharma_section_code",
    "libelle section tableau pharmaciens": "pharma_section_label",
    "code fonction": "role_code",
    "libelle fonction": "role_label",
    "code genre d'activite": "activity_kind_code",
    "libelle genre d'activite": "activity_kind_label",
}
ACTIVITY_REQUIRED = ("id_type", "id_pp", "idnat", "family", "given", "profession_code")

MSSANTE_FIELDS = {
    "type de bal": "bal_type",
    "adresse bal": "address",
    "type identifiant pp": "id_type",
    "identifiant pp": "id_pp",
    "identification nationale pp": "idnat",
    "type identifiant structure": "structure_id_type",
    "identification structure": "structure_id",
    "service de rattachement": "service",
    "civilite d'exercice": "civ_ex_label",
    "nom d'exercice": "family",
    "prenom d'exercice": "given",
    "categorie profession": "category_code",
    "libelle de categorie profession": "category_label",
    "code profession": "profession_code",
    "libelle profession": "profession_label",
    "code savoir-faire": "sf_code",
    "libelle savoir-faire": "sf_label",
    "dematerialisation": "dematerialisation",
    "raison sociale structure bal": "name",
    "enseigne commerciale structure bal": "brand",
    "l2complementlocalisation": "addr_point",
    "l3complementdistribution": "addr_distribution",
    "l4numerovoie": "addr_number",
    "l4complementnumerovoie": "addr_number_suffix",
    "nl4typevoie": "addr_street_type",
    "l4libellevoie": "addr_street",
    "l5lieuditmention": "addr_locality",
    "l6ligneacheminement": "addr_delivery_line",
    "code postal": "postal_code",
    "departement": "department",
    "pays": "country",
}
MSSANTE_REQUIRED = ("bal_type", "address")

_TIMESTAMP = re.compile(r"_(\d{12})(?:\.\w+)?$")


def write_extract(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write an ANS extract: UTF-8, ``|`` separated, every line (header too) ending with ``|``.

    The format has no quoting, so a value containing ``|`` or a line break would silently shift
    columns for every reader; such values are refused here instead. Returns the number of data
    lines written.
    """
    width = len(header)
    count = 0

    def render(values: Sequence[str], line_no: int) -> str:
        if len(values) != width:
            raise ValueError(f"ligne {line_no} : {len(values)} champs au lieu de {width}")
        for value in values:
            if "|" in value or "\n" in value or "\r" in value:
                raise ValueError(f"ligne {line_no} : valeur interdite dans ce format : {value!r}")
        return "|".join(values) + "|\n"

    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(render(list(header), 1))
        for count, row in enumerate(rows, start=1):
            fh.write(render(row, count + 1))
    return count


class ExtractError(ValueError):
    """The file is not a readable extract; nothing of it is imported."""


@dataclass(frozen=True)
class ExtractLayout:
    kind: str
    header: list[str]
    index: dict[str, int]  # field key -> column position

    @property
    def width(self) -> int:
        return len(self.header)


def generated_at_from_name(path: Path) -> datetime | None:
    """ANS stamps the generation time in the name: ``…_AAAAMMJJhhmm.txt``."""
    match = _TIMESTAMP.search(path.stem + path.suffix)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%d%H%M").replace(tzinfo=UTC)


def _split(line: str) -> list[str]:
    fields = line.rstrip("\r\n").split("|")
    if fields and fields[-1] == "":
        fields.pop()  # the trailing separator every line carries
    return fields


def detect_layout(header_line: str, path: Path) -> ExtractLayout:
    header = _split(header_line.lstrip("\ufeff"))
    folded = [fold(h) for h in header]
    candidates = (
        (ACTIVITY, ACTIVITY_FIELDS, ACTIVITY_REQUIRED),
        (MSSANTE, MSSANTE_FIELDS, MSSANTE_REQUIRED),
    )
    for kind, fields, required in candidates:
        index = {fields[h]: i for i, h in enumerate(folded) if h in fields}
        if all(r in index for r in required):
            return ExtractLayout(kind, header, index)
    raise ExtractError(
        f"{path.name} : en-tête non reconnu (ni PS_LibreAcces_Personne_activite ni "
        f"Extraction_Correspondance_MSSante). Colonnes lues : {', '.join(header[:8])}…"
    )


def read_extract_frame(
    path: Path, progress: Callable[[int], None] | None = None
) -> tuple[ExtractLayout, pl.DataFrame]:
    """Read a whole extract into a column frame: ``line_no`` and one stripped text column per
    field key the layout maps (columns an older variant lacks are empty strings).

    A line whose field count is not the header's means the file is truncated or not in the ANS
    format: the whole import stops with the line number rather than importing half a file.
    Checked, split and stripped in native code over the whole file (polars): the national files
    have ~2 M lines and the former row-by-row reader was the import's first cost.
    Blank lines are skipped and keep the numbering of the lines that follow.
    """
    data = path.read_bytes()
    end = data.find(b"\n")
    first = data if end < 0 else data[: end + 1]
    try:
        layout = detect_layout(first.decode("utf-8"), path)
    except UnicodeDecodeError:
        raise ExtractError(f"{path.name} : l'en-tête n'est pas en UTF-8.") from None
    try:
        text = data[len(first) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, len(first) + exc.start) + 1
        raise ExtractError(f"{path.name}, ligne {line_no} : octets non UTF-8.") from None
    width = layout.width
    raw = pl.col("raw")
    lines = (
        pl.Series("raw", [text])
        .str.split("\n")
        .explode()
        .to_frame()
        .with_row_index("line_no", offset=2)
        .with_columns(raw.str.strip_chars_end("\r\n"))
        .filter(raw.str.strip_chars() != "")
    )
    separators = raw.str.count_matches("|", literal=True)
    # split('|') yields separators + 1 fields, the trailing one empty when the line ends with
    # the format's closing '|' (dropped).
    fields = pl.when(raw.str.ends_with("|")).then(separators).otherwise(separators + 1)
    bad = lines.select("line_no", fields.alias("fields")).filter(pl.col("fields") != width)
    if bad.height:
        line_no, count = bad.row(0)
        raise ExtractError(
            f"{path.name}, ligne {line_no} : {count} champs au lieu de {width} "
            "(fichier tronqué ou séparateur « | » dans une valeur ?)."
        )
    if progress:
        progress(len(data))
    split = lines.select("line_no", raw.str.split_exact("|", width).alias("f"))
    fields_by_key = ACTIVITY_FIELDS if layout.kind == ACTIVITY else MSSANTE_FIELDS
    columns = [
        (
            pl.col("f").struct.field(f"field_{layout.index[key]}").str.strip_chars()
            if key in layout.index
            else pl.lit("")
        ).alias(key)
        for key in dict.fromkeys(fields_by_key.values())
    ]
    return layout, split.select("line_no", *columns)
