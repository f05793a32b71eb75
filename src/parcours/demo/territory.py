"""A synthetic Ille-et-Vilaine, written as the real public directory extracts.

Why files and not database rows: the demo must exercise the *same* path as production. ANS
publishes the RPPS personal-activity extract and the MSSanté mailbox extract as ``|``-separated
text files; the project's importer reads those. Generating the department as such files means
the demo, the importer and its tests all run on one format, and a real extract can replace the
synthetic one without touching anything else.

What is generated (seed document 001, DMP deployment committee, Ille-et-Vilaine 2018):
1,622 médecins of whom 930 généralistes, 304 pharmacies, 1,042 infirmiers, 1,043
masseurs-kinésithérapeutes, 592 chirurgiens-dentistes, 359 orthophonistes, 55 orthoptistes,
47 laboratories, 61 établissements de santé, 143 EHPAD, and the 8 CPAM accueil points (4 in
Rennes, Saint-Malo, Fougères, Vitré, Redon: in the manifest only, they are not in RPPS). Person
counts are *distinct persons*; a few % of liberal PS work on two sites and have two lines.

Reproducibility: everything is drawn from ``random.Random(seed)`` and a Faker ``fr_FR``
instance seeded with the same seed, in a fixed order, so one seed gives byte-identical files
for a given Faker version. ``generated_at`` defaults to a fixed instant for the same reason
(pass ``datetime.now(UTC)`` for a "fresh" extract).

Formats follow the shared reference ``mssante.md`` §5.4: UTF-8, ``|`` separator, one header
line, every line (header included) ending with ``|``, no quoting. Codes and labels of
professions, savoir-faire, civilités, modes, secteurs, fonctions and genres d'activité come from
:mod:`parcours.annuaire.nomenclatures`. Where the reference names a column but not its value
conventions, the choice made here is [synthetic] and easy to change:

* ``Identifiant technique de la structure``: ``F`` + FINESS, or ``S`` + SIRET for cabinets;
  ``Ancien identifiant de la structure``: the IDNST (``1`` + FINESS / ``3`` + SIRET);
* ``Code pays``/``Libellé pays``: ``99100``/``France``; ``Autorité d'enregistrement``:
  ``CNOM/CNOM/CNOM``-style, per profession; CNOP section labels are local (TRE_R06 is not in
  the nomenclatures module);
* MSSanté: ``Type identifiant structure`` is the IDNST type digit and ``Identification
  Structure`` the IDNST; ``Civilité d'exercice`` carries the label; ``Dématérialisation`` is
  ``O``/``N``; ``Département`` the code; ``NL4TYPEVOIE`` the street-type label.

Identifiers are drawn with :mod:`parcours.identity` generators (RPPS ``10…``, a few ADELI for
orthophonistes/orthoptistes, FINESS ``35…``, SIRET with La Poste-safe SIRENs), so every number
in the files passes the project's own validators.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, Final, TypeVar

from faker import Faker

from parcours.annuaire import nomenclatures as nom
from parcours.annuaire.extracts import ACTIVITY_HEADER, MSSANTE_HEADER, write_extract
from parcours.identity import ADELI, FINESS, RPPS, SIRET

T = TypeVar("T")

DEPARTMENT_CODE: Final = "35"
DEPARTMENT_LABEL: Final = "Ille-et-Vilaine"
REGION_LABEL: Final = "Bretagne"
#: Fixed default generation instant: keeps the default output reproducible byte for byte.
DEFAULT_GENERATED_AT: Final = datetime(2018, 6, 1, 6, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------
# Figures of the seed document (distinct persons / structures)
# ------------------------------------------------------------------------------------------

PROFESSION_COUNTS: Final[dict[str, int]] = {
    "10": 1622,  # médecins
    "60": 1042,  # infirmiers
    "70": 1043,  # masseurs-kinésithérapeutes
    "40": 592,  # chirurgiens-dentistes
    "91": 359,  # orthophonistes
    "92": 55,  # orthoptistes
}
GENERALISTES: Final = 930
PHARMACIES: Final = 304
LABORATOIRES: Final = 47
ETABLISSEMENTS_SANTE: Final = 61
EHPAD: Final = 143
CPAM_ACCUEILS: Final = 8

# ------------------------------------------------------------------------------------------
# Communes (COG code, postal codes, population ~2018 for weighting)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Commune:
    """A real commune of Ille-et-Vilaine: INSEE code (COG), main postal codes, population.

    Codes were recalled from the COG; their numbering follows the communes' alphabetical order
    as the COG does, which was used as a cross-check. Populations are rounded 2018 orders of
    magnitude, used only as weights.
    """

    name: str
    insee: str
    postal_codes: tuple[str, ...]
    population: int

    @property
    def postal_code(self) -> str:
        return self.postal_codes[0]


COMMUNES: Final[tuple[Commune, ...]] = (
    Commune("Rennes", "35238", ("35000", "35200", "35700"), 216_000),
    Commune("Saint-Malo", "35288", ("35400",), 46_000),
    Commune("Fougères", "35115", ("35300",), 20_000),
    Commune("Vitré", "35360", ("35500",), 18_000),
    Commune("Bruz", "35047", ("35170",), 18_000),
    Commune("Cesson-Sévigné", "35051", ("35510",), 17_500),
    Commune("Saint-Jacques-de-la-Lande", "35281", ("35136",), 13_000),
    Commune("Betton", "35024", ("35830",), 11_500),
    Commune("Pacé", "35210", ("35740",), 11_500),
    Commune("Dinard", "35093", ("35800",), 10_500),
    Commune("Chantepie", "35055", ("35135",), 10_500),
    Commune("Châteaugiron", "35069", ("35410",), 10_000),
    Commune("Redon", "35236", ("35600",), 9_500),
    Commune("Saint-Grégoire", "35278", ("35760",), 9_500),
    Commune("Le Rheu", "35240", ("35650",), 9_000),
    Commune("Guichen", "35126", ("35580",), 8_500),
    Commune("Thorigné-Fouillard", "35334", ("35235",), 8_500),
    Commune("Janzé", "35136", ("35150",), 8_000),
    Commune("Vern-sur-Seiche", "35352", ("35770",), 8_000),
    Commune("Liffré", "35152", ("35340",), 7_500),
    Commune("Bain-de-Bretagne", "35012", ("35470",), 7_500),
    Commune("Mordelles", "35196", ("35310",), 7_500),
    Commune("Montfort-sur-Meu", "35188", ("35160",), 6_800),
    Commune("Noyal-Châtillon-sur-Seiche", "35206", ("35230",), 6_500),
    Commune("Melesse", "35173", ("35520",), 6_500),
    Commune("Combourg", "35085", ("35270",), 6_000),
    Commune("Dol-de-Bretagne", "35095", ("35120",), 5_500),
    Commune("Cancale", "35049", ("35260",), 5_300),
    Commune("Saint-Méen-le-Grand", "35297", ("35290",), 4_700),
    Commune("La Guerche-de-Bretagne", "35125", ("35130",), 4_300),
    Commune("Retiers", "35239", ("35240",), 4_200),
    Commune("Saint-Aubin-du-Cormier", "35253", ("35140",), 3_900),
    Commune("Grand-Fougeray", "35124", ("35390",), 2_400),
)
_COMMUNE_BY_NAME: Final[dict[str, Commune]] = {c.name: c for c in COMMUNES}

# ------------------------------------------------------------------------------------------
# Value conventions the reference leaves open  [synthetic]
# ------------------------------------------------------------------------------------------

#: Street types: (code, label, weight). Codes follow the usual postal abbreviations.
_STREET_TYPES: Final = (
    ("R", "Rue", 50),
    ("AV", "Avenue", 14),
    ("BD", "Boulevard", 8),
    ("PL", "Place", 7),
    ("ALL", "Allée", 6),
    ("IMP", "Impasse", 4),
    ("CHE", "Chemin", 4),
    ("RTE", "Route", 4),
    ("QUAI", "Quai", 2),
    ("SQ", "Square", 1),
)
_CLASSIC_STREETS: Final = (
    "de la Gare",
    "Jean Jaurès",
    "Victor Hugo",
    "de Paris",
    "du Général de Gaulle",
    "de Brest",
    "Saint-Hélier",
    "de Nantes",
    "de la République",
    "Pasteur",
    "du Maréchal Leclerc",
    "des Lilas",
    "de Fougères",
    "de Saint-Malo",
    "Anatole France",
    "Gambetta",
    "de la Mairie",
    "de l'Église",
    "du Stade",
    "des Écoles",
    "de Lorient",
    "de Vern",
    "Jules Ferry",
    "du Docteur Roux",
)
#: Breton surnames mixed into Faker's generic French ones (about a quarter of people).
_BRETON_SURNAMES: Final = (
    "Le Gall",
    "Le Goff",
    "Le Roux",
    "Le Bihan",
    "Le Floch",
    "Guillou",
    "Le Corre",
    "Tanguy",
    "Le Bris",
    "Le Guen",
    "Le Meur",
    "Kerbrat",
    "Le Moal",
    "Morvan",
    "Jégou",
    "Le Borgne",
    "Riou",
    "Quéré",
    "Hamon",
    "Le Cam",
    "Gicquel",
    "Briand",
    "Rouxel",
    "Lebreton",
    "Le Bouquin",
    "Corlay",
    "Le Hir",
    "Prigent",
    "Kerjean",
    "Le Du",
)
#: Registration authority per profession [synthetic: the reference gives the column only].
_AUTHORITIES: Final[dict[str, str]] = {
    "10": "CNOM/CNOM/CNOM",
    "21": "CNOP/CNOP/CNOP",
    "40": "CNOCD/CNOCD/CNOCD",
    "60": "ONI/ONI/ONI",
    "70": "CNOMK/CNOMK/CNOMK",
    "91": "ARS/ARS/ARS",
    "92": "ARS/ARS/ARS",
}
#: CNOP sections (TRE_R06, not in the nomenclatures module): only the four used here.
_PHARMA_SECTIONS: Final[dict[str, str]] = {
    "A": "Pharmaciens titulaires d'officine",
    "D": "Pharmaciens adjoints d'officine et autres exercices",
    "G": "Pharmaciens biologistes",
    "H": "Pharmaciens des établissements de santé",
}
#: National per-profession MSSanté domains (PER mailboxes of liberal PS).
_PROFESSION_DOMAINS: Final[dict[str, str]] = {
    "10": "medecin.mssante.fr",
    "21": "pharmacien.mssante.fr",
    "40": "chirurgien-dentiste.mssante.fr",
    "60": "infirmier.mssante.fr",
    "70": "masseur-kinesitherapeute.mssante.fr",
    "91": "orthophoniste.mssante.fr",
    "92": "orthoptiste.mssante.fr",
}
#: Share of women per profession (2018 orders of magnitude).
_FEMALE_SHARE: Final[dict[str, float]] = {
    "10": 0.46,
    "21": 0.66,
    "40": 0.45,
    "60": 0.86,
    "70": 0.50,
    "91": 0.96,
    "92": 0.88,
}
#: Specialties of non-GP doctors (TRE_R38 code, weight, share practising in liberal mode).
_SPECIALTIES: Final = (
    ("SM04", 40, 0.55),  # cardiologie
    ("SM02", 45, 0.35),  # anesthésie-réanimation
    ("SM44", 35, 0.60),  # radio-diagnostic
    ("SM38", 30, 0.85),  # ophtalmologie
    ("SM42", 45, 0.35),  # psychiatrie
    ("SM40", 30, 0.40),  # pédiatrie
    ("SM20", 30, 0.45),  # gynécologie-obstétrique
    ("SM15", 18, 0.90),  # dermatologie
    ("SM24", 20, 0.55),  # gastro-entérologie
    ("SM41", 18, 0.40),  # pneumologie
    ("SM39", 15, 0.70),  # ORL
    ("SM48", 14, 0.65),  # rhumatologie
    ("SM32", 15, 0.35),  # neurologie
    ("SM08", 22, 0.60),  # chirurgie orthopédique
    ("SM14", 18, 0.45),  # chirurgie viscérale
    ("SM12", 10, 0.60),  # urologie
    ("SM27", 15, 0.15),  # médecine interne
    ("SM18", 20, 0.05),  # gériatrie
    ("SM16", 8, 0.50),  # endocrinologie
    ("SM30", 10, 0.30),  # néphrologie
    ("SM21", 8, 0.10),  # hématologie
    ("SM59", 35, 0.05),  # médecine d'urgence
    ("SM01", 8, 0.40),  # anatomie et cytologie pathologiques
    ("SM28", 5, 0.30),  # médecine nucléaire
    ("SM29", 10, 0.20),  # médecine physique et de réadaptation
    ("SM36", 10, 0.20),  # oncologie médicale
    ("SM45", 6, 0.30),  # radiothérapie
    ("SM19", 8, 0.90),  # gynécologie médicale
    ("SM25", 6, 0.05),  # médecine du travail
    ("SM49", 5, 0.00),  # santé publique
    ("SM58", 5, 0.05),  # maladies infectieuses
    ("SM31", 5, 0.30),  # neurochirurgie
    ("SM10", 5, 0.70),  # chirurgie plastique
    ("SM11", 4, 0.30),  # chirurgie thoracique et cardio-vasculaire
    ("SM13", 4, 0.40),  # chirurgie vasculaire
    ("SM09", 3, 0.10),  # chirurgie infantile
    ("SM50", 4, 0.80),  # stomatologie
)
_BIOLOGY_SPECIALTIES: Final = ("SM03", "SM63", "SM65", "SM66")

_ES_SECTORS: Final = ("SA01", "SA03", "SA04", "SA34", "SA36")

# Named establishments: (name, commune, sector, mssante domain stem, staffing weight, EJ group).
_NAMED_ES: Final = (
    ("CHU de Rennes - Hôpital Pontchaillou", "Rennes", "SA01", "chu-rennes", 30.0, "chu"),
    ("CHU de Rennes - Hôpital Sud", "Rennes", "SA01", "chu-rennes", 14.0, "chu"),
    ("Centre Eugène Marquis", "Rennes", "SA36", "eugene-marquis", 6.0, ""),
    ("Centre hospitalier Guillaume Régnier", "Rennes", "SA01", "ch-guillaumeregnier", 8.0, ""),
    ("Centre hospitalier de Saint-Malo", "Saint-Malo", "SA01", "ch-stmalo", 12.0, ""),
    ("Centre hospitalier de Fougères", "Fougères", "SA01", "ch-fougeres", 6.0, ""),
    ("Centre hospitalier de Vitré", "Vitré", "SA01", "ch-vitre", 5.0, ""),
    ("Centre hospitalier de Redon", "Redon", "SA01", "ch-redon", 5.0, ""),
    ("Centre hospitalier de Janzé", "Janzé", "SA01", "ch-janze", 2.0, ""),
    ("Centre hospitalier de Montfort-sur-Meu", "Montfort-sur-Meu", "SA01", "ch-montfort", 2.0, ""),
    ("Centre hospitalier de Grand-Fougeray", "Grand-Fougeray", "SA01", "ch-grandfougeray", 1.0, ""),
    ("Hôpital de Saint-Méen-le-Grand", "Saint-Méen-le-Grand", "SA01", "hopital-stmeen", 1.0, ""),
    (
        "Centre hospitalier de La Guerche-de-Bretagne",
        "La Guerche-de-Bretagne",
        "SA01",
        "ch-laguerche",
        1.0,
        "",
    ),
    ("Hôpital de Bain-de-Bretagne", "Bain-de-Bretagne", "SA01", "hopital-baindebretagne", 1.0, ""),
    (
        "Centre hospitalier privé Saint-Grégoire",
        "Saint-Grégoire",
        "SA04",
        "chp-saintgregoire",
        8.0,
        "",
    ),
    ("Polyclinique Saint-Laurent", "Rennes", "SA04", "polyclinique-saintlaurent", 4.0, ""),
    ("Clinique de la Sagesse", "Rennes", "SA04", "clinique-sagesse", 4.0, ""),
    ("Hôpital privé Sévigné", "Cesson-Sévigné", "SA04", "hp-sevigne", 4.0, ""),
    ("Clinique de la Côte d'Émeraude", "Saint-Malo", "SA04", "clinique-cotedemeraude", 3.0, ""),
    ("Pôle Saint-Hélier", "Rennes", "SA03", "pole-sainthelier", 3.0, ""),
    ("Centre de dialyse de Rennes", "Rennes", "SA34", "dialyse-rennes", 1.0, ""),
)
# (name pattern, sector, MSSanté domain stem pattern)
_GENERATED_ES_PATTERNS: Final = (
    ("Centre de soins de suite et de réadaptation de {commune}", "SA03", "ssr-{commune}"),
    ("Clinique {saint}", "SA04", "clinique-{saint}"),
    ("Unité de dialyse de {commune}", "SA34", "dialyse-{commune}"),
    ("Centre de rééducation fonctionnelle de {commune}", "SA03", "crf-{commune}"),
    ("Clinique psychiatrique {saint}", "SA04", "cp-{saint}"),
    ("Maison de convalescence {saint}", "SA04", "mc-{saint}"),
    ("Hôpital local de {commune}", "SA01", "hl-{commune}"),
)
_SAINTS: Final = (
    "Saint-Yves",
    "Sainte-Anne",
    "Saint-Vincent",
    "Les Rochers",
    "La Thébaudais",
    "Saint-Joseph",
    "La Brètesche",
    "Le Moulin",
    "Les Chênes",
    "Bel Air",
    "Les Peupliers",
    "Sainte-Marie",
)
_EHPAD_NAMES: Final = (
    "Les Jardins",
    "Les Tilleuls",
    "Les Glycines",
    "Le Clos",
    "La Roseraie",
    "Les Hortensias",
    "Saint-Joseph",
    "Sainte-Anne",
    "Les Mimosas",
    "La Providence",
    "Les Chênes",
    "Le Bois Joli",
    "Les Champs Bleus",
    "La Bonne Fontaine",
    "L'Ermitage",
    "Les Ajoncs",
    "Les Genêts",
    "Ker Maria",
    "Ker Avel",
    "Les Magnolias",
)
_PHARMACY_NAMES: Final = (
    "du Centre",
    "de la Gare",
    "de la Mairie",
    "des Halles",
    "du Marché",
    "de l'Église",
    "de la Poste",
    "du Port",
    "des Lices",
    "Saint-Hélier",
    "du Thabor",
    "de la Place",
    "des Remparts",
    "du Bourg",
    "de la Vilaine",
    "du Parc",
)
_LAB_GROUPS: Final = (
    ("Biolab Vilaine", "biolab-vilaine"),
    ("Laboratoire Armor Biologie", "armor-biologie"),
    ("Biologie Médicale Haute-Bretagne", "bm-hautebretagne"),
    ("Bio Émeraude", "bio-emeraude"),
    ("Labo Brocéliande", "labo-broceliande"),
    ("Bio Marches de Bretagne", "bio-marches"),
    ("Biopole Rennes Métropole", "biopole-rennes"),
    ("LBM du Pays de Redon", "lbm-redon"),
)
_ES_SERVICES: Final = (
    ("urgences", "Urgences"),
    ("admissions", "Bureau des admissions"),
    ("secretariat.medical", "Secrétariat médical"),
    ("imagerie", "Imagerie médicale"),
    ("pharmacie", "Pharmacie à usage intérieur"),
    ("cardiologie", "Cardiologie"),
    ("pneumologie", "Pneumologie"),
    ("pediatrie", "Pédiatrie"),
    ("maternite", "Maternité"),
    ("geriatrie", "Gériatrie"),
    ("chirurgie", "Chirurgie"),
    ("oncologie", "Oncologie"),
    ("psychiatrie", "Psychiatrie"),
    ("dim", "Département d'information médicale"),
    ("ssr", "Soins de suite et de réadaptation"),
    ("laboratoire", "Laboratoire"),
)
_CPAM_SITES: Final = (
    ("Accueil CPAM Rennes Centre", "Rennes"),
    ("Accueil CPAM Rennes Nord", "Rennes"),
    ("Accueil CPAM Rennes Sud", "Rennes"),
    ("Accueil CPAM Rennes Ouest", "Rennes"),
    ("Accueil CPAM Saint-Malo", "Saint-Malo"),
    ("Accueil CPAM Fougères", "Fougères"),
    ("Accueil CPAM Vitré", "Vitré"),
    ("Accueil CPAM Redon", "Redon"),
)

# ------------------------------------------------------------------------------------------
# Model of the generated territory
# ------------------------------------------------------------------------------------------


@dataclass
class _Address:
    number: str
    repetition: str
    type_code: str
    type_label: str
    street: str
    commune: Commune
    postal_code: str
    complement: str = ""
    distribution: str = ""
    cedex: str = ""
    phone: str = ""
    phone2: str = ""
    fax: str = ""
    email: str = ""

    @property
    def delivery_line(self) -> str:
        return f"{self.postal_code} {_ascii_upper(self.commune.name)}"


@dataclass
class _Structure:
    category: str  # ES, EHPAD, LABO, PHARMACIE, CABINET, MSP, CENTRE_SANTE
    name: str
    brand: str
    sector: str
    address: _Address
    finess: FINESS | None = None
    finess_ej: FINESS | None = None
    siret: SIRET | None = None
    domain: str | None = None  # MSSanté domain when the structure is equipped
    weight: float = 1.0
    slug: str = ""

    @property
    def technical_id(self) -> str:
        """[synthetic] ``F`` + FINESS for FINESS structures, ``S`` + SIRET otherwise."""
        if self.finess is not None:
            return "F" + self.finess.value
        assert self.siret is not None
        return "S" + self.siret.value

    @property
    def idnat_struct(self) -> str:
        if self.finess is not None:
            return self.finess.idnat
        assert self.siret is not None
        return self.siret.idnat

    @property
    def idnat_type(self) -> str:
        return self.idnat_struct[0]


@dataclass
class _Activity:
    structure: _Structure
    mode: str
    fonction: str
    section: str = ""


@dataclass
class _Person:
    profession: str
    family: str
    given: str
    civilite: str
    civ_exercice: str
    rpps: RPPS | None = None
    adeli: ADELI | None = None
    sf_code: str = ""
    sf_type: str = ""
    activities: list[_Activity] = field(default_factory=list)
    mailbox: str | None = None
    service: str = ""

    @property
    def id_type(self) -> str:
        return "8" if self.rpps is not None else "0"

    @property
    def identifier(self) -> str:
        ident = self.rpps if self.rpps is not None else self.adeli
        assert ident is not None
        return ident.value

    @property
    def idnat(self) -> str:
        return self.id_type + self.identifier

    @property
    def is_liberal(self) -> bool:
        return any(a.mode == "L" for a in self.activities)


@dataclass
class TerritoryManifest:
    """What :func:`generate_territory` wrote, and the figures a caller may print or check."""

    out_dir: Path
    seed: int
    generated_at: datetime
    activity_path: Path
    mssante_path: Path
    manifest_path: Path
    counts: dict[str, Any]
    demo_logins: list[dict[str, Any]]
    cpam_accueils: list[dict[str, Any]]

    @property
    def files(self) -> tuple[Path, Path, Path]:
        """The three written files: activity extract, MSSanté extract, ``territory.json``."""
        return (self.activity_path, self.mssante_path, self.manifest_path)

    # ``*_file`` spellings, for callers that think of them as files rather than paths
    @property
    def activity_file(self) -> Path:
        return self.activity_path

    @property
    def mssante_file(self) -> Path:
        return self.mssante_path

    @property
    def manifest_file(self) -> Path:
        return self.manifest_path


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _ascii_upper(text: str) -> str:
    return _ascii(text).upper()


def _slug(text: str) -> str:
    """Lower-case ASCII, words joined by ``-``: what goes into a mailbox local part or domain."""
    out: list[str] = []
    for char in _ascii(text).lower():
        if char.isalnum():
            out.append(char)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


def _label(table: dict[str, str], code: str, table_name: str) -> str:
    """Look a code up in a nomenclature, failing loudly: a wrong code must not reach a file."""
    try:
        return table[code]
    except KeyError:
        raise KeyError(f"code {code!r} absent de la nomenclature {table_name}") from None


class _Draw:
    """Deterministic draws from one ``random.Random`` plus the seeded Faker."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker(locale="fr_FR")
        self.fake.seed_instance(seed)
        self._commune_cum = list(accumulate(c.population for c in COMMUNES))
        self._commune_sqrt_cum = list(accumulate(c.population**0.5 for c in COMMUNES))
        self.rpps_used: set[str] = set()
        self.adeli_used: set[str] = set()
        self.finess_used: set[str] = set()
        self.siren_used: set[str] = set()

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        return self.rng.choices(items, weights=weights, k=1)[0]

    def commune(self, *, spread: bool = False) -> Commune:
        """A commune weighted by population (or by its square root when ``spread``)."""
        cum = self._commune_sqrt_cum if spread else self._commune_cum
        return self.rng.choices(COMMUNES, cum_weights=cum, k=1)[0]

    def rpps(self) -> RPPS:
        while True:
            value = RPPS.generate(self.rng)
            if value.value not in self.rpps_used:
                self.rpps_used.add(value.value)
                return value

    def adeli(self, profession: str) -> ADELI:
        while True:
            value = ADELI.generate(self.rng, department=DEPARTMENT_CODE, profession=profession)
            if value.value not in self.adeli_used:
                self.adeli_used.add(value.value)
                return value

    def finess(self) -> FINESS:
        while True:
            value = FINESS.generate(self.rng, department=DEPARTMENT_CODE)
            if value.value not in self.finess_used:
                self.finess_used.add(value.value)
                return value

    def siret(self, siren: str | None = None) -> SIRET:
        if siren is not None:
            return SIRET.generate(self.rng, siren=siren)
        while True:
            value = SIRET.generate(self.rng)
            if value.siren not in self.siren_used:
                self.siren_used.add(value.siren)
                return value

    def phone(self) -> str:
        return "0299" + "".join(str(self.rng.randrange(10)) for _ in range(6))

    def surname(self) -> str:
        if self.chance(0.25):
            return self.pick(_BRETON_SURNAMES)
        return str(self.fake.last_name())

    def address(self, commune: Commune, *, big: bool = False) -> _Address:
        code, label, _ = self.weighted(_STREET_TYPES, [w for _, _, w in _STREET_TYPES])
        if self.chance(0.5):
            street = self.pick(_CLASSIC_STREETS)
        else:
            street = f"{self.fake.first_name()} {self.fake.last_name()}"
        repetition = "B" if self.chance(0.03) else ""
        address = _Address(
            number=str(self.rng.randint(1, 150)),
            repetition=repetition,
            type_code=code,
            type_label=label,
            street=street,
            commune=commune,
            postal_code=self.pick(commune.postal_codes),
            complement=self.pick(("Bâtiment A", "Résidence du Parc", "1er étage"))
            if self.chance(0.06)
            else "",
            phone=self.phone(),
        )
        if self.chance(0.35 if big else 0.15):
            address.fax = self.phone()
        if big:
            address.distribution = f"CS {self.rng.randint(10000, 99999)}"
            address.cedex = f"{commune.postal_code[:2]}0{self.rng.randint(10, 99)} " + (
                f"{_ascii_upper(commune.name)} CEDEX"
            )
            address.phone2 = self.phone()
        return address


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------


