"""Every scenario of shared/reference/dmp-access.md §4 (#1 … #120), one pytest param per row.

Expectations are read from the reference table (deciding rule in brackets, notification
column) and the matrix of §2.5, never from the engine's output. Conventions:

- DENY: ``d.rule`` is the bracketed rule (either side of a ``/``), no notification (R45).
- PERMIT: each bracketed rule (or one side of ``A/B``) is in ``d.rules``; notifications are the
  exact multiset of (recipient, event) of the row ("—" = none), unless stated ``includes``.
- Searches check the exact set of returned document ids (R26); scheduler rows check
  ``announcement_due``. Some rows carry follow-up steps the row itself states (e.g. #119).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest
from _pytest.mark.structures import ParameterSet

from parcours.policy.engine import announcement_due, decide, load_rules, search
from parcours.policy.facts import Actor, DocumentState, Flags, RecordState, Request
from tests.policy.scenario_cast import (
    A_ID,
    ADVANCE_DIRECTIVES,
    C_ID,
    CPAM_V,
    CR,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    D10,
    D11,
    DAY,
    E_ID,
    GY,
    H_CERTIFICATE,
    H_STAY,
    H_STAY_JUST_CONSENTED,
    H_STAY_UNCONSENTED,
    H_STAY_WITHDRAWN,
    HEIR,
    HOUR,
    IMAGING_CR,
    INSURER_I,
    K2_ID,
    M1,
    M2,
    M_AS_HOLDER,
    M_DOCUMENTS,
    M_RECORD,
    M_RECORD_AT_18,
    MSP_TEAM,
    N2,
    N2_VIA_H,
    NOW,
    P_DOCUMENTS,
    PH,
    PP,
    R1,
    R2,
    REIMBURSEMENTS,
    SAMU,
    SW,
    THIS_MORNING,
    W_ID,
    W_SERVICE_TEAM,
    X_ID,
    X_OLD_CR,
    A,
    B,
    C,
    D,
    E,
    G,
    K,
    L,
    N,
    P,
    Q,
    S,
    U,
    W,
    X,
    Z,
    authorisation,
    months_after,
    p_record,
    without_authorisation,
    years_before,
)

Pair = tuple[str, str]

FIRST_ACCESS: list[Pair] = [("holder", "first-access")]
BRIS_DE_GLACE: list[Pair] = [("holder", "bris-de-glace"), ("mt", "bris-de-glace")]
CENTRE_15: list[Pair] = [("holder", "centre-15"), ("mt", "centre-15")]
CONFIRMATION: list[Pair] = [("holder", "confirmation")]
NEW_DOCUMENT: list[Pair] = [("holder", "new-document")]
JUSTIFICATION = "inconscient, douleur thoracique"


# --- calls ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decide:
    request: Request
    actor: Actor
    record: RecordState
    document: DocumentState | None
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Search:
    request: Request
    actor: Actor
    record: RecordState
    documents: tuple[DocumentState, ...]
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Due:
    document: DocumentState
    at: datetime


Call = Decide | Search | Due


def ask(
    action: str,
    actor: Actor,
    document: DocumentState | None = None,
    *,
    record: RecordState | None = None,
    rules: dict[str, Any] | None = None,
    **request: Any,
) -> Decide:
    request.setdefault("now", NOW)
    return Decide(
        Request(action=action, **request),  # type: ignore[arg-type]
        actor,
        p_record() if record is None else record,
        document,
        rules or {},
    )


def find(
    actor: Actor,
    *,
    record: RecordState | None = None,
    documents: Iterable[DocumentState] = P_DOCUMENTS,
    rules: dict[str, Any] | None = None,
    **request: Any,
) -> Search:
    request.setdefault("now", NOW)
    return Search(
        Request(action="search", **request),
        actor,
        p_record() if record is None else record,
        tuple(documents),
        rules or {},
    )


def publish(
    actor: Actor,
    kind: tuple[str, str],
    *,
    masque_ps: bool = False,
    invisible_patient: bool = False,
    invisible_representatives: bool | None = None,
    **options: Any,
) -> Decide:
    flags = Flags(masque_ps, invisible_patient, invisible_representatives)
    return ask(
        "publish", actor, document_class=kind[0], document_type=kind[1], flags=flags, **options
    )


def bris_de_glace(actor: Actor, document: DocumentState, **options: Any) -> Decide:
    options.setdefault("justification", JUSTIFICATION)
    return ask("read", actor, document, mode="bris_de_glace", **options)


def centre_15(actor: Actor, document: DocumentState, **options: Any) -> Decide:
    options.setdefault("call_id", "APPEL-1")
    return ask("read", actor, document, mode="centre_15", **options)


# --- expectations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    permit: bool | None = None
    rules: tuple[str, ...] = ()  # "R36/R11" = either
    notify: tuple[Counter[Pair], ...] | None = None  # alternatives; None = not checked
    includes: bool = False  # notify: at least these, not exactly
    ids: frozenset[str] | None = None  # search: exact result
    absent: frozenset[str] = field(default_factory=frozenset)  # search: not in the result
    due: str | None = None  # announcement_due


def permit(
    *rules: str,
    notify: Sequence[Pair] | None = (),
    notify_one_of: Sequence[Sequence[Pair]] = (),
    includes: bool = False,
    ids: Iterable[str] | None = None,
    absent: Iterable[str] = (),
) -> Expect:
    wanted = notify_one_of or (None if notify is None else [notify])
    return Expect(
        permit=True,
        rules=rules,
        notify=None if wanted is None else tuple(Counter(pairs) for pairs in wanted),
        includes=includes,
        ids=None if ids is None else frozenset(ids),
        absent=frozenset(absent),
    )


def deny(rule: str, *, ids: Iterable[str] | None = None) -> Expect:
    return Expect(permit=False, rules=(rule,), ids=None if ids is None else frozenset(ids))


def becomes(due: str | None) -> Expect:
    return Expect(due=due)


Step = tuple[Call, Expect]


def row(number: int, call: Call, expect: Expect, *, then: Sequence[Step] = ()) -> ParameterSet:
    return pytest.param(((call, expect), *then), id=f"row-{number:02d}")


# --- records and documents varied by a row --------------------------------------------------
def masked(document: DocumentState) -> DocumentState:
    return replace(document, masque_ps=True)


def with_status(document: DocumentState, status: str) -> DocumentState:
    return replace(document, status=status)


def documents_with(changed: DocumentState) -> tuple[DocumentState, ...]:
    return tuple(changed if d.id == changed.id else d for d in P_DOCUMENTS)


CLOSED_2Y = p_record(status="closed", closed_at=years_before(NOW, 2), closure_reason="holder")
PURGED = p_record(status="closed", closed_at=years_before(NOW, 10) - DAY, closure_reason="holder")
DECEASED = p_record(status="closed", closed_at=NOW - 3 * DAY, closure_reason="death")
NO_RECORD = p_record(status="absent", authorisations=(), care_teams=(), mt=None)
BLOCKED_X_OLD_AUTH = p_record(
    authorisations=(
        *p_record().authorisations,
        authorisation(X_ID, granted_at=NOW - 400 * DAY, expires_at=None),
    )
)
X_IN_CARE_TODAY = p_record(
    authorisations=(*p_record().authorisations, authorisation(X_ID, granted_at=NOW - HOUR))
)
W_EXPRESS_CONSENT = p_record(
    authorisations=(
        *p_record().authorisations,
        authorisation(W_ID, granted_at=NOW - DAY, expires_at=None, kind="express"),
    )
)
I_WRITTEN_CONSENT = p_record(
    authorisations=(
        *p_record().authorisations,
        authorisation(INSURER_I.id, expires_at=None, kind="express"),
    )
)
H_UNCONSENTED = p_record(care_teams=(MSP_TEAM, H_STAY_UNCONSENTED))
H_JUST_CONSENTED = p_record(care_teams=(MSP_TEAM, H_STAY_JUST_CONSENTED))
H_WITHDRAWN = p_record(care_teams=(MSP_TEAM, H_STAY_WITHDRAWN))
MASK_ALL = p_record(mask_all=True)
X_REGULATOR = replace(X, role="regulator", structure=SAMU)


TABLE = [
    # #1 A (MT), first access — read d1
    row(1, ask("read", A, D1, first_access=True), permit("R10", notify=FIRST_ACCESS)),
    # #2 A — read d2 (masked, not his)
    row(2, ask("read", A, D2), permit("R10", "R21")),
    # #3 A — read d10
    row(3, ask("read", A, D10), permit("R10")),
    # #4 C (care team), first access — read d1
    row(4, ask("read", C, D1, first_access=True), permit("R11", notify=FIRST_ACCESS)),
    # #5 C — read d2 (masked)
    row(5, ask("read", C, D2), deny("R21")),
    # #6 C removed from the care team — read d1
    row(6, ask("read", C, D1, record=p_record(removed_from_team=frozenset({C_ID}))), deny("R19")),
    # #7 E (authorisation) — read d2, his own masked CR
    row(7, ask("read", E, D2, first_access=True), permit("R21", notify=FIRST_ACCESS)),
    # #8 E, authorisation expired yesterday — read d1
    row(
        8,
        ask(
            "read",
            E,
            D1,
            record=p_record(
                authorisations=(
                    *without_authorisation(E_ID),
                    authorisation(E_ID, granted_at=NOW - 2 * DAY, expires_at=NOW - DAY),
                )
            ),
        ),
        deny("R19"),
    ),
    # #9 E, authorisation revoked this morning — read d1
    row(
        9,
        ask(
            "read",
            E,
            D1,
            record=p_record(
                authorisations=(
                    *without_authorisation(E_ID),
                    authorisation(E_ID, granted_at=NOW - 3 * HOUR, revoked_at=THIS_MORNING),
                )
            ),
        ),
        deny("R19"),
    ),
    # #10 B, no basis — read d1
    row(10, ask("read", B, D1), deny("R19")),
    # #11 B, no basis — search
    row(11, find(B), deny("R19", ids=[])),
    # #12 B, bris de glace — read d1
    row(12, bris_de_glace(B, D1), permit("R17", notify=BRIS_DE_GLACE)),
    # #13 B, bris de glace, empty justification — read d1
    row(13, bris_de_glace(B, D1, justification=""), deny("R17")),
    # #14 B, bris de glace, P opposed emergency access — read d1
    row(14, bris_de_glace(B, D1, record=p_record(oppose_bris_de_glace=True)), deny("R17")),
    # #15 B, bris de glace — read d2 (masked)
    row(15, bris_de_glace(B, D2), deny("R21")),
    # #16 B, bris de glace — search: every médecin-readable document but masked d2
    row(
        16,
        find(B, mode="bris_de_glace", justification=JUSTIFICATION),
        permit(
            "R17",
            notify=BRIS_DE_GLACE,
            ids=["d1", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10"],
        ),
    ),
    # #17 Q regulator, call id — read d1
    row(17, centre_15(Q, D1), permit("R18", notify=CENTRE_15)),
    # #18 Q, P opposed regulator access — read d1
    row(18, centre_15(Q, D1, record=p_record(oppose_centre_15=True)), deny("R18")),
    # #19 Q, P opposed bris de glace only — read d3
    row(
        19,
        centre_15(Q, D3, record=p_record(oppose_bris_de_glace=True)),
        permit("R18", notify=CENTRE_15),
    ),
    # #20 Q, centre 15, no call id — read d1
    row(20, centre_15(Q, D1, call_id=None), deny("R18")),
    # #21 U, bris de glace, P opposed regulator access only — read d1
    row(
        21,
        bris_de_glace(U, D1, record=p_record(oppose_centre_15=True)),
        permit("R17", notify=BRIS_DE_GLACE),
    ),
    # #22 Z (not a regulator) in mode centre 15 — read d1
    row(22, centre_15(Z, D1), deny("R18")),
    # #23 X blocked, old authorisation — read d1
    row(23, ask("read", X, D1, record=BLOCKED_X_OLD_AUTH), deny("G4")),
    # #24 X blocked, bris de glace — read d1
    row(24, bris_de_glace(X, D1), deny("G4")),
    # #25 X blocked — read his own old CR
    row(25, ask("read", X, X_OLD_CR), deny("G4")),
    # #26 X blocked, on-duty regulator — centre 15 read d1
    row(26, centre_15(X_REGULATOR, D1), deny("G4")),
    # #27 X blocked, P in his care today — publish a CR
    row(27, publish(X, CR, record=X_IN_CARE_TODAY), permit("R27", notify=NEW_DOCUMENT)),
    # #28 P — block A while A is MT
    row(28, ask("block", P, target=A_ID), deny("R34")),
    # #29 A is MT and blocked — read d1
    row(29, ask("read", A, D1, record=p_record(blocked=frozenset({X_ID, A_ID}))), deny("G4")),
    # #30 K (authorisation) — read d3 imaging (kiné × imagerie ✓?)
    row(30, ask("read", K, D3, first_access=True), permit("R12", "R20", notify=FIRST_ACCESS)),
    # #31 K — read d4 biology (kiné × biologie ✗?)
    row(31, ask("read", K, D4), deny("R20")),
    # #32 Ph (authorisation) — read d9 dispensations
    row(
        32,
        ask("read", PH, D9, first_access=True),
        permit("R12", "R20", notify=FIRST_ACCESS),
    ),
    # #33 D (authorisation) — read d10 psychiatric synthesis
    row(33, ask("read", D, D10), deny("R20")),
    # #34 Ph — search: pharmacien ✓/✓? types (CR, biologie, dispensations, remb., espace perso)
    row(34, find(PH), permit(ids=["d1", "d4", "d5", "d6", "d7", "d8", "d9"])),
    # #35 I (mutuelle médecin-conseil) with P's written consent — read d1
    row(
        35,
        ask("read", INSURER_I, D1, record=I_WRITTEN_CONSENT),
        deny("G3"),
    ),
    # #36 I, bris de glace — read d1
    row(36, bris_de_glace(INSURER_I, D1), deny("G3")),
    # #37 V CPAM médecin-conseil — read d7
    row(37, ask("read", CPAM_V, D7), deny("G3")),
    # #38 A for a life-insurance questionnaire — read d1
    row(38, ask("read", A, D1, purpose="contract_conclusion"), deny("G3")),
    # #39 W médecin du travail, no consent — read d1
    row(39, ask("read", W, D1), deny("R15")),
    # #40 W with P's express consent — read d1
    row(
        40,
        ask("read", W, D1, first_access=True, record=W_EXPRESS_CONSENT),
        permit("R15", notify=FIRST_ACCESS),
    ),
    # #41 W, express consent, occupational_doctor_access=never — read d1
    row(
        41,
        ask(
            "read",
            W,
            D1,
            record=W_EXPRESS_CONSENT,
            rules={"occupational_doctor_access": "never"},
        ),
        deny("R15"),
    ),
    # #42 W, his occupational service listed in P's care teams — read d1
    row(
        42,
        ask("read", W, D1, record=p_record(care_teams=(MSP_TEAM, H_STAY, W_SERVICE_TEAM))),
        deny("R15"),
    ),
    # #43 P — read d2 (masked from PS)
    row(43, ask("read", P, D2), permit()),
    # #44 P — read d4 (invisible, day 5)
    row(44, ask("read", P, D4), deny("R22")),
    # #45 P — read d5 (invisible, day 20, no announcement)
    row(45, ask("read", P, D5), deny("R22")),
    # #46 P — read d6 (invisible, day 35)
    row(46, ask("read", P, D6), permit("R22")),
    # #47 scheduler, d5 past day 14, not announced
    row(47, Due(D5, NOW), becomes("reminder")),
    # #48 scheduler, d4-like document reaches 1 calendar month
    row(48, Due(D4, months_after(D4.published_at, 1)), becomes("visible")),
    # #49 P — search his record
    row(49, find(P), permit(ids=["d1", "d2", "d3", "d6", "d7", "d8", "d9", "d10"])),
    # #50 A, after the announcement consultation — make d4 visible
    row(
        50,
        ask("make-visible", A, D4),
        permit("R33", notify=[("holder", "document-visible")]),
    ),
    # #51 B (no basis) — make d4 visible
    row(51, ask("make-visible", B, D4), deny("R19")),
    # #52 E — make d1 (not his, already visible) invisible
    row(52, ask("make-invisible", E, D1), deny("R32")),
    # #53 P — make d3 invisible to himself
    row(53, ask("make-invisible", P, D3), deny("R32")),
    # #54 P — mask d1
    row(54, ask("mask", P, D1), permit("R30", notify=CONFIRMATION)),
    # #55 E, after P masked d1 — read d1
    row(55, ask("read", E, masked(D1)), deny("R21")),
    # #56 C — mask d1
    row(56, ask("mask", C, D1), deny("R30")),
    # #57 P — delete d8 (his advance directives)
    row(57, ask("delete", P, D8), permit("R31", notify=CONFIRMATION)),
    # #58 P — delete d1 (by A); then A can no longer read it
    row(
        58,
        ask("delete", P, D1, rules={"patient_may_delete_ps_documents": True}),
        permit("R31", notify=CONFIRMATION),
        then=[(ask("read", A, with_status(D1, "deleted")), deny("R25"))],
    ),
    # #59 P — delete d7 reimbursements
    row(59, ask("delete", P, D7), deny("R31")),
    # #60 A (author) — delete d1; later reads by anyone DENY R25
    row(
        60,
        ask("delete", A, D1),
        permit("R29", notify=[("holder", "document-removed")]),
        then=[
            (ask("read", A, with_status(D1, "deleted")), deny("R25")),
            (ask("read", P, with_status(D1, "deleted")), deny("R25")),
        ],
    ),
    # #61 B — replace d1
    row(61, ask("replace", B, D1, flags=Flags(False, False)), deny("R28")),
    # #62 E (author) — replace d2, keeping MASQUE_PS
    row(62, ask("replace", E, D2, flags=Flags(True, False)), permit("R28")),
    # #63 A (author) — archive d1; the default search no longer returns it
    row(
        63,
        ask("archive", A, D1),
        permit("R29"),
        then=[
            (
                find(A, documents=documents_with(with_status(D1, "archived"))),
                permit(notify=None, absent=["d1"]),
            )
        ],
    ),
    # #64 A — publish class 60 reimbursement
    row(64, publish(A, REIMBURSEMENTS), deny("R27")),
    # #65 S (CNAM feed) — publish a d7 update
    row(65, publish(S, REIMBURSEMENTS), permit("R27", notify=NEW_DOCUMENT)),
    # #66 C (care team) — publish a nursing report
    row(66, publish(C, CR), permit("R27", notify=NEW_DOCUMENT)),
    # #67 A — add to P's personal space (class 90)
    row(67, publish(A, ADVANCE_DIRECTIVES), deny("R27")),
    # #68 P — read traces
    row(68, ask("read-traces", P), permit("R39")),
    # #69 A (MT) — read traces
    row(69, ask("read-traces", A), permit("R39")),
    # #70 K — read traces (his own)
    row(70, ask("read-traces", K), permit("R39")),
    # #71 B — read traces (his own)
    row(71, ask("read-traces", B), permit("R39")),
    # #72 P — designate E as MT
    row(
        72,
        ask("designate-mt", P, target=E_ID),
        permit(
            "R37",
            notify=[*CONFIRMATION, ("previous_mt", "mt-removed"), ("target", "mt-designated")],
        ),
    ),
    # #73 A the next day, E is MT, A neither authorised nor in a care team — read d2
    row(
        73,
        ask("read", A, D2, now=NOW + DAY, record=p_record(mt=E_ID, care_teams=(H_STAY,))),
        deny("R19"),
    ),
    # #74 R1 (parent) — read m2
    row(74, ask("read", R1, M2, record=M_RECORD), permit("R40")),
    # #75 R1 — read m1 (INVISIBLE_REPRESENTANTS_LEGAUX)
    row(75, ask("read", R1, M1, record=M_RECORD), deny("R24")),
    # #76 R1 — search M's record
    row(76, find(R1, record=M_RECORD, documents=M_DOCUMENTS), permit(ids=["m2"])),
    # #77 Dr L (M's MT) — read m1
    row(77, ask("read", L, M1, record=M_RECORD), permit("R10")),
    # #78 R2 — read M's traces (minus entries naming m1)
    row(78, ask("read-traces", R2, record=M_RECORD), permit("R39")),
    # #79 R1 — mask m2 from PS
    row(
        79,
        ask("mask", R1, M2, record=M_RECORD),
        permit(
            "R30",
            "R40",
            notify_one_of=[[("representatives", "confirmation")], CONFIRMATION],
        ),
    ),
    # #80 M turned 18 yesterday; R1 — read m2
    row(80, ask("read", R1, M2, record=M_RECORD_AT_18), deny("G5")),
    # #81 M at 18 — read m1
    row(81, ask("read", M_AS_HOLDER, M1, record=M_RECORD_AT_18), permit()),
    # #82 P — close his record
    row(82, ask("close", P), permit("R38", notify=CONFIRMATION)),
    # #83 A, record closed 2 years ago — read d1
    row(83, ask("read", A, D1, record=CLOSED_2Y), deny("G2")),
    # #84 A, record closed — publish a CR
    row(84, publish(A, CR, record=CLOSED_2Y), deny("G2")),
    # #85 P, closed 2 years ago — reactivate; then d1 is readable again by A
    row(
        85,
        ask("reactivate", P, record=CLOSED_2Y),
        permit("R38", notify=CONFIRMATION),
        then=[(ask("read", A, D1), permit("R10", notify=None))],
    ),
    # #86 P, closed 10 years + 1 day ago (purged) — reactivate
    row(86, ask("reactivate", P, record=PURGED), deny("G2")),
    # #87 P deceased, record closed for death; U bris de glace — read d1
    row(87, bris_de_glace(U, D1, record=DECEASED), deny("G2/G6")),
    # #88 P's heir, direct login — read d1
    row(88, ask("read", HEIR, D1, record=DECEASED), deny("R43")),
    # #89 P's heir — file a request (cause of death)
    row(89, ask("heir-request", HEIR, record=DECEASED), permit("R43")),
    # #90 G (CPAM agent), P present, consent recorded — activate a record
    row(
        90,
        ask("create", G, record=NO_RECORD, consent_collected=True),
        permit("R41", notify=[("holder", "record-created")]),
    ),
    # #91 G — read d1
    row(91, ask("read", G, D1), deny("R42")),
    # #92 pharmacien, patient present, no consent recorded — create a record
    row(92, ask("create", PH, record=NO_RECORD), deny("R41")),
    # #93 A with a weak (password-only) login — read d1
    row(93, ask("read", replace(A, strong_auth=False), D1), deny("G1")),
    # #94 hospital structure certificate, no acting PS — read d1
    row(94, ask("read", H_CERTIFICATE, D1), deny("G1")),
    # #95 B — read a record that does not exist / that P opposed
    row(
        95,
        ask("read-record", B, record=NO_RECORD),
        deny("G2"),
        then=[(ask("read-record", B, record=replace(NO_RECORD, status="opposed")), deny("G2"))],
    ),
    # #96 E records P's consent for K2 — delegate
    row(
        96,
        ask("delegate", E, target=K2_ID, consent_collected=True),
        permit("R13", notify=[("holder", "delegation")], includes=True),
    ),
    # #97 P — oppose bris de glace
    row(97, ask("set-opposition", P, setting="bris_de_glace"), permit("R35", notify=CONFIRMATION)),
    # #98 N, nurse of H (care team of today's stay) — read d1
    row(98, ask("read", N, D1, first_access=True), permit("R11", notify=FIRST_ACCESS)),
    # #99 N2, H's team without initial consent — read d1
    row(99, ask("read", N2, D1, record=H_UNCONSENTED), deny("R19")),
    # #100 P at H's admission desk — initial consent to H's care team
    row(
        100,
        ask("team-consent", P, record=H_UNCONSENTED, target=H_STAY.id, setting="on"),
        permit("R36/R11", notify=CONFIRMATION),
    ),
    # #101 N2, just after #100 — read d1
    row(
        101,
        ask("read", N2, D1, record=H_JUST_CONSENTED, first_access=True),
        permit("R11", notify=FIRST_ACCESS),
    ),
    # #102 Sw (social worker of H's team), after #100 — read d3 imaging
    row(102, ask("read", SW, D3, record=H_JUST_CONSENTED), deny("R20")),
    # #103 P withdrew H's initial consent; N2 — read d1
    row(103, ask("read", N2, D1, record=H_WITHDRAWN), deny("R19")),
    # #104 E's software sets an authorisation without consent_collected — grant
    row(
        104,
        ask("grant", E, target=E_ID, record=p_record(authorisations=without_authorisation(E_ID))),
        deny("R12"),
    ),
    # #105 D (authorisation) — read d8 advance directives
    row(105, ask("read", D, D8), deny("R20")),
    # #106 Pp (authorisation) — read d11 CR d'accouchement
    row(106, ask("read", PP, D11), deny("R20")),
    # #107 Z — publish a CR both INVISIBLE_PATIENT and MASQUE_PS
    row(107, publish(Z, IMAGING_CR, masque_ps=True, invisible_patient=True), deny("R46")),
    # #108 P — mask d4 (still INVISIBLE_PATIENT)
    row(108, ask("mask", P, D4), deny("R46")),
    # #109 P — delete d5 (still invisible to him)
    row(109, ask("delete", P, D5), deny("R31")),
    # #110 mask_all on; U bris de glace — search: nothing
    row(
        110,
        find(U, record=MASK_ALL, mode="bris_de_glace", justification=JUSTIFICATION),
        permit("R17", notify=BRIS_DE_GLACE, ids=[]),
    ),
    # #111 mask_all on, A (MT) — read d3 (by Z)
    row(
        111,
        ask("read", A, D3, record=MASK_ALL, rules={"mask_all_spares_mt": False}),
        deny("R21b"),
    ),
    # #112 mask_all on, A — read d1 (his own CR)
    row(112, ask("read", A, D1, record=MASK_ALL), permit("R10", "R21b")),
    # #113 Gy in secret mode — publish m3 INVISIBLE_REPRESENTANTS_LEGAUX
    row(
        113,
        publish(GY, CR, invisible_representatives=True, minor_secret=True, record=M_RECORD),
        permit("R27", "R24b"),
    ),
    # #114 Gy in secret mode — publish m4 visible to the representatives
    row(
        114,
        publish(GY, CR, invisible_representatives=False, minor_secret=True, record=M_RECORD),
        deny("R24b"),
    ),
    # #115 Dr L, normal mode, no representatives flag — publish m5
    row(115, publish(L, CR, record=M_RECORD), deny("R24b")),
    # #116 A opens P's (adult) record with minor_secret — read d1
    row(116, ask("read", A, D1, minor_secret=True), deny("R24b")),
    # #117 R1 — read M's traces after #113
    row(117, ask("read-traces", R1, record=M_RECORD), permit("R39")),
    # #118 R1 — delete m1 (INVISIBLE_REPRESENTANTS_LEGAUX)
    row(118, ask("delete", R1, M1, record=M_RECORD), deny("R24")),
    # #119 P — delete d3; then Z reads d3
    row(
        119,
        ask("delete", P, D3),
        permit("R31", notify=CONFIRMATION),
        then=[(ask("read", Z, with_status(D3, "deleted")), deny("R25"))],
    ),
    # #120 H's structure certificate ("AIR") naming N2, after #100 — read d1
    row(
        120,
        ask("read", N2_VIA_H, D1, record=H_JUST_CONSENTED, first_access=True),
        permit("R11", notify=FIRST_ACCESS),
    ),
]


def pairs(decision: Any) -> Counter[Pair]:
    return Counter((n.recipient, n.event) for n in decision.notifications)


def check(call: Call, expect: Expect) -> None:
    if isinstance(call, Due):
        assert announcement_due(call.document, call.at) == expect.due
        return
    rules = load_rules(**call.overrides) if call.overrides else None
    found: set[str] | None = None
    if isinstance(call, Search):
        decision, documents = search(
            call.request, call.actor, call.record, list(call.documents), rules=rules
        )
        found = {d.id for d in documents}
    else:
        decision = decide(call.request, call.actor, call.record, call.document, rules=rules)
    if expect.permit:
        assert decision.permit, decision
        for alternatives in expect.rules:
            assert set(alternatives.split("/")) & set(decision.rules), (alternatives, decision)
        if expect.notify is not None:
            got = pairs(decision)
            if expect.includes:
                assert any(not (want - got) for want in expect.notify), decision
            else:
                assert got in expect.notify, decision
    else:
        assert not decision.permit, decision
        assert decision.rule in expect.rules[0].split("/"), decision
        assert decision.notifications == (), decision
    if expect.ids is not None:
        assert found == set(expect.ids), decision
    assert found is None or not (found & expect.absent), (found, decision)


@pytest.mark.parametrize("steps", TABLE)
def test_scenario(steps: Sequence[Step]) -> None:
    for call, expect in steps:
        check(call, expect)


def test_every_row_once() -> None:
    assert [p.id for p in TABLE] == [f"row-{n:02d}" for n in range(1, 121)]
