"""Directory look-ups other domains and the CLI need (not FHIR-shaped)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from parcours.annuaire.models import Organization, Practitioner, PractitionerRole


@dataclass(frozen=True)
class ProfessionalSummary:
    idnat_ps: str
    display_name: str
    profession_code: str | None
    specialty_code: str | None
    structure: str | None  # idNat_Struct of the first active activity's structure


def idnat_struct(org: Organization) -> str:
    """idNat_Struct: "1"+FINESS, "3"+SIRET, else "4"+technical structure id."""
    if org.finess:
        return "1" + org.finess
    if org.siret:
        return "3" + org.siret
    return "4" + org.structure_key


def find_professional(session: Session, idnat_ps: str) -> ProfessionalSummary | None:
    """The active professional with this IDNPS, with his first active activity."""
    person = session.get(Practitioner, idnat_ps)
    if person is None or not person.active:
        return None
    row = session.execute(
        select(PractitionerRole, Organization)
        .outerjoin(Organization, Organization.id == PractitionerRole.organization_id)
        .where(PractitionerRole.practitioner_id == idnat_ps, PractitionerRole.active.is_(True))
        .order_by(PractitionerRole.id)
        .limit(1)
    ).first()
    role, org = (row[0], row[1]) if row else (None, None)
    civ = person.attrs.get("civ_ex_code")
    prefix = "Dr " if civ == "DR" else ("Pr " if civ == "PR" else "")
    return ProfessionalSummary(
        idnat_ps=person.idnat_ps,
        display_name=f"{prefix}{person.given} {person.family}".strip(),
        profession_code=role.profession_code if role else None,
        specialty_code=role.specialty_code if role else None,
        structure=idnat_struct(org) if org is not None else None,
    )
