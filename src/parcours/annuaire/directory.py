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


def find_structure(session: Session, idnat: str) -> Organization | None:
    """The active structure with this idNat_Struct ("1"+FINESS, "3"+SIRET, "4"+technical id)."""
    if len(idnat) < 2:
        return None
    kind, number = idnat[0], idnat[1:]
    column = {
        "1": Organization.finess,
        "3": Organization.siret,
        "4": Organization.structure_key,
    }.get(kind)
    if column is None:
        return None
    return session.execute(
        select(Organization)
        .where(column == number, Organization.active.is_(True))
        .order_by(Organization.id)
        .limit(1)
    ).scalar_one_or_none()


OPERATOR_SOURCE = "operateur"  # mailboxes this instance hosts, beside the national extract's


def publish_mailbox(
    session: Session,
    *,
    address: str,
    kind: str,
    practitioner_id: str | None,
    organization_id: str | None,
    liste_rouge: bool,
    description: str | None = None,
) -> None:
    """Publish (or re-publish) a mailbox hosted by this operator, so that ``mailbox-mss``
    searches find it like the extract's: PER/CAB on the Practitioner, ORG/APP on the
    Organization (reference mssante.md §5.2). Liste rouge mailboxes are stored, never shown."""
    from hashlib import md5

    from parcours.annuaire.models import History, Mailbox
    from parcours.storage.models import utcnow

    if kind in ("PER", "CAB"):
        if practitioner_id is None:
            raise ValueError("une BAL personnelle est portée par un professionnel")
        carrier_type, carrier_id = "Practitioner", practitioner_id
    else:
        if organization_id is None:
            raise ValueError(
                "une BAL organisationnelle ou applicative est portée par une structure"
            )
        carrier_type, carrier_id = "Organization", organization_id
    attrs = {"description": description} if description else {}
    digest = md5(
        f"{address}|{kind}|{carrier_type}|{carrier_id}|{liste_rouge}|{description}".encode(),
        usedforsecurity=False,
    ).hexdigest()
    now = utcnow()
    box = session.get(Mailbox, address)
    if box is None:
        session.add(
            Mailbox(
                address=address,
                type=kind,
                carrier_type=carrier_type,
                carrier_id=carrier_id,
                practitioner_id=practitioner_id,
                organization_id=organization_id,
                liste_rouge=liste_rouge,
                active=True,
                version=1,
                digest=digest,
                last_updated=now,
                source=OPERATOR_SOURCE,
                extract_id=None,
                attrs=attrs,
            )
        )
        return
    if box.type != kind:
        raise ValueError(f"l'adresse {address} existe déjà avec le type {box.type} (immuable)")
    if box.digest == digest and box.active:
        return
    session.add(
        History(
            resource_type="Mailbox",
            resource_id=address,
            version=box.version,
            change="update",
            changed_at=now,
            extract_id=None,
            snapshot={"liste_rouge": box.liste_rouge, "attrs": box.attrs, "active": box.active},
        )
    )
    box.liste_rouge, box.attrs, box.digest, box.active = liste_rouge, attrs, digest, True
    box.version += 1
    box.last_updated = now


@dataclass(frozen=True)
class DirectoryMailbox:
    address: str
    kind: str
    practitioner_id: str | None
    structure: str | None  # idNat_Struct of the carrying organisation (ORG/APP)
    name: str
    liste_rouge: bool


def mailboxes_on_domains(session: Session, domains: list[str]) -> list[DirectoryMailbox]:
    """Active directory mailboxes whose domain is one of ``domains`` (the demo's operators
    take over the synthetic extract's mailboxes of the domains they host)."""
    from sqlalchemy import or_

    from parcours.annuaire.models import Mailbox

    if not domains:
        return []
    rows = session.execute(
        select(Mailbox, Practitioner, Organization)
        .outerjoin(Practitioner, Practitioner.id == Mailbox.practitioner_id)
        .outerjoin(Organization, Organization.id == Mailbox.organization_id)
        .where(
            Mailbox.active.is_(True),
            or_(*(Mailbox.address.like(f"%@{d}") for d in domains)),
        )
    ).all()
    found = []
    for box, person, org in rows:
        if person is not None:
            name = f"{person.given} {person.family}".strip()
        else:
            name = org.name if org is not None else box.address
        found.append(
            DirectoryMailbox(
                address=box.address,
                kind=box.type,
                practitioner_id=box.practitioner_id,
                structure=idnat_struct(org) if org is not None else None,
                name=name,
                liste_rouge=box.liste_rouge,
            )
        )
    return found
