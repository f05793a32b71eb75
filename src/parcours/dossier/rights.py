"""The holder's rights over his record, and what a professional may record for him.

One FHIR operation, ``Patient/{id}/$dmp-droits``: ``GET`` returns the record's settings to the
holder (or his legal representative), ``POST`` with a ``Parameters`` resource applies one
change. The ``action`` parameter uses the policy's own action names, so what is decided is
exactly what is done:

=====================  ============================================  =========================
action                 parameters                                    rule (dmp-access.md)
=====================  ============================================  =========================
``designate-mt``       ``target`` IDNPS (``consentCollected`` if PS)  R37
``block``/``unblock``  ``target`` IDNPS                               R34
``set-opposition``     ``setting`` bris_de_glace|centre_15, ``value``  R35
``grant``/``revoke``   ``target``, ``expires`` (grant)                R36, R12 (PS: consent)
``delegate``           ``target`` (PS with a basis)                   R13
``team-consent``       ``structure``, ``value``, ``until``            R36 / R11
``remove-from-team``   ``target``                                     R36
``mask-all``           ``value``                                      R21b
``set-contact``        ``email`` (empty: stop e-mails)                L1111-19 / R40
=====================  ============================================  =========================

Every change goes through ``records.enforce`` (one decision, one trace, its notifications) and
is stored on the record row (``dmp_record.access``), which the policy reads on every request.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from parcours.annuaire.directory import find_professional
from parcours.audit import context as audit_context
from parcours.auth.principal import Principal
from parcours.dossier import records
from parcours.dossier.models import Patient, Record
from parcours.fhir.errors import BadRequest, FHIRError, NotFound
from parcours.fhir.parameters import parameter_values
from parcours.identity import IdentifierError, IdNatPS
from parcours.policy.rules import load_rules
from parcours.storage.models import utcnow

ACTIONS = frozenset(
    {
        "designate-mt",
        "block",
        "unblock",
        "set-opposition",
        "grant",
        "revoke",
        "delegate",
        "team-consent",
        "remove-from-team",
        "mask-all",
        "set-contact",
    }
)
NEEDS_TARGET = frozenset(
    {"designate-mt", "block", "unblock", "grant", "revoke", "delegate", "remove-from-team"}
)
# Oppositions with a column of their own (the policy reads them on every emergency access);
# the heirs' opposition (R43) only matters after death and lives in ``access``.
OPPOSITIONS = {"bris_de_glace": "oppose_bris_de_glace", "centre_15": "oppose_centre_15"}
SETTINGS = frozenset({*OPPOSITIONS, "ayants_droit"})


def _idnps(raw: Any, name: str) -> str:
    try:
        return str(IdNatPS.parse(str(raw)))
    except IdentifierError as exc:
        raise BadRequest(f"{name} : {exc}", expression=[f"Parameters.parameter.{name}"]) from None


def _instant(raw: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise BadRequest(f"{name} : date et heure FHIR attendues.") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} : le fuseau horaire est obligatoire.")
    return moment


def _load(session: Session, patient_id: str) -> tuple[Patient, Record | None]:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    record = session.get(Record, patient_id, with_for_update=True)
    return patient, record


def settings(session: Session, principal: Principal, patient_id: str) -> dict[str, Any]:
    """The record's access settings, for the holder and his representatives only."""
    patient, record = _load(session, patient_id)
    state = records.record_state(patient, record)
    if principal.kind not in ("patient", "legal_representative"):
        audit_context.note(patient_id=patient_id, rule="R40")
        raise FHIRError(403, "forbidden", "Réglages du DMP réservés au titulaire (règle R40).")
    records.enforce(principal, "read-record", state)
    return render(record)


