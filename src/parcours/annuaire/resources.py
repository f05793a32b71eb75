"""Rendering directory rows as FHIR R4 resources shaped like the Annuaire santé API v2.

One function per resource type, from columns + ``attrs``: the only place that knows the wire
shape (profiles, identifier types, code systems, the MSSanté ContactPoint extensions). See
``docs/annuaire-fhir-mapping.md`` for the sources of each URL and code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parcours.annuaire import nomenclatures as nos
from parcours.annuaire.models import Mailbox, Organization, Practitioner, PractitionerRole


def _meta(version: int, last_updated: datetime, profile: str) -> dict[str, Any]:
    return {
        "versionId": str(version),
        "lastUpdated": last_updated.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "profile": [profile],
    }


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _identifier(type_system: str, type_code: str, system: str, value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": {"coding": [_coding(type_system, type_code)]},
        "system": system,
        "value": value,
    }


def mailbox_contact_point(box: Mailbox) -> dict[str, Any]:
    """An ``as-mailbox-mss`` ContactPoint: e-mail + MSSANTE type + mailbox metadata."""
    meta_ext: list[dict[str, Any]] = [
        {
            "url": "type",
            "valueCodeableConcept": {
                "coding": [_coding(nos.CS_TYPE_BAL, box.type, nos.TYPES_BAL.get(box.type))]
            },
        }
    ]
    if box.attrs.get("service"):
        meta_ext.append({"url": "service", "valueString": box.attrs["service"]})
    if box.attrs.get("description"):
        meta_ext.append({"url": "description", "valueString": box.attrs["description"]})
    meta_ext.append({"url": "listeRouge", "valueBoolean": box.liste_rouge})
    return {
        "extension": [
            {
                "url": nos.EXT_CONTACT_POINT_EMAIL_TYPE,
                "valueCoding": _coding(nos.CS_TYPE_MESSAGERIE, nos.EMAIL_TYPE_MSSANTE, "MSSANTE"),
            },
            {"url": nos.EXT_MAILBOX_MSS_METADATA, "extension": meta_ext},
        ],
        "system": "email",
        "value": box.address,
    }


def practitioner(row: Practitioner, mailboxes: list[Mailbox]) -> dict[str, Any]:
    a = row.attrs
    identifiers = [
        _identifier(nos.CS_TYPE_IDENTIFIANT_PERSONNE, "IDNPS", nos.SYSTEM_IDNAT_PS, row.idnat_ps)
    ]
    if a.get("id_type") == "8" and a.get("id_pp"):
        identifiers.append(
            _identifier(nos.CS_TYPE_IDENTIFIANT_PERSONNE, "RPPS", nos.SYSTEM_RPPS_URL, a["id_pp"])
        )
    elif a.get("id_type") == "0" and a.get("id_pp"):
        identifiers.append(
            _identifier(nos.CS_TYPE_IDENTIFIANT_PERSONNE, "ADELI", nos.SYSTEM_ADELI, a["id_pp"])
        )
    # Annuaire v2: civilité (TRE_R81: M, MME) as prefix, civilité d'exercice (R11: DR) as suffix.
    name: dict[str, Any] = {"use": "usual", "family": row.family, "given": [row.given]}
    if a.get("civ_code"):
        name["prefix"] = [a["civ_code"]]
    if a.get("civ_ex_code"):
        name["suffix"] = [a["civ_ex_code"]]
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": row.id,
        "meta": _meta(row.version, row.last_updated, nos.PROFILE_PRACTITIONER),
        "identifier": identifiers,
        "active": row.active,
        "name": [name],
    }
    if mailboxes:
        resource["telecom"] = [mailbox_contact_point(b) for b in mailboxes]
    # One qualification per concept: profession (G15) paired with the catégorie (R09), and
    # savoir-faire (R38) paired with its type (R04), as the Annuaire v2 renders them.
    quals = []
    for q in a.get("qualifications", []):
        if q["kind"] == "profession":
            codings = [
                _coding(
                    nos.CS_PROFESSION, q["code"], q.get("label") or nos.PROFESSIONS.get(q["code"])
                )
            ]
            if a.get("category_code"):
                codings.append(
                    _coding(
                        nos.CS_CATEGORIE_PROFESSIONNELLE,
                        a["category_code"],
                        a.get("category_label"),
                    )
                )
        else:
            codings = [
                _coding(
                    nos.CS_SPECIALITE_ORDINALE,
                    q["code"],
                    q.get("label") or nos.SAVOIR_FAIRE.get(q["code"]),
                )
            ]
            if q.get("type"):
                codings.append(
                    _coding(
                        nos.CS_TYPE_SAVOIR_FAIRE, q["type"], nos.TYPES_SAVOIR_FAIRE.get(q["type"])
                    )
                )
        quals.append({"code": {"coding": codings}})
    if quals:
        resource["qualification"] = quals
    return resource


def practitioner_role(row: PractitionerRole, mailboxes: list[Mailbox]) -> dict[str, Any]:
    a = row.attrs
    codes = [
        {"coding": [_coding(nos.CS_PROFESSION, row.profession_code, a.get("profession_label"))]}
    ]  # the v2 API also carries the profession on the role, so `role=<G15>` works
    if row.role_code:
        codes.append({"coding": [_coding(nos.CS_FONCTION, row.role_code, a.get("role_label"))]})
    if row.mode_code:
        codes.append(
            {"coding": [_coding(nos.CS_MODE_EXERCICE, row.mode_code, a.get("mode_label"))]}
        )
    if a.get("activity_kind_code"):
        codes.append(
            {
                "coding": [
                    _coding(
                        nos.CS_GENRE_ACTIVITE, a["activity_kind_code"], a.get("activity_kind_label")
                    )
                ]
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": row.id,
        "meta": _meta(row.version, row.last_updated, nos.PROFILE_PRACTITIONER_ROLE),
        "active": row.active,
        "practitioner": {"reference": f"Practitioner/{row.practitioner_id}"},
        "code": codes,
    }
    if row.organization_id:
        resource["organization"] = {"reference": f"Organization/{row.organization_id}"}
    if row.specialty_code:
        resource["specialty"] = [
            {
                "coding": [
                    _coding(
                        nos.CS_SPECIALITE_ORDINALE, row.specialty_code, a.get("specialty_label")
                    )
                ]
            }
        ]
    if mailboxes:
        resource["telecom"] = [mailbox_contact_point(b) for b in mailboxes]
    return resource


def organization(row: Organization, mailboxes: list[Mailbox]) -> dict[str, Any]:
    a = row.attrs
    identifiers = []
    if row.finess:
        identifiers.append(
            _identifier(nos.CS_TYPE_IDENTIFIANT_STRUCTURE, "FINEG", nos.SYSTEM_FINESS, row.finess)
        )
    if row.finess_ej:
        identifiers.append(
            _identifier(
                nos.CS_TYPE_IDENTIFIANT_STRUCTURE, "FINEJ", nos.SYSTEM_FINESS, row.finess_ej
            )
        )
    if row.siret:
        identifiers.append(
            _identifier(nos.CS_TYPE_IDENTIFIANT_STRUCTURE, "SIRET", nos.SYSTEM_SIRET, row.siret)
        )
    identifiers.append(
        _identifier(
            nos.CS_TYPE_IDENTIFIANT_STRUCTURE,
            "INTRN",
            nos.SYSTEM_STRUCTURE_TECHNIQUE,
            row.structure_key,
        )
    )
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": row.id,
        "meta": _meta(row.version, row.last_updated, nos.PROFILE_ORGANIZATION),
        "identifier": identifiers,
        "active": row.active,
        "name": row.name,
    }
    # Each Organization.type is tagged with the as-ext-organization-types slice it fills.
    types = [
        {
            "extension": [{"url": nos.EXT_ORGANIZATION_TYPES, "valueCode": "organizationType"}],
            "coding": [_coding(nos.CS_ORGANIZATION_TYPE, "GEOGRAPHICAL-ENTITY")],
        }
    ]
    if row.sector_code:
        types.append(
            {
                "extension": [
                    {"url": nos.EXT_ORGANIZATION_TYPES, "valueCode": "secteurActiviteRASS"}
                ],
                "coding": [
                    _coding(nos.CS_SECTEUR_ACTIVITE, row.sector_code, a.get("sector_label"))
                ],
            }
        )
    resource["type"] = types
    if a.get("brand") and a["brand"] != row.name:
        resource["alias"] = [a["brand"]]
    telecom: list[dict[str, Any]] = []
    for system, key in (
        ("phone", "phone"),
        ("phone", "phone2"),
        ("fax", "fax"),
        ("email", "email"),
    ):
        if a.get(key):
            telecom.append({"system": system, "value": a[key]})
    telecom += [mailbox_contact_point(b) for b in mailboxes]
    if telecom:
        resource["telecom"] = telecom
    addr = a.get("address") or {}
    if addr:
        address: dict[str, Any] = {"use": "work"}
        lines = [addr[k] for k in ("recipient", "point", "line", "distribution") if addr.get(k)]
        if lines:
            address["line"] = lines
        if addr.get("city"):
            address["city"] = addr["city"]
        if addr.get("postal_code"):
            address["postalCode"] = addr["postal_code"]
        if addr.get("commune_code"):
            address["extension"] = [
                {
                    "url": nos.EXT_ADDRESS_INSEE_CODE,
                    "valueCoding": _coding(nos.CS_COMMUNE, addr["commune_code"], addr.get("city")),
                }
            ]
        address["country"] = addr.get("country") or "FRANCE"
        resource["address"] = [address]
    return resource