class _Territory:
    """Builds the department in a fixed order (the order *is* the reproducibility contract)."""

    def __init__(self, seed: int) -> None:
        self.draw = _Draw(seed)
        self.structures: list[_Structure] = []
        self.persons: list[_Person] = []
        self.es: list[_Structure] = []
        self.ehpad: list[_Structure] = []
        self.labs: list[_Structure] = []
        self.pharmacies: list[_Structure] = []
        self.msp: list[_Structure] = []
        self.centres: list[_Structure] = []
        self.org_boxes: list[tuple[_Structure, str, str]] = []  # structure, address, service
        self._local_parts: Counter[tuple[str, str]] = Counter()

    # -- structures ---------------------------------------------------------------------------

    def _add(self, structure: _Structure) -> _Structure:
        self.structures.append(structure)
        return structure

    def _finess_structure(
        self,
        category: str,
        name: str,
        sector: str,
        commune: Commune,
        *,
        ej: FINESS | None = None,
        big: bool = False,
        brand: str = "",
        weight: float = 1.0,
    ) -> _Structure:
        d = self.draw
        finess = d.finess()
        return self._add(
            _Structure(
                category=category,
                name=name,
                brand=brand,
                sector=sector,
                address=d.address(commune, big=big),
                finess=finess,
                finess_ej=ej if ej is not None else d.finess(),
                weight=weight,
                slug=_slug(name),
            )
        )

    def build_establishments(self) -> None:
        d = self.draw
        ej_groups: dict[str, FINESS] = {}
        for name, commune_name, sector, stem, weight, group in _NAMED_ES:
            ej = None
            if group:
                ej = ej_groups.setdefault(group, d.finess())
            es = self._finess_structure(
                "ES",
                name,
                sector,
                _COMMUNE_BY_NAME[commune_name],
                ej=ej,
                big=weight >= 3,
                weight=weight,
            )
            es.domain = f"{stem}.mssante.fr"
            self.es.append(es)
        used_names = {s.name for s in self.es}
        while len(self.es) < ETABLISSEMENTS_SANTE:
            pattern, sector, stem = d.pick(_GENERATED_ES_PATTERNS)
            commune = d.commune(spread=True)
            saint = d.pick(_SAINTS)
            name = pattern.format(commune=commune.name, saint=saint)
            if name in used_names or (sector == "SA01" and commune.name == "Rennes"):
                continue
            used_names.add(name)
            es = self._finess_structure("ES", name, sector, commune, weight=1.0)
            stem = stem.format(commune=_slug(commune.name), saint=_slug(saint))
            es.domain = f"{stem}.mssante.fr"
            self.es.append(es)
        # 67 % of establishments are equipped (ANS, 2021): the named ones first, then a draw.
        equipped = round(ETABLISSEMENTS_SANTE * 0.67)
        named = len(_NAMED_ES)
        extra = set(d.rng.sample(range(named, len(self.es)), equipped - named))
        for index, es in enumerate(self.es):
            if index >= named and index not in extra:
                es.domain = None

        used_names.clear()
        while len(self.ehpad) < EHPAD:
            commune = d.commune(spread=True)
            base = d.pick(_EHPAD_NAMES)
            name = f"EHPAD {base}" if d.chance(0.6) else f"Résidence {base}"
            name = f"{name} - {commune.name}"
            if name in used_names:
                name = f"{name} {d.surname()}"
                if name in used_names:
                    continue
            used_names.add(name)
            self.ehpad.append(self._finess_structure("EHPAD", name, "SA17", commune))
        for index in sorted(d.rng.sample(range(EHPAD), round(EHPAD * 0.34))):
            self.ehpad[index].domain = f"{self.ehpad[index].slug}.mssante.fr"

        group_ej = [d.finess() for _ in _LAB_GROUPS]
        for index in range(LABORATOIRES):
            # the first sites give every group one lab, the others join a random group
            group = index if index < len(_LAB_GROUPS) else d.rng.randrange(len(_LAB_GROUPS))
            group_name, stem = _LAB_GROUPS[group]
            commune = d.commune()
            name = f"{group_name} - site de {commune.name}"
            lab = self._finess_structure(
                "LABO", name, "SA25", commune, ej=group_ej[group], brand=group_name
            )
            lab.slug = f"{_slug(commune.name)}-{index + 1}"
            self.labs.append(lab)
            lab.domain = f"{stem}.mssante.fr"
        equipped_labs = set(d.rng.sample(range(LABORATOIRES), round(LABORATOIRES * 0.63)))
        for index, lab in enumerate(self.labs):
            if index not in equipped_labs:
                lab.domain = None

        # every listed commune has at least one officine, the rest follow population
        communes = list(COMMUNES) + [d.commune() for _ in range(PHARMACIES - len(COMMUNES))]
        for commune in communes:
            label = d.pick(_PHARMACY_NAMES) if d.chance(0.7) else d.surname()
            brand = f"Pharmacie {label}"
            legal = d.pick(("SELARL", "SELAS", "SNC", "EURL"))
            name = f"{legal} {_ascii_upper(brand)}"
            self.pharmacies.append(
                self._finess_structure("PHARMACIE", name, "SA33", commune, brand=brand)
            )

    def _cabinet(self, category: str, name: str, sector: str, commune: Commune) -> _Structure:
        d = self.draw
        siret = d.siret()
        return self._add(
            _Structure(
                category=category,
                name=name,
                brand="",
                sector=sector,
                address=d.address(commune),
                siret=siret,
                slug=_slug(name),
            )
        )

    def build_msp(self) -> None:
        """Maisons de santé: mostly outside Rennes, a few in Rennes neighbourhoods."""
        d = self.draw
        hosts = [c for c in COMMUNES if c.name != "Rennes"]
        chosen = d.rng.sample(hosts, 12)
        names = [f"Maison de santé pluriprofessionnelle de {c.name}" for c in chosen]
        places = list(chosen)
        for quarter in ("Villejean", "Le Blosne", "Maurepas"):
            names.append(f"Maison de santé pluriprofessionnelle {quarter}")
            places.append(_COMMUNE_BY_NAME["Rennes"])
        for name, commune in zip(names, places, strict=True):
            self.msp.append(self._cabinet("MSP", name, "SA52", commune))
        for index in range(4):
            commune = COMMUNES[index]
            self.centres.append(
                self._cabinet(
                    "CENTRE_SANTE", f"Centre de santé dentaire de {commune.name}", "SA05", commune
                )
            )

    # -- people -------------------------------------------------------------------------------

    def _person(self, profession: str, *, adeli_share: float = 0.0) -> _Person:
        d = self.draw
        female = d.chance(_FEMALE_SHARE[profession])
        given = str(d.fake.first_name_female() if female else d.fake.first_name_male())
        person = _Person(
            profession=profession,
            family=d.surname(),
            given=given,
            civilite="MME" if female else "M",
            civ_exercice="DR" if profession in ("10", "21", "40") else "",
        )
        if adeli_share and d.chance(adeli_share):
            person.adeli = d.adeli(profession)
        else:
            person.rpps = d.rpps()
        self.persons.append(person)
        return person

    def _weighted_structure(self, structures: Sequence[_Structure]) -> _Structure:
        return self.draw.weighted(structures, [s.weight for s in structures])

    def _salaried(
        self, person: _Person, structure: _Structure, fonction: str, section: str = ""
    ) -> None:
        person.activities.append(_Activity(structure, "S", fonction, section))

    def _fill_cabinets(
        self,
        persons: list[_Person],
        label: str,
        sizes: Sequence[tuple[int, float]],
    ) -> None:
        """Group liberal persons into cabinets of drawn sizes (individual ones are SA07)."""
        d = self.draw
        queue = list(persons)
        while queue:
            size = min(d.weighted([s for s, _ in sizes], [w for _, w in sizes]), len(queue))
            members, queue = queue[:size], queue[size:]
            commune = d.commune()
            head = members[0]
            title = "du Dr " if head.civ_exercice == "DR" else ""
            name = f"{label} {title}{head.family}"
            sector = "SA07" if size == 1 else "SA08"
            cabinet = self._cabinet("CABINET", name, sector, commune)
            if size > 1:  # group practices are known by their address
                a = cabinet.address
                cabinet.name = f"{label} {a.type_label.lower()} {a.street}"
                cabinet.slug = _slug(cabinet.name)
            for index, member in enumerate(members):
                fonction = "FON-17" if index > 0 and d.chance(0.1) else "FON-01"
                member.activities.append(_Activity(cabinet, "L", fonction))

    def _spread_over(
        self, persons: list[_Person], structures: Sequence[_Structure]
    ) -> list[tuple[_Person, _Structure]]:
        """Every structure gets one person first, the rest by weight."""
        pairs: list[tuple[_Person, _Structure]] = []
        for index, person in enumerate(persons):
            if index < len(structures):
                pairs.append((person, structures[index]))
            else:
                pairs.append((person, self._weighted_structure(structures)))
        return pairs

    def build_medecins(self) -> None:
        d = self.draw
        sf_type = "S"
        # -- généralistes
        gps = [self._person("10") for _ in range(GENERALISTES)]
        for gp in gps:
            gp.sf_code, gp.sf_type = nom.SAVOIR_FAIRE_MEDECINE_GENERALE, sf_type
        salaried_es, salaried_ehpad = gps[:60], gps[60:100]
        liberal = gps[100:]
        for gp in salaried_es:
            self._salaried(gp, self._weighted_structure(self.es), "FON-33")
            gp.service = "Médecine polyvalente"
        for gp, ehpad in zip(salaried_ehpad, d.rng.sample(self.ehpad, 40), strict=True):
            self._salaried(gp, ehpad, "FON-63")
        position = 0
        for msp in self.msp:
            size = d.rng.randint(3, 6)
            for gp in liberal[position : position + size]:
                gp.activities.append(_Activity(msp, "L", "FON-01"))
            position += size
        self._fill_cabinets(
            liberal[position:],
            "Cabinet médical",
            ((1, 35), (2, 25), (3, 20), (4, 12), (5, 8)),
        )
        # -- other specialties (biologists first: every lab needs one)
        specialists_total = PROFESSION_COUNTS["10"] - GENERALISTES
        biologists = [self._person("10") for _ in range(14)]
        for biologist, lab in zip(biologists, self.labs, strict=False):
            biologist.sf_code, biologist.sf_type = d.pick(_BIOLOGY_SPECIALTIES), sf_type
            biologist.activities.append(_Activity(lab, "L", "FON-40"))
        specialties = [s for s in _SPECIALTIES if s[0] in nom.SAVOIR_FAIRE]
        codes = [s[0] for s in specialties]
        weights = [s[1] for s in specialties]
        liberal_share = {s[0]: s[2] for s in specialties}
        private = [es for es in self.es if es.sector == "SA04"]
        chu = [es for es in self.es if es.name.startswith("CHU")]
        liberal_specialists: list[_Person] = []
        for _ in range(specialists_total - len(biologists)):
            person = self._person("10")
            person.sf_code, person.sf_type = d.weighted(codes, weights), sf_type
            if d.chance(liberal_share[person.sf_code]):
                if d.chance(0.4):
                    person.activities.append(
                        _Activity(self._weighted_structure(private), "L", "FON-01")
                    )
                else:
                    liberal_specialists.append(person)
            else:
                es = self._weighted_structure(self.es)
                self._salaried(person, es, "FON-33")
                person.service = _label(nom.SAVOIR_FAIRE, person.sf_code, "TRE_R38").removesuffix(
                    " (SM)"
                )
                if es in chu and d.chance(0.08):
                    person.civ_exercice = "PR"
        self._fill_cabinets(
            liberal_specialists, "Cabinet médical", ((1, 50), (2, 25), (3, 15), (4, 10))
        )

    def build_pharmaciens(self) -> None:
        d = self.draw
        for pharmacy in self.pharmacies:
            staff = d.weighted((1, 2, 3), (35, 45, 20))
            for index in range(staff):
                person = self._person("21")
                if index == 0 or (index == 1 and d.chance(0.4)):
                    person.activities.append(_Activity(pharmacy, "L", "FON-03", "A"))
                else:
                    self._salaried(person, pharmacy, "FON-05", "D")
        labs_with_doctor = {
            id(a.structure)
            for p in self.persons
            if p.profession == "10"
            for a in p.activities
            if a.structure.category == "LABO"
        }
        for lab in self.labs:
            has_doctor = id(lab) in labs_with_doctor
            staff = d.weighted((0, 1), (50, 50)) if has_doctor else d.weighted((1, 2), (60, 40))
            for index in range(staff):
                person = self._person("21")
                fonction = "FON-40" if index == 0 and not has_doctor else "FON-41"
                person.activities.append(_Activity(lab, "L", fonction, "G"))
        for es in self.es:
            if es.weight < 2:
                continue
            for index in range(max(1, round(es.weight / 6))):
                person = self._person("21")
                self._salaried(person, es, "FON-37" if index == 0 else "FON-33", "H")
                person.service = "Pharmacie à usage intérieur"

    def build_paramedical(self) -> None:
        d = self.draw
        # infirmiers: 580 liberal, the others salaried in EHPAD (each has one) and hospitals
        nurses = [self._person("60") for _ in range(PROFESSION_COUNTS["60"])]
        liberal, salaried = nurses[:580], nurses[580:]
        ehpad_nurses, es_nurses = salaried[:243], salaried[243:]
        for person, ehpad in self._spread_over(ehpad_nurses, self.ehpad):
            self._salaried(person, ehpad, "FON-33")
        for person, es in self._spread_over(es_nurses, self.es):
            self._salaried(person, es, "FON-33")
            if d.chance(0.06):
                code = d.pick(("SI06", "SI07"))
                if code in nom.SAVOIR_FAIRE:
                    person.sf_code, person.sf_type = code, "S"
        self._liberal_with_msp(
            liberal, "Cabinet infirmier", ((1, 20), (2, 35), (3, 25), (4, 15), (5, 5)), (2, 4)
        )
        # masseurs-kinésithérapeutes
        kines = [self._person("70") for _ in range(PROFESSION_COUNTS["70"])]
        liberal, salaried = kines[:900], kines[900:]
        for person in salaried[:100]:
            self._salaried(person, self._weighted_structure(self.es), "FON-33")
        for person in salaried[100:]:
            self._salaried(person, d.pick(self.ehpad), "FON-33")
        self._liberal_with_msp(
            liberal,
            "Cabinet de kinésithérapie",
            ((1, 30), (2, 30), (3, 20), (4, 12), (5, 8)),
            (1, 3),
        )
        # chirurgiens-dentistes
        dentists = [self._person("40") for _ in range(PROFESSION_COUNTS["40"])]
        liberal, salaried = dentists[:548], dentists[548:]
        chu = [es for es in self.es if es.name.startswith("CHU")]
        for index, person in enumerate(salaried):
            place = d.pick(chu) if index < 12 else self.centres[index % len(self.centres)]
            self._salaried(person, place, "FON-33")
        for person in dentists:
            if d.chance(0.06):
                code = "SCD01" if d.chance(0.75) else "SCD02"
                if code in nom.SAVOIR_FAIRE:
                    person.sf_code, person.sf_type = code, "S"
        self._fill_cabinets(liberal, "Cabinet dentaire", ((1, 45), (2, 35), (3, 20)))
        # orthophonistes and orthoptistes (a few still identified by ADELI)
        for profession, liberal_count, label, sizes in (
            ("91", 318, "Cabinet d'orthophonie", ((1, 70), (2, 30))),
            ("92", 38, "Cabinet d'orthoptie", ((1, 85), (2, 15))),
        ):
            people = [
                self._person(profession, adeli_share=0.05)
                for _ in range(PROFESSION_COUNTS[profession])
            ]
            for person in people[liberal_count:]:
                self._salaried(person, self._weighted_structure(self.es), "FON-33")
            self._fill_cabinets(people[:liberal_count], label, sizes)

    def _liberal_with_msp(
        self,
        persons: list[_Person],
        label: str,
        sizes: Sequence[tuple[int, float]],
        per_msp: tuple[int, int],
    ) -> None:
        d = self.draw
        position = 0
        for msp in self.msp:
            size = d.rng.randint(*per_msp)
            for person in persons[position : position + size]:
                person.activities.append(_Activity(msp, "L", "FON-01"))
            position += size
        self._fill_cabinets(persons[position:], label, sizes)

    def add_second_sites(self) -> None:
        """A few % of liberal PS in cabinets also practise on a secondary site: another
        establishment of the same company (same SIREN, new NIC) in another commune."""
        d = self.draw
        for person in self.persons:
            first = person.activities[0]
            if first.mode != "L" or first.structure.category != "CABINET":
                continue
            if not d.chance(0.035):
                continue
            primary = first.structure
            assert primary.siret is not None
            commune = d.commune(spread=True)
            secondary = self._add(
                _Structure(
                    category="CABINET",
                    name=f"{primary.name} - site de {commune.name}",
                    brand="",
                    sector="SA07",
                    address=d.address(commune),
                    siret=d.siret(siren=primary.siret.siren),
                    slug=_slug(f"{primary.name} {commune.name}"),
                )
            )
            if any(s.siret == secondary.siret for s in self.structures[:-1]):
                self.structures.pop()
                continue
            person.activities.append(_Activity(secondary, "L", first.fonction))

    # -- MSSanté ------------------------------------------------------------------------------

    def _address_for(self, local: str, domain: str) -> str:
        """``local@domain``, homonyms disambiguated with a numeric suffix (2, 3, …)."""
        local = local.strip(".-") or "bal"
        self._local_parts[(local, domain)] += 1
        rank = self._local_parts[(local, domain)]
        return f"{local}{rank if rank > 1 else ''}@{domain}"

    def assign_mailboxes(self) -> None:
        d = self.draw
        for person in self.persons:
            first = person.activities[0]
            local = f"{_slug(person.given)}.{_slug(person.family)}"
            if person.is_liberal:
                share = 0.65 if person.profession == "10" else 0.50
                if d.chance(share):
                    person.mailbox = self._address_for(
                        local, _PROFESSION_DOMAINS[person.profession]
                    )
            elif first.structure.category == "ES" and first.structure.domain:
                share = {"10": 0.85, "21": 0.5}.get(person.profession, 0.0)
                if share and d.chance(share):
                    person.mailbox = self._address_for(local, first.structure.domain)
        for es in self.es:
            if not es.domain:
                continue
            count = min(len(_ES_SERVICES), max(1, round(es.weight / 2.5)) + d.rng.randint(0, 2))
            for stem, service in d.rng.sample(_ES_SERVICES, count):
                self.org_boxes.append((es, self._address_for(stem, es.domain), service))
        for ehpad in self.ehpad:
            if not ehpad.domain:
                continue
            for stem, service in d.rng.sample(
                (("accueil", "Accueil"), ("infirmerie", "Infirmerie"), ("direction", "Direction")),
                d.rng.randint(1, 2),
            ):
                self.org_boxes.append((ehpad, self._address_for(stem, ehpad.domain), service))
        for lab in self.labs:
            if lab.domain:
                box = self._address_for(f"resultats.{lab.slug}", lab.domain)
                self.org_boxes.append((lab, box, "Résultats"))
        for msp in d.rng.sample(self.msp, 5):
            domain = f"msp-{_slug(msp.address.commune.name)}.mssante.fr"
            if msp.address.commune.name == "Rennes":
                domain = f"{msp.slug}.mssante.fr"
            self.org_boxes.append((msp, self._address_for("secretariat", domain), "Secrétariat"))

    # -- rows ---------------------------------------------------------------------------------

    def activity_rows(self) -> list[list[str]]:
        rows: list[list[str]] = []
        category_label = _label(nom.CATEGORIES_PROFESSIONNELLES, "C", "TRE_R09")
        for person in self.persons:
            profession_label = _label(nom.PROFESSIONS, person.profession, "TRE_G15")
            civ_label = _label(nom.CIVILITES, person.civilite, "TRE_R81")
            civ_ex_label = (
                _label(nom.CIVILITES_EXERCICE, person.civ_exercice, "TRE_R11")
                if person.civ_exercice
                else ""
            )
            sf_type_label = (
                _label(nom.TYPES_SAVOIR_FAIRE, person.sf_type, "TRE_R04") if person.sf_type else ""
            )
            sf_label = _label(nom.SAVOIR_FAIRE, person.sf_code, "TRE_R38") if person.sf_code else ""
            for activity in person.activities:
                s, a = activity.structure, activity.structure.address
                rows.append(
                    [
                        person.id_type,
                        person.identifier,
                        person.idnat,
                        person.civ_exercice,
                        civ_ex_label,
                        person.civilite,
                        civ_label,
                        person.family.upper(),
                        person.given,
                        person.profession,
                        profession_label,
                        "C",
                        category_label,
                        person.sf_type,
                        sf_type_label,
                        person.sf_code,
                        sf_label,
                        activity.mode,
                        _label(nom.MODES_EXERCICE, activity.mode, "TRE_R23"),
                        s.siret.value if s.siret else "",
                        s.siret.siren if s.siret else "",
                        s.finess.value if s.finess else "",
                        s.finess_ej.value if s.finess_ej else "",
                        s.technical_id,
                        s.name,
                        s.brand,
                        "",
                        a.complement,
                        a.number,
                        a.repetition,
                        a.type_code,
                        a.type_label,
                        a.street,
                        a.distribution,
                        a.cedex,
                        a.postal_code,
                        a.commune.insee,
                        a.commune.name,
                        "99100",
                        "France",
                        a.phone,
                        a.phone2,
                        a.fax,
                        a.email,
                        DEPARTMENT_CODE,
                        DEPARTMENT_LABEL,
                        s.idnat_struct,
                        _AUTHORITIES[person.profession],
                        s.sector,
                        _label(nom.SECTEURS_ACTIVITE, s.sector, "TRE_R02"),
                        activity.section,
                        _PHARMA_SECTIONS[activity.section] if activity.section else "",
                        activity.fonction,
                        _label(nom.FONCTIONS, activity.fonction, "TRE_R21"),
                        "GENR01",
                        _label(nom.GENRES_ACTIVITE, "GENR01", "TRE_R22"),
                    ]
                )
        rows.sort(key=lambda r: (r[2], r[23]))
        return rows

    @staticmethod
    def _structure_columns(s: _Structure) -> list[str]:
        a = s.address
        return [
            s.name,
            s.brand,
            a.complement,
            a.distribution,
            a.number,
            a.repetition,
            a.type_label,
            a.street,
            "",
            a.delivery_line,
            a.postal_code,
            DEPARTMENT_CODE,
            "France",
        ]

    def mssante_rows(self) -> list[list[str]]:
        d = self.draw
        category_label = _label(nom.CATEGORIES_PROFESSIONNELLES, "C", "TRE_R09")
        rows: list[list[str]] = []
        alternates: dict[str, list[str]] = {}
        for person in self.persons:
            if person.mailbox is None:
                continue
            first = person.activities[0].structure
            attach = first.category != "CABINET" or d.chance(0.85)

            def line(structure: _Structure | None, person: _Person = person) -> list[str]:
                sf_label = (
                    _label(nom.SAVOIR_FAIRE, person.sf_code, "TRE_R38") if person.sf_code else ""
                )
                assert person.mailbox is not None
                return [
                    "PER",
                    person.mailbox,
                    person.id_type,
                    person.identifier,
                    person.idnat,
                    structure.idnat_type if structure else "",
                    structure.idnat_struct if structure else "",
                    person.service if structure and structure.category == "ES" else "",
                    _label(nom.CIVILITES_EXERCICE, person.civ_exercice, "TRE_R11")
                    if person.civ_exercice
                    else "",
                    person.family.upper(),
                    person.given,
                    "C",
                    category_label,
                    person.profession,
                    _label(nom.PROFESSIONS, person.profession, "TRE_G15"),
                    person.sf_code,
                    sf_label,
                    "O" if d.chance(0.6) else "N",
                    *(self._structure_columns(structure) if structure else [""] * 13),
                ]

            rows.append(line(first if attach else None))
            if len(person.activities) > 1:
                alternates[person.mailbox] = line(person.activities[1].structure)
        for structure, address, service in self.org_boxes:
            rows.append(
                [
                    "ORG",
                    address,
                    "",
                    "",
                    "",
                    structure.idnat_type,
                    structure.idnat_struct,
                    service,
                    *([""] * 9),
                    "O" if d.chance(0.6) else "N",
                    *self._structure_columns(structure),
                ]
            )
        # The real file repeats ~0.03 % of its addresses on several lines (the address is the
        # key, the importer dedupes); we repeat ~0.5 % so that a demo-size file exercises it.
        per_rows = [r for r in rows if r[0] == "PER"]
        for row in d.rng.sample(per_rows, max(1, round(len(rows) * 0.005))):
            rows.append(list(alternates.get(row[1], row)))
        rows.sort(key=lambda r: (r[1], r[6]))
        return rows

    # -- manifest -----------------------------------------------------------------------------

    def counts(self, activity_rows: int, mss_rows: list[list[str]]) -> dict[str, Any]:
        persons = Counter(p.profession for p in self.persons)
        addresses = {r[1] for r in mss_rows}
        return {
            "persons_by_profession": {
                code: persons[code] for code in sorted(persons, key=lambda c: (-persons[c], c))
            },
            "persons": len(self.persons),
            "medecins_generalistes": sum(
                1 for p in self.persons if p.sf_code == nom.SAVOIR_FAIRE_MEDECINE_GENERALE
            ),
            "persons_with_two_sites": sum(1 for p in self.persons if len(p.activities) > 1),
            "persons_identified_by_adeli": sum(1 for p in self.persons if p.adeli is not None),
            "structures": {
                "etablissements_sante": len(self.es),
                "ehpad": len(self.ehpad),
                "laboratoires": len(self.labs),
                "pharmacies": len(self.pharmacies),
                "maisons_de_sante": len(self.msp),
                "centres_de_sante": len(self.centres),
                "cabinets": sum(1 for s in self.structures if s.category == "CABINET"),
            },
            "cpam_accueils": CPAM_ACCUEILS,
            "activity_lines": activity_rows,
            "mssante_lines": len(mss_rows),
            "mssante_distinct_addresses": len(addresses),
            "mssante_per": len({r[1] for r in mss_rows if r[0] == "PER"}),
            "mssante_org": len({r[1] for r in mss_rows if r[0] == "ORG"}),
            "equipped": {
                "etablissements_sante": sum(1 for s in self.es if s.domain),
                "ehpad": sum(1 for s in self.ehpad if s.domain),
                "laboratoires": sum(1 for s in self.labs if s.domain),
            },
        }

    def cpam(self) -> list[dict[str, Any]]:
        d = self.draw
        points: list[dict[str, Any]] = []
        agent = 0
        for index, (name, commune_name) in enumerate(_CPAM_SITES, start=1):
            commune = _COMMUNE_BY_NAME[commune_name]
            address = d.address(commune)
            agents = []
            for _ in range(d.rng.randint(3, 5)):
                agent += 1
                agents.append(f"CPAM35-A{agent:03d}")
            street = " ".join(
                p
                for p in (address.number, address.repetition, address.type_label, address.street)
                if p
            )
            points.append(
                {
                    "id": f"CPAM35-ACC{index:02d}",
                    "name": name,
                    "address": street,
                    "postal_code": address.postal_code,
                    "commune": commune.name,
                    "commune_code": commune.insee,
                    "phone": "3646",
                    "agents": agents,
                }
            )
        return points

    def demo_logins(self) -> list[dict[str, Any]]:
        """A handful of ready-made identities for the demo, one per typical role."""

        def describe(role: str, person: _Person) -> dict[str, Any]:
            structure = person.activities[0].structure
            return {
                "role": role,
                "idnat_ps": person.idnat,
                "rpps": person.identifier,
                "civilite": person.civ_exercice or person.civilite,
                "nom": person.family.upper(),
                "prenom": person.given,
                "profession": person.profession,
                "profession_label": nom.PROFESSIONS[person.profession],
                "savoir_faire": person.sf_code or None,
                "mode": person.activities[0].mode,
                "structure": structure.name,
                "structure_idnat": structure.idnat_struct,
                "commune": structure.address.commune.name,
                "mailbox": person.mailbox,
            }

        def first(predicate: Callable[[_Person], bool]) -> _Person:
            for person in self.persons:
                if person.rpps is not None and predicate(person):
                    return person
            raise LookupError("no person matches a demo role")

        def liberal_in(person: _Person, commune: str) -> bool:
            a = person.activities[0]
            return a.mode == "L" and a.structure.address.commune.name == commune

        return [
            describe(
                "medecin_generaliste",
                first(
                    lambda p: (
                        p.sf_code == nom.SAVOIR_FAIRE_MEDECINE_GENERALE
                        and p.mailbox is not None
                        and liberal_in(p, "Rennes")
                    )
                ),
            ),
            describe(
                "pharmacien",
                first(lambda p: p.profession == "21" and p.activities[0].fonction == "FON-03"),
            ),
            describe(
                "infirmier",
                first(lambda p: p.profession == "60" and p.is_liberal and p.mailbox is not None),
            ),
            describe(
                "medecin_hospitalier",
                first(
                    lambda p: (
                        p.profession == "10"
                        and p.sf_code != nom.SAVOIR_FAIRE_MEDECINE_GENERALE
                        and p.activities[0].mode == "S"
                        and p.activities[0].structure.name.startswith("CHU")
                        and p.mailbox is not None
                    )
                ),
            ),
            describe(
                "masseur_kinesitherapeute",
                first(lambda p: p.profession == "70" and p.is_liberal),
            ),
        ]


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M")


