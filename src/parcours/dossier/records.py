"""Patients and their DMP: identity, the consent that opens a record, closing it.

A record exists only once the patient's consent is recorded (FHIR ``Consent``), with the
channel it was created through as data (CPAM desk, patient online, pharmacy, hospital
admission, other professional). Closing stops every access; the content is kept for the legal
retention period (10 years) and then purged. ``Patient.active`` tells whether the DMP is open,
as PDSm4DMP TD0.2 proposes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from parcours.audit import context as audit_context
from parcours.auth.principal import Principal
from parcours.dossier.models import Consent, Patient, Reader, Record
from parcours.fhir.errors import BadRequest, FHIRError, NotFound
from parcours.fhir.search import SearchQuery, fold, parse_token
from parcours.identity import INS, INS_OIDS, IdentifierError
from parcours.identity.professional import IDNPS_OID
from parcours.notify import outbox
from parcours.policy import pep
from parcours.policy.engine import Decision, decide
from parcours.policy.facts import Action, Authorisation, CareTeam, DocumentState, RecordState
from parcours.policy.rules import load_rules
from parcours.storage.models import utcnow

PARCOURS = "https://parcours.example.org/fhir"
EXT_CHANNEL = PARCOURS + "/StructureDefinition/dmp-canal-creation"
# Draft names proposed by PDSm4DMP TD0.2 (no published artefact; reference §2).
EXT_CLOSURE = "https://interop.esante.gouv.fr/ig/fhir/dmp/StructureDefinition/dmp-fermeture"
FR_CORE_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
RETENTION_YEARS = 10

CHANNELS: dict[str, str] = {
    "guichet-cpam": "Accueil de la caisse d'assurance maladie",
    "patient-en-ligne": "Le patient en ligne",
    "pharmacie": "Pharmacie d'officine",
    "etablissement": "Admission en établissement de santé (GAM)",
    "professionnel": "Autre professionnel de santé",
}
# Which kind of actor may record consent through which channel.
CHANNEL_ACTORS: dict[str, tuple[str, ...]] = {
    "guichet-cpam": ("agent",),
    "patient-en-ligne": ("patient",),
    "pharmacie": ("professional",),
    "etablissement": ("professional",),
    "professionnel": ("professional",),
}
GENDERS = frozenset({"male", "female", "other", "unknown"})


@dataclass(frozen=True)
class ResolvedPatient:
    patient: Patient
    record: Record | None

    @property
    def state(self) -> RecordState:
        return record_state(self.patient, self.record)


def _instant(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def record_state(patient: Patient, record: Record | None) -> RecordState:
    """The policy's view of a record: one row, the holder's choices included."""
    if record is None:
        return RecordState(
            patient.id, "absent", ins=patient.ins, holder_birth_date=patient.birth_date
        )
    access = record.access or {}
    return RecordState(
        patient_id=patient.id,
        status="active" if record.status == "open" else "closed",
        ins=patient.ins,
        holder_birth_date=patient.birth_date,
        closed_at=record.closed_at,
        closure_reason=record.closure_kind,  # type: ignore[arg-type]
        mt=record.mt,
        oppose_bris_de_glace=record.oppose_bris_de_glace,
        oppose_centre_15=record.oppose_centre_15,
        blocked=frozenset(access.get("blocked", ())),
        authorisations=tuple(
            Authorisation(
                ps=a["ps"],
                granted_at=datetime.fromisoformat(a["granted_at"]),
                expires_at=_instant(a.get("expires_at")),
                revoked_at=_instant(a.get("revoked_at")),
                granted_by=a.get("granted_by"),
                kind=a.get("kind", "authorisation"),
            )
            for a in access.get("authorisations", ())
        ),
        care_teams=tuple(
            CareTeam(
                id=t["id"],
                since=datetime.fromisoformat(t["since"]),
                structure=t.get("structure"),
                members=frozenset(t.get("members", ())),
                until=_instant(t.get("until")),
                consented_at=_instant(t.get("consented_at")),
                consent_withdrawn_at=_instant(t.get("consent_withdrawn_at")),
                occupational=bool(t.get("occupational")),
            )
            for t in access.get("care_teams", ())
        ),
        removed_from_team=frozenset(access.get("removed_from_team", ())),
        mask_all=record.mask_all,
        representatives=frozenset(access.get("representatives", ())),
        heirs_opposed=bool(access.get("oppose_heirs")),
    )


def enforce(
    principal: Principal,
    action: Action,
    state: RecordState,
    document: DocumentState | None = None,
    *,
    status: int = 403,
    session: Session | None = None,
    known_reader: bool | None = None,
    **request_fields: Any,
) -> Decision:
    """Ask the policy-decision point, note its answer for the trace, raise on a refusal.

    With a ``session``, a professional's first consultation of the record is detected (one
    primary-key read, or ``known_reader`` when the caller loaded it with the record) so that
    the decision can oblige the holder's notification."""
    now = request_fields.pop("now", None) or utcnow()
    first = (
        principal.kind == "professional"
        and principal.access_mode == "normal"
        and action in ("read", "search", "read-record")
        and state.status == "active"
        and (
            not known_reader
            if known_reader is not None
            else session is not None
            and session.get(Reader, (state.patient_id, principal.actor_id)) is None
        )
    )
    request = pep.request_for(principal, action, now, first_access=first, **request_fields)
    rules = load_rules()
    decision = decide(request, pep.actor_for(principal, state), state, document, rules=rules)
    audit_context.note(
        patient_id=state.patient_id,
        rule=decision.rule,
        policy_version=rules.version,
        justification=principal.justification if principal.access_mode == "bris_de_glace" else None,
        call_id=principal.call_id if principal.access_mode == "centre_15" else None,
    )
    if decision.permit and decision.notifications:
        audit_context.queue(
            *outbox.pending_for(
                state, principal, decision, request, document, audit_context.request_id() or ""
            )
        )
    if decision.deny:
        audit_context.note(override=True, patient_id=state.patient_id, rule=decision.rule)
        if state.status in ("absent", "opposed") and status == 403:
            status = 404  # G2: never reveal whether a record exists (reference §2.1)
        raise FHIRError(status, "forbidden", f"{decision.reason} (règle {decision.rule})")
    return decision


