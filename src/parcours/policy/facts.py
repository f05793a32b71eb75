"""What the policy-decision point decides on: the request, the actor, the record, the document.

These are plain immutable values, built by the callers (the DMP service, the schedulers, the
portals) from the token and the database, so that ``engine.decide`` is a pure function: the same
facts always give the same decision, a test can state them directly, and an auditor can replay a
trace. Time is a fact too (``Request.now``), never read inside a rule (reference dmp-access.md
§5.1). Field names follow §1.3 of that reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Action = Literal[
    # record
    "create",  # open or activate a DMP (R41)
    "close",  # R38
    "reactivate",  # R38
    "read-record",  # the record's summary (Patient, settings)
    "read-traces",  # R39
    "heir-request",  # R43
    "record-death",  # the CNAM feed closes the record at the holder's death (G2, R43)
    # content
    "read",
    "search",
    "publish",  # R27
    "replace",  # R28
    "archive",  # R29
    "delete",  # R29 (PS), R31 (holder)
    "mask",  # R30: set MASQUE_PS
    "unmask",  # R30
    "make-invisible",  # R32: set INVISIBLE_PATIENT
    "make-visible",  # R33: announcement done
    # holder's settings
    "block",  # R34
    "unblock",  # R34
    "set-opposition",  # R35: oppose / allow bris de glace or centre 15
    "grant",  # R36 / R12: authorisation for a PS
    "revoke",  # R36
    "delegate",  # R13: a PS records an authorisation for another PS
    "team-consent",  # R36 / R11: initial consent given to / withdrawn from a care team
    "remove-from-team",  # R36: opposition to one member
    "designate-mt",  # R37
    "mask-all",  # R21b switch
    "set-contact",  # the holder's e-mail for notifications (his own data, not the record's)
]

AccessMode = Literal["normal", "bris_de_glace", "centre_15"]

Purpose = Literal["care", "contract_conclusion", "contract_execution", "employment", "other"]

ActorKind = Literal[
    "patient",  # the holder himself (or another patient: then not the holder)
    "legal_representative",
    "professional",  # PS, including MT, regulator, occupational doctor… (see ``role``)
    "social_professional",  # non-health member of a care team (L1110-12)
    "structure",  # a structure certificate (AIR) with no acting PS named: G1 denies
    "system",  # CNAM feeding system
    "agent",  # CPAM desk agent (creation only)
    "insurer",  # complementary insurer or its médecin-conseil
    "employer",
    "lender",
    "cpam_medical_officer",  # CPAM médecin-conseil (service médical)
    "heir",
]

Role = Literal["none", "regulator", "occupational", "fire", "ehpad_coordinator", "pmi"]

RecordStatus = Literal["active", "closed", "absent", "opposed"]

DocumentStatus = Literal["current", "archived", "deprecated", "deleted"]


@dataclass(frozen=True)
class Actor:
    """Who acts. ``id`` is the IDNPS (``8``+RPPS) for a PS, the INS for a patient or a legal
    representative's own INS, the agent/system id otherwise. ``profession`` is the TRE_G15 code
    (``10`` médecin, ``21`` pharmacien, ``40`` chirurgien-dentiste, ``50`` sage-femme, ``60``
    infirmier, ``70`` masseur-kinésithérapeute, ``80`` pédicure-podologue, ``91`` orthophoniste,
    ``92`` orthoptiste) or ``SOCIAL`` for a social / médico-social professional.
    ``via_structure`` is set when a hospital system authenticated by its own certificate asserts
    the acting PS (indirect authentication, "AIR"): the decision is taken for that PS (G1)."""

    kind: ActorKind
    id: str
    profession: str | None = None
    role: Role = "none"
    structure: str | None = None
    strong_auth: bool = True
    via_structure: str | None = None
    # For a legal representative: the holders (patient ids) he represents.
    represents: frozenset[str] = frozenset()
    # For an EHPAD médecin coordonnateur: the residents (patient ids) of his EHPAD.
    residents: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Flags:
    """Confidentiality flags a publisher states (R46, R24b). ``None`` = not stated."""

    masque_ps: bool | None = None
    invisible_patient: bool | None = None
    invisible_representatives: bool | None = None


@dataclass(frozen=True)
class Request:
    action: Action
    now: datetime
    mode: AccessMode = "normal"
    justification: str | None = None  # bris de glace (R17)
    call_id: str | None = None  # centre 15 (R18)
    purpose: Purpose = "care"
    minor_secret: bool = False  # R24b secret connection for a minor
    consent_collected: bool = False  # R12: the user asserts he collected the consent
    flags: Flags = field(default_factory=Flags)  # publish / replace
    document_class: str | None = None  # publish: TRE_A03 class of the new document
    document_type: str | None = None  # publish: type code of the new document
    target: str | None = None  # block / grant / designate-mt…: the PS (IDNPS) concerned
    # set-opposition: which switch ("bris_de_glace" | "centre_15"); mask-all / team-consent:
    # "on"/"off"; ignored elsewhere.
    setting: str | None = None
    # The caller knows from the traces whether this actor already read this record (normal
    # mode): the first consultation by a PS is notified to the holder (§3.2).
    first_access: bool = False


@dataclass(frozen=True)
class Authorisation:
    """An explicit consent for one PS (R12, R13) or an express consent (R14, R15)."""

    ps: str
    granted_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    granted_by: str | None = None  # the holder, or the delegating PS (R13)
    kind: Literal["authorisation", "express"] = "authorisation"

    def valid_at(self, now: datetime) -> bool:
        return (
            self.granted_at <= now
            and (self.expires_at is None or now < self.expires_at)
            and (self.revoked_at is None or now < self.revoked_at)
        )


@dataclass(frozen=True)
class CareTeam:
    """A care team of the holder (L1110-12): everyone acting for ``structure`` (an MSP, the
    hospital of a stay) and/or the listed ``members``, during [since, until)."""

    id: str
    since: datetime
    structure: str | None = None
    members: frozenset[str] = frozenset()
    until: datetime | None = None
    consented_at: datetime | None = None  # the holder's initial consent (R11, CE 2025)
    consent_withdrawn_at: datetime | None = None
    occupational: bool = False  # an occupational-health service: never a presumption (R15)

    def includes(self, actor: Actor, now: datetime) -> bool:
        if now < self.since or (self.until is not None and now >= self.until):
            return False
        if actor.id in self.members:
            return True
        structure = actor.structure
        return self.structure is not None and structure == self.structure

    def consented(self, now: datetime) -> bool:
        return (
            self.consented_at is not None
            and self.consented_at <= now
            and (self.consent_withdrawn_at is None or now < self.consent_withdrawn_at)
        )


@dataclass(frozen=True)
class RecordState:
    patient_id: str
    status: RecordStatus
    ins: str | None = None
    holder_birth_date: date | None = None
    closed_at: datetime | None = None
    closure_reason: Literal["holder", "death", "other"] | None = None
    mt: str | None = None  # IDNPS of the current médecin traitant
    oppose_bris_de_glace: bool = False
    oppose_centre_15: bool = False
    blocked: frozenset[str] = frozenset()
    authorisations: tuple[Authorisation, ...] = ()
    care_teams: tuple[CareTeam, ...] = ()
    removed_from_team: frozenset[str] = frozenset()  # holder's opposition to a member
    mask_all: bool = False
    representatives: frozenset[str] = frozenset()  # ids of legal representatives
    heirs_opposed: bool = False


@dataclass(frozen=True)
class DocumentState:
    id: str
    author: str  # IDNPS, the holder's INS (patient-authored) or the system id
    class_code: str
    type_code: str
    published_at: datetime
    author_kind: Literal["professional", "patient", "legal_representative", "system"] = (
        "professional"
    )
    author_structure: str | None = None
    status: DocumentStatus = "current"
    masque_ps: bool = False
    invisible_patient: bool = False
    invisible_representatives: bool = False
    announced_at: datetime | None = None
    secret_session: bool = False  # published in a minor's secret connection (R24b)