def render(record: Record | None) -> dict[str, Any]:
    access = (record.access if record else None) or {}

    def part(name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"name": name, "valueBoolean": value}
        return {"name": name, "valueString": str(value)}

    params = [
        part("mt", record.mt) if record and record.mt else None,
        part("oppose_bris_de_glace", bool(record and record.oppose_bris_de_glace)),
        part("oppose_centre_15", bool(record and record.oppose_centre_15)),
        part("mask_all", bool(record and record.mask_all)),
        part("oppose_ayants_droit", bool(access.get("oppose_heirs"))),
        part("contact_email", access["contact"]["email"]) if access.get("contact") else None,
        *[part("blocked", ps) for ps in access.get("blocked", [])],
        *[part("removed_from_team", ps) for ps in access.get("removed_from_team", [])],
    ]
    for grant in access.get("authorisations", []):
        params.append(
            {
                "name": "authorisation",
                "part": [
                    {"name": k, "valueString": str(v)} for k, v in grant.items() if v is not None
                ],
            }
        )
    for team in access.get("care_teams", []):
        params.append(
            {
                "name": "care_team",
                "part": [
                    {"name": k, "valueString": str(v)}
                    for k, v in team.items()
                    if v not in (None, [], False)
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": [p for p in params if p]}


def apply(session: Session, principal: Principal, patient_id: str, body: Any) -> dict[str, Any]:
    values = parameter_values(body)
    action = values.get("action")
    if action not in ACTIONS:
        raise BadRequest(
            f"action inconnue « {action} » (attendu : {', '.join(sorted(ACTIONS))}).",
            expression=["Parameters.parameter.action"],
        )
    target = _idnps(values["target"], "target") if action in NEEDS_TARGET else None
    if action in NEEDS_TARGET and target is None:
        raise BadRequest("Paramètre « target » (IDNPS du professionnel) obligatoire.")
    setting = values.get("setting")
    if action == "set-opposition" and setting not in SETTINGS:
        raise BadRequest("setting : bris_de_glace, centre_15 ou ayants_droit.")
    flag = values.get("value")
    if action in ("set-opposition", "team-consent", "mask-all") and not isinstance(flag, bool):
        raise BadRequest("Paramètre « value » (booléen) obligatoire.")
    structure = values.get("structure")
    if action == "team-consent" and not isinstance(structure, str):
        raise BadRequest("Paramètre « structure » (identifiant de la structure) obligatoire.")

    email = _email(values.get("email")) if action == "set-contact" else None
    patient, record = _load(session, patient_id)
    state = records.record_state(patient, record)
    now = utcnow()
    records.enforce(
        principal,
        action,
        state,
        target=target,
        setting=setting if action == "set-opposition" else ("on" if flag else "off"),
        consent_collected=values.get("consentCollected") is True,
        now=now,
    )
    assert record is not None  # G2 refused an absent record
    if action == "designate-mt":
        _check_physician(session, str(target))
    access = copy.deepcopy(record.access or {})
    stamp = now.isoformat()
    if action == "designate-mt":
        record.mt = target
    elif action in ("block", "unblock"):
        blocked = set(access.get("blocked", [])) - {target}
        access["blocked"] = sorted(blocked | {target} if action == "block" else blocked)
    elif action == "set-opposition":
        if setting == "ayants_droit":
            access["oppose_heirs"] = bool(flag)
        else:
            setattr(record, OPPOSITIONS[setting], flag)
    elif action in ("grant", "delegate"):
        expires = values.get("expires")
        if expires is not None:
            until = _instant(expires, "expires")
        elif principal.kind == "professional":
            until = now + timedelta(hours=load_rules()["explicit_consent_ttl_hours"])
        else:
            until = None  # the holder's own authorisation lasts until he revokes it
        kind = "express" if values.get("express") is True else "authorisation"
        access.setdefault("authorisations", []).append(
            _authorisation(str(target), kind, now, until, principal.actor_id)
        )
    elif action == "revoke":
        for grant in access.get("authorisations", []):
            if grant["ps"] == target and grant.get("revoked_at") is None:
                grant["revoked_at"] = stamp
    elif action == "remove-from-team":
        access["removed_from_team"] = sorted({*access.get("removed_from_team", []), target})
    elif action == "team-consent":
        teams = access.setdefault("care_teams", [])
        team = next((t for t in teams if t.get("structure") == structure), None)
        if team is None and flag:
            until = values.get("until")
            team = {
                "id": f"equipe-{structure}",
                "structure": structure,
                "since": stamp,
                "until": _instant(until, "until").isoformat() if until else None,
            }
            teams.append(team)
        if team is not None:
            if flag:
                team["consented_at"], team["consent_withdrawn_at"] = stamp, None
            else:
                team["consent_withdrawn_at"] = stamp
    elif action == "mask-all":
        record.mask_all = bool(flag)
    elif action == "set-contact":
        if email:
            access["contact"] = {"email": email, "since": stamp}
        else:
            access.pop("contact", None)
    record.access = access
    record.settings_version += 1
    patient.last_updated = now
    session.flush()
    return render(record)


def _check_physician(session: Session, idnps: str) -> None:
    """The médecin traitant is a physician (CSS art. L162-5-3: « un médecin traitant »),
    practising and in the Annuaire; the reference's R37 leaves this implicit."""
    found = find_professional(session, idnps)
    if found is None or found.profession_code != "10":
        raise FHIRError(
            422,
            "business-rule",
            "Le médecin traitant doit être un médecin en exercice inscrit à l'annuaire "
            "(article L162-5-3 du code de la sécurité sociale, règle R37).",
        )


_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _email(raw: Any) -> str | None:
    """The holder's notification address: a plain addr-spec (RFC 5322 §3.4.1, dot-atom form),
    or empty to stop e-mail notifications (the portal inbox stays)."""
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or len(raw) > 254 or not _EMAIL.fullmatch(raw.strip()):
        raise BadRequest(
            f"Adresse électronique invalide : « {str(raw)[:80]} » (attendu : nom@domaine.fr).",
            expression=["Parameters.parameter.email"],
        )
    return raw.strip()


def authorise_creator(record: Record, principal: Principal, now: datetime) -> None:
    """A professional who opens a record with the patient present has collected his consent:
    record the R12 authorisation it implies (with the TTL of §5.4), as the DMP does."""
    if principal.kind != "professional":
        return
    until = now + timedelta(hours=load_rules()["explicit_consent_ttl_hours"])
    access = copy.deepcopy(record.access or {})
    access.setdefault("authorisations", []).append(
        _authorisation(principal.actor_id, "authorisation", now, until, principal.actor_id)
    )
    record.access = access


def _authorisation(
    ps: str, kind: str, now: datetime, until: datetime | None, granted_by: str
) -> dict[str, Any]:
    """An authorisation as stored in ``dmp_record.access`` (read by ``records.record_state``)."""
    return {
        "ps": ps,
        "kind": kind,
        "granted_at": now.isoformat(),
        "expires_at": until.isoformat() if until else None,
        "revoked_at": None,
        "granted_by": granted_by,
    }
