"""Small extract files in the real ANS format, written row by row for precise scenarios."""

from __future__ import annotations

from pathlib import Path

from parcours.annuaire.extracts import ACTIVITY_HEADER, MSSANTE_HEADER, write_extract


def professional(
    rpps: str,
    family: str,
    given: str,
    *,
    profession: str = "10",
    savoir_faire: str = "SM54",
    structure: str = "",
    finess: str = "",
    siret: str = "",
    name: str = "",
    city: str = "RENNES",
    postal_code: str = "35000",
    mode: str = "L",
    sector: str = "",
) -> list[str]:
    values = {
        "Type d'identifiant PP": "8",
        "Identifiant PP": rpps,
        "Identification nationale PP": "8" + rpps,
        "Code civilité d'exercice": "DR" if profession == "10" else "",
        "Libellé civilité d'exercice": "Docteur" if profession == "10" else "",
        "Code civilité": "M",
        "Libellé civilité": "Monsieur",
        "Nom d'exercice": family,
        "Prénom d'exercice": given,
        "Code profession": profession,
        "Libellé profession": {"10": "Médecin", "21": "Pharmacien", "60": "Infirmier"}.get(
            profession, "Autre"
        ),
        "Code catégorie professionnelle": "C",
        "Libellé catégorie professionnelle": "Civil",
        "Code type savoir-faire": "S" if savoir_faire else "",
        "Code savoir-faire": savoir_faire,
        "Libellé savoir-faire": "Médecine générale" if savoir_faire == "SM54" else savoir_faire,
        "Code mode exercice": mode,
        "Numéro SIRET site": siret,
        "Numéro FINESS site": finess,
        "Identifiant technique de la structure": structure,
        "Raison sociale site": name,
        "Code postal (coord. structure)": postal_code if structure else "",
        "Libellé commune (coord. structure)": city if structure else "",
        "Code commune (coord. structure)": "35238" if structure else "",
        "Code secteur d'activité": sector,
    }
    row = dict.fromkeys(ACTIVITY_HEADER, "")
    row.update(values)
    return [row[h] for h in ACTIVITY_HEADER]


def mailbox(
    address: str,
    *,
    kind: str = "PER",
    rpps: str = "",
    structure_id: str = "",
    structure_type: str = "",
    name: str = "",
    family: str = "",
    given: str = "",
) -> list[str]:
    values = {
        "Type de BAL": kind,
        "Adresse BAL": address,
        "Type Identifiant PP": "8" if rpps else "",
        "Identifiant PP": rpps,
        "Identification nationale PP": ("8" + rpps) if rpps else "",
        "Type identifiant structure": structure_type,
        "Identification Structure": structure_id,
        "Nom d'exercice": family,
        "Prénom d'exercice": given,
        "Raison Sociale structure BAL": name,
        "Code postal": "35000",
        "Département": "35",
        "Pays": "FRANCE",
    }
    row = dict.fromkeys(MSSANTE_HEADER, "")
    row.update(values)
    return [row[h] for h in MSSANTE_HEADER]


def write_activity(directory: Path, stamp: str, rows: list[list[str]]) -> Path:
    path = directory / f"PS_LibreAcces_Personne_activite_{stamp}.txt"
    write_extract(path, ACTIVITY_HEADER, rows)
    return path


def write_mssante(directory: Path, stamp: str, rows: list[list[str]]) -> Path:
    path = directory / f"Extraction_Correspondance_MSSante_{stamp}.txt"
    write_extract(path, MSSANTE_HEADER, rows)
    return path