def _patient_by_ins(session: Session, value: str, system: str | None) -> Patient | None:
    query = select(Patient).where(Patient.ins == value)
    if system:
        query = query.where(Patient.ins_system == system)
    return session.execute(query).scalar_one_or_none()


def patient_by_ins(session: Session, ins: str) -> Patient | None:
    return _patient_by_ins(session, ins, None)


def resolve_reference(
    session: Session, reference: str, *, expression: str | None = None
) -> Patient:
    """``Patient/<id>``, an absolute URL ending so, or ``Patient?identifier=<system>|<INS>``."""
    ref = reference.strip()
    where = [expression] if expression else None
    if "Patient?" in ref:
        query = ref.split("Patient?", 1)[1]
        name, _, value = query.partition("=")
        if name != "identifier" or not value:
            raise BadRequest(
                f"Référence conditionnelle non prise en charge : {ref}", expression=where
            )
        system, _, ins = value.rpartition("|")
        patient = _patient_by_ins(session, ins, system or None)
        if patient is None:
            raise FHIRError(
                400,
                "not-found",
                f"Aucun patient d'INS {ins} connu du DMP ({ref}).",
                expression=where,
            )
        return patient
    if "Patient/" in ref:
        pid = ref.rsplit("Patient/", 1)[1].split("/")[0]
        patient = session.get(Patient, pid)
        if patient is None:
            raise FHIRError(400, "not-found", f"Patient/{pid} introuvable.", expression=where)
        return patient
    raise BadRequest(f"Référence de patient non résolue : {ref}", expression=where)


def load(session: Session, patient: Patient) -> ResolvedPatient:
    return ResolvedPatient(patient, session.get(Record, patient.id))


_FACTS_SQL: dict[str, str] = {}