def generate_territory(
    out_dir: Path, *, seed: int = 35, generated_at: datetime | None = None
) -> TerritoryManifest:
    """Generate the synthetic department into ``out_dir`` and describe what was written.

    Writes ``PS_LibreAcces_Personne_activite_<AAAAMMJJhhmm>.txt``,
    ``Extraction_Correspondance_MSSante_<AAAAMMJJhhmm>.txt`` (timestamp in UTC, as the
    importer reads it) and ``territory.json``. Same seed and ``generated_at`` → same bytes.
    """
    moment = generated_at if generated_at is not None else DEFAULT_GENERATED_AT
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = _stamp(moment)
    out_dir.mkdir(parents=True, exist_ok=True)

    territory = _Territory(seed)
    territory.build_establishments()
    territory.build_msp()
    territory.build_medecins()
    territory.build_pharmaciens()
    territory.build_paramedical()
    territory.add_second_sites()
    territory.assign_mailboxes()

    activity_path = out_dir / f"PS_LibreAcces_Personne_activite_{stamp}.txt"
    mssante_path = out_dir / f"Extraction_Correspondance_MSSante_{stamp}.txt"
    manifest_path = out_dir / "territory.json"

    activity_rows = territory.activity_rows()
    write_extract(activity_path, ACTIVITY_HEADER, activity_rows)
    mss_rows = territory.mssante_rows()
    write_extract(mssante_path, MSSANTE_HEADER, mss_rows)

    counts = territory.counts(len(activity_rows), mss_rows)
    cpam = territory.cpam()
    logins = territory.demo_logins()
    document = {
        "seed": seed,
        "department": {"code": DEPARTMENT_CODE, "label": DEPARTMENT_LABEL, "region": REGION_LABEL},
        "generated_at": moment.astimezone(UTC).isoformat(),
        "files": {"activity": activity_path.name, "mssante": mssante_path.name},
        "counts": counts,
        "cpam_accueils": cpam,
        "demo_logins": logins,
    }
    manifest_path.write_text(
        json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return TerritoryManifest(
        out_dir=out_dir,
        seed=seed,
        generated_at=moment,
        activity_path=activity_path,
        mssante_path=mssante_path,
        manifest_path=manifest_path,
        counts=counts,
        demo_logins=logins,
        cpam_accueils=cpam,
    )
