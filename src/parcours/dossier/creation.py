"""Opening a DMP with the patient present (CPAM desk, pharmacy), and the code that activates
his online access.

The desk checks the identity (INS with its key, the birth date against the NIR's year and month
of birth), records the patient's explicit consent — or his legal representative's for a minor —
and hands over an access code on a printed letter. The record itself is opened by the same
``records.create_patient`` / ``records.record_consent`` the FHIR API uses, so the channel
(``guichet-cpam`` for an agent, ``pharmacie`` for a pharmacist) is recorded on the record for
the steering figures, and the policy decides who may open one (R41).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.orm import Session

from parcours.auth.principal import Principal
from parcours.dossier import records
from parcours.dossier.models import AccessCode, Patient
from parcours.fhir.errors import FHIRError
from parcours.identity import INS, IdentifierError
from parcours.identity.ins import INS_OID_NIR
from parcours.storage.models import utcnow

# Unambiguous on paper: no 0/O, 1/I/L. 16 characters ≈ 79 bits.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 16
CODE_TTL = timedelta(days=90)
MAX_FAILURES = 5
ADULT_AGE = 18
PHARMACIST = "21"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class CreationRefused(ValueError):
    """What the desk must correct, in French (nothing is created)."""


@dataclass(frozen=True)
class Representative:
    name: str
    quality: str  # mère, père, tuteur…


@dataclass(frozen=True)
class Opened:
    patient_id: str
    access_code: str  # shown once, on the letter; only its hash is kept
    channel: str
    minor: bool


def birth_matches_nir(nir: str, born: date) -> bool:
    """NIR digits 2–3 are the year of birth, 4–5 the month (INSEE). Months 20–42 and 50–99
    are used when the month is unknown or for some foreign-born registrations: not checked."""
    year, month = int(nir[1:3]), int(nir[3:5])
    if year != born.year % 100:
        return False
    return not 1 <= month <= 12 or month == born.month


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def channel_for(principal: Principal) -> str:
    if principal.kind == "agent":
        return "guichet-cpam"
    if principal.kind == "professional" and principal.profession == PHARMACIST:
        return "pharmacie"
    raise FHIRError(
        403,
        "forbidden",
        "La création d'un DMP au guichet est réservée aux agents de l'Assurance Maladie et aux "
        "pharmaciens.",
    )


def open_record(
    session: Session,
    principal: Principal,
    *,
    ins: str,
    family: str,
    given: str,
    born: date,
    gender: str,
    consent: bool,
    representative: Representative | None,
) -> Opened:
    channel = channel_for(principal)
    try:
        parsed = INS.parse(ins)
    except IdentifierError as exc:
        raise CreationRefused(f"{exc} Vérifiez la carte Vitale ou l'attestation.") from None
    if born > utcnow().date():
        raise CreationRefused("La date de naissance ne peut pas être dans le futur.")
    if not birth_matches_nir(parsed.value, born):
        raise CreationRefused(
            "La date de naissance ne correspond pas à l'INS (année et mois de naissance du NIR) : "
            "vérifiez l'identité du patient."
        )
    minor = age_on(born, utcnow().date()) < ADULT_AGE
    if minor and (representative is None or not representative.name.strip()):
        raise CreationRefused(
            "Patient mineur : indiquez le représentant légal présent (nom et qualité), "
            "c'est lui qui consent."
        )
    if not consent:
        raise CreationRefused(
            "Le consentement exprès du patient (ou de son représentant légal) est obligatoire : "
            "cochez la case après le lui avoir demandé."
        )
    patient, _created = records.create_patient(
        session,
        principal,
        {
            "resourceType": "Patient",
            "identifier": [{"system": f"urn:oid:{INS_OID_NIR}", "value": parsed.value}],
            "name": [{"family": family.strip(), "given": given.split()}],
            "gender": gender,
            "birthDate": born.isoformat(),
        },
    )
    performer = (
        [{"display": f"{representative.name.strip()} ({representative.quality.strip()})"}]
        if minor and representative is not None
        else [{"reference": f"Patient/{patient.id}"}]
    )
    records.record_consent(
        session,
        principal,
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient.id}"},
            "performer": performer,
            "extension": [{"url": records.EXT_CHANNEL, "valueCode": channel}],
        },
    )
    code = issue_code(session, principal, patient)
    return Opened(patient.id, code, channel, minor)


def _hash(code: str, salt: bytes) -> str:
    digest = hashlib.scrypt(normalise(code).encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def normalise(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def format_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def issue_code(session: Session, principal: Principal, patient: Patient) -> str:
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    now = utcnow()
    row = session.get(AccessCode, patient.id) or AccessCode(patient_id=patient.id)
    row.code_hash = _hash(code, secrets.token_bytes(16))
    row.issued_at, row.issued_by = now, principal.actor_id
    row.expires_at, row.activated_at, row.failures = now + CODE_TTL, None, 0
    session.add(row)
    session.flush()
    return format_code(code)


def check_code(session: Session, ins: str, code: str) -> bool | None:
    """``None`` when no code was issued for this INS; else whether ``code`` opens the access
    (unexpired, fewer than five failures — then a new code must be issued at a desk)."""
    patient = records.patient_by_ins(session, ins)
    row = session.get(AccessCode, patient.id) if patient is not None else None
    if row is None:
        return None
    now = utcnow()
    if row.expires_at < now or row.failures >= MAX_FAILURES:
        return False
    _, salt, _ = row.code_hash.split("$")
    if not hmac.compare_digest(_hash(code, bytes.fromhex(salt)), row.code_hash):
        row.failures += 1
        session.flush()
        return False
    row.failures = 0
    if row.activated_at is None:
        row.activated_at = now
    session.flush()
    return True