def _parsed_instant(value: Any) -> datetime | None:
    """A timestamp as the driver returns it (SQLite: text in UTC; psycopg: aware datetime)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def facts_for(
    session: Session, patient_id: str, actor_id: str, *, missing_ok: bool = False
) -> tuple[RecordState, bool] | None:
    """The policy's facts about a record and whether ``actor_id`` consulted it before, in one
    statement on the driver: every document read needs both (R10–R46, R45's first access),
    and through the ORM the same three rows cost five times the SQL (bench/dossier.py)."""
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect not in _FACTS_SQL:
        mark = "?" if dialect == "sqlite" else "%s"
        _FACTS_SQL[dialect] = (
            "SELECT p.id, p.ins, p.birth_date, r.patient_id, r.status, r.closed_at, "
            "r.closure_kind, r.mt, r.oppose_bris_de_glace, r.oppose_centre_15, r.mask_all, "
            "r.access, rd.actor_id "
            "FROM dmp_patient p "
            "LEFT JOIN dmp_record r ON r.patient_id = p.id "
            f"LEFT JOIN dmp_reader rd ON rd.patient_id = p.id AND rd.actor_id = {mark} "
            f"WHERE p.id = {mark}"
        )
    row = connection.exec_driver_sql(_FACTS_SQL[dialect], (actor_id, patient_id)).first()
    if row is None:
        if missing_ok:
            return None
        raise NotFound("Patient", patient_id)
    birth = row[2] if isinstance(row[2], date) else date.fromisoformat(str(row[2]))
    patient = SimpleNamespace(id=row[0], ins=row[1], birth_date=birth)
    record = None
    if row[3] is not None:
        access = row[11]
        record = SimpleNamespace(
            status=row[4],
            closed_at=_parsed_instant(row[5]),
            closure_kind=row[6],
            mt=row[7],
            oppose_bris_de_glace=bool(row[8]),
            oppose_centre_15=bool(row[9]),
            mask_all=bool(row[10]),
            access=orjson.loads(access) if isinstance(access, str | bytes) else access,
        )
    return record_state(patient, record), row[12] is not None  # type: ignore[arg-type]


def render_patient(patient: Patient, record: Record | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient.id,
        "meta": {
            "versionId": str(patient.version),
            "lastUpdated": patient.last_updated.isoformat(),
            "profile": [FR_CORE_PATIENT],
        },
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                            "code": "INS-NIR",
                        }
                    ]
                },
                "system": patient.ins_system,
                "value": patient.ins,
            }
        ],
        "active": record is not None and record.status == "open",
        "name": [{"use": "official", "family": patient.family, "given": patient.given.split()}],
        "gender": patient.gender,
        "birthDate": patient.birth_date.isoformat(),
    }
    if record is not None and record.mt:
        # The médecin traitant (R37) is the Patient's generalPractitioner in FHIR terms.
        resource["generalPractitioner"] = [
            {"identifier": {"system": f"urn:oid:{IDNPS_OID}", "value": record.mt}}
        ]
    if record is not None and record.status == "closed":
        closure: list[dict[str, Any]] = [
            {"url": "dateFermeture", "valueDate": record.closed_at.date().isoformat()}  # type: ignore[union-attr]
        ]
        if record.close_reason:
            closure.append({"url": "raisonFermeture", "valueString": record.close_reason})
        resource["extension"] = [{"url": EXT_CLOSURE, "extension": closure}]
    return resource


def create_patient(session: Session, principal: Principal, resource: Any) -> tuple[Patient, bool]:
    """Create (or, for an INS already known, return) a patient; ``True`` if created."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise BadRequest("Une ressource Patient est attendue.")
    if principal.kind not in ("professional", "agent", "patient"):
        raise FHIRError(403, "forbidden", "Acteur non habilité à déclarer un patient.")
    ins_ident = None
    for ident in resource.get("identifier") or []:
        if (
            isinstance(ident, dict)
            and str(ident.get("system")).removeprefix("urn:oid:") in INS_OIDS
        ):
            ins_ident = ident
            break
    if ins_ident is None:
        raise BadRequest(
            "Identifiant INS obligatoire (system urn:oid:1.2.250.1.213.1.4.8 pour le NIR, "
            ".4.9 NIA, .4.10 test, .4.11 démonstration).",
            expression=["Patient.identifier"],
        )
    try:
        oid = str(ins_ident["system"]).removeprefix("urn:oid:")
        ins = INS.parse(str(ins_ident.get("value") or ""), oid=oid)
    except IdentifierError as exc:
        raise BadRequest(str(exc), expression=["Patient.identifier.value"]) from None
    if principal.kind == "patient" and principal.ins != ins.value:
        raise FHIRError(403, "forbidden", "Un patient ne déclare que sa propre identité.")
    names = resource.get("name") or []
    name = names[0] if names and isinstance(names[0], dict) else {}
    family = str(name.get("family") or "").strip()
    given = " ".join(str(g) for g in name.get("given") or []).strip()
    if not family or not given:
        raise BadRequest("Nom de naissance et prénom(s) obligatoires.", expression=["Patient.name"])
    gender = resource.get("gender")
    if gender not in GENDERS:
        raise BadRequest(
            "Sexe obligatoire : male, female, other ou unknown.", expression=["Patient.gender"]
        )
    try:
        birth = date.fromisoformat(str(resource.get("birthDate") or ""))
    except ValueError:
        raise BadRequest(
            "Date de naissance obligatoire au format AAAA-MM-JJ.", expression=["Patient.birthDate"]
        ) from None
    existing = _patient_by_ins(session, ins.value, None)
    if existing is not None:
        return existing, False
    now = utcnow()
    patient = Patient(
        id=str(uuid.uuid4()),
        ins=ins.value,
        ins_system="urn:oid:" + ins.oid,
        family=family,
        given=given,
        family_folded=fold(family),
        birth_date=birth,
        gender=gender,
        version=1,
        created_at=now,
        last_updated=now,
    )
    session.add(patient)
    session.flush()
    audit_context.note(patient_id=patient.id, resource_type="Patient", resource_id=patient.id)
    return patient, True


def _channel(resource: dict[str, Any]) -> str:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == EXT_CHANNEL:
            coding = ext.get("valueCoding") or {}
            code = coding.get("code") or ext.get("valueCode")
            if code in CHANNELS:
                return str(code)
            raise BadRequest(
                f"Canal de création inconnu : {code}. Canaux : {', '.join(CHANNELS)}.",
                expression=["Consent.extension"],
            )
    raise BadRequest(
        f"Canal de création obligatoire (extension {EXT_CHANNEL}).",
        expression=["Consent.extension"],
    )


def record_consent(session: Session, principal: Principal, resource: Any) -> Consent:
    """Record the patient's consent to a DMP and open (or reopen) the record."""
    from parcours.dossier import rights

    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        raise BadRequest("Une ressource Consent est attendue.")
    if resource.get("status") != "active":
        raise BadRequest(
            "Le consentement doit être « active » pour créer le DMP.",
            expression=["Consent.status"],
        )
    patient_ref = (resource.get("patient") or {}).get("reference")
    if not isinstance(patient_ref, str):
        raise BadRequest("Consent.patient obligatoire.", expression=["Consent.patient"])
    channel = _channel(resource)
    if principal.kind not in CHANNEL_ACTORS[channel]:
        raise FHIRError(
            403,
            "forbidden",
            f"Le canal « {CHANNELS[channel]} » n'est pas ouvert à cet acteur ({principal.kind}).",
        )
    patient = resolve_reference(session, patient_ref)
    resolved = load(session, patient)
    if resolved.record is not None and resolved.record.status == "open":
        audit_context.note(patient_id=patient.id)
        raise FHIRError(409, "duplicate", "Ce patient a déjà un DMP ouvert.")
    enforce(principal, "create", resolved.state, consent_collected=True)
    now = utcnow()
    consent_id = str(uuid.uuid4())
    stored = dict(resource)
    stored.update(
        id=consent_id,
        meta={"versionId": "1", "lastUpdated": now.isoformat()},
        patient={"reference": f"Patient/{patient.id}"},
    )
    stored.setdefault("dateTime", now.isoformat())
    consent = Consent(
        id=consent_id,
        patient_id=patient.id,
        status="active",
        channel=channel,
        recorded_at=now,
        recorded_by=principal.actor_id,
        resource=stored,
    )
    session.add(consent)
    if resolved.record is None:
        record = Record(
            patient_id=patient.id,
            status="open",
            channel=channel,
            consent_id=consent_id,
            opened_at=now,
            opened_by=principal.actor_id,
            access={},
        )
        session.add(record)
        rights.authorise_creator(record, principal, now)
    else:  # reactivation of a closed record within its retention period
        record = resolved.record
        record.status, record.channel, record.consent_id = "open", channel, consent_id
        record.opened_at, record.opened_by = now, principal.actor_id
        record.closed_at = record.closed_by = record.close_reason = None
        record.retention_until = None
        record.closure_kind = None
        rights.authorise_creator(record, principal, now)
    patient.version += 1
    patient.last_updated = now
    session.flush()
    audit_context.note(resource_type="Consent", resource_id=consent_id)
    return consent


def close_record(session: Session, principal: Principal, patient_id: str, reason: str) -> Record:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    resolved = load(session, patient)
    enforce(principal, "close", resolved.state)
    record = resolved.record
    assert record is not None
    now = utcnow()
    record.status = "closed"
    record.closed_at, record.closed_by = now, principal.actor_id
    record.close_reason = reason or None
    record.closure_kind = "holder"
    record.retention_until = now.date() + timedelta(days=365 * RETENTION_YEARS + 3)
    patient.version += 1
    patient.last_updated = now
    session.flush()
    return record


def read_patient(session: Session, principal: Principal, patient_id: str) -> dict[str, Any]:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    resolved = load(session, patient)
    _may_see_identity(principal, resolved)
    return render_patient(patient, resolved.record)


def _may_see_identity(principal: Principal, resolved: ResolvedPatient) -> None:
    """Identity and DMP status (TD0.2) are visible to professionals and agents, and to the
    patient for himself; the record's content is governed by ``decide``."""
    audit_context.note(patient_id=resolved.patient.id)
    if principal.kind == "patient" and principal.ins != resolved.patient.ins:
        raise FHIRError(403, "forbidden", "Un patient ne consulte que sa propre fiche.")


def search_patients(
    session: Session, principal: Principal, identifier: str | None
) -> list[dict[str, Any]]:
    if not identifier:
        raise BadRequest(
            "Recherche de patient par INS seulement : identifier=<système>|<INS>.",
            expression=["identifier"],
        )
    system, _, value = identifier.rpartition("|")
    patient = _patient_by_ins(session, value, system or None)
    if patient is None:
        return []
    resolved = load(session, patient)
    _may_see_identity(principal, resolved)
    return [render_patient(patient, resolved.record)]


def known_patients(session: Session, principal: Principal, limit: int = 50) -> list[dict[str, Any]]:
    """A professional's patientèle as the DMP knows it: the records he is médecin traitant of
    or has already consulted, identity only (the content stays behind ``decide``)."""
    if principal.kind != "professional":
        raise FHIRError(403, "forbidden", "Liste réservée aux professionnels de santé.")
    me = principal.actor_id
    rows = session.execute(
        select(Patient, Record)
        .join(Record, Record.patient_id == Patient.id)
        .where(
            or_(
                Record.mt == me,
                Patient.id.in_(select(Reader.patient_id).where(Reader.actor_id == me)),
            )
        )
        .order_by(Patient.family, Patient.given)
        .limit(limit)
    ).all()
    return [render_patient(patient, record) for patient, record in rows]


def read_consent(session: Session, principal: Principal, consent_id: str) -> dict[str, Any]:
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("Consent", consent_id)
    patient = session.get(Patient, consent.patient_id)
    assert patient is not None
    resolved = load(session, patient)
    enforce(principal, "read-record", resolved.state, session=session)
    return consent.resource


def traces(
    session: Session, principal: Principal, patient_id: str, count: int, offset: int
) -> list[dict[str, Any]]:
    """Who accessed this DMP: all of it for the holder and the médecin traitant, a PS's own
    actions for any other PS (R39), minus what a legal representative may not know (R24)."""
    from parcours.audit.fhir import events_for_patient

    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("Patient", patient_id)
    decision = enforce(principal, "read-traces", load(session, patient).state)
    hidden: frozenset[str] = frozenset()
    if decision.trace_scope == "representative":
        from parcours.dossier.models import Document

        hidden = frozenset(
            session.execute(
                select(Document.id).where(
                    Document.patient_id == patient_id,
                    or_(Document.invisible_representants, Document.secret_session),
                )
            ).scalars()
        )
    return events_for_patient(
        session,
        patient_id,
        count,
        offset,
        actor_id=principal.actor_id if decision.trace_scope == "own" else None,
        hidden_resources=hidden,
    )


def patient_ids(references: list[str]) -> list[str]:
    """Ids from ``patient`` search values (``id``, ``Patient/id`` or an absolute URL)."""
    return [v.rstrip("/").rsplit("Patient/", 1)[-1] for v in references]


def ins_condition(values: list[str]) -> Any:
    """``patient.identifier`` values (``[system|]INS``) as a condition on ``Patient``."""
    conds = []
    for raw in values:
        tok = parse_token(raw)
        cond = Patient.ins == tok.code
        if tok.system:
            cond = and_(cond, Patient.ins_system == tok.system)
        conds.append(cond)
    return or_(*conds)


def authorise_search(
    session: Session, principal: Principal, query: SearchQuery
) -> dict[str, RecordState]:
    """Every record a search touches (``patient`` / ``patient.identifier``) must be permitted
    before any of its rows is read (ITI-66 and ITI-67 alike); returns the permitted records'
    policy views, which filter the hits document by document (R26)."""
    permitted: dict[str, RecordState] = {}
    for crit in query.criteria:
        if crit.param.name == "patient":
            found = patient_ids(crit.values)
        elif crit.param.name == "patient.identifier":
            found = list(
                session.execute(select(Patient.id).where(ins_condition(crit.values))).scalars()
            )
        else:
            continue
        for patient_id in found:
            facts = facts_for(session, patient_id, principal.actor_id, missing_ok=True)
            if facts is not None:
                state, seen = facts
                enforce(principal, "search", state, session=session, known_reader=seen)
                permitted[patient_id] = state
    return permitted
