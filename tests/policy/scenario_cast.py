"""The cast of the DMP access scenarios (shared/reference/dmp-access.md §4), as plain facts.

Actors, P's and M's records, their documents and a fixed clock. Everything here is data stated
from the reference; ``test_scenarios.py`` only picks and varies it (``dataclasses.replace``).
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from parcours.policy.facts import Actor, Authorisation, CareTeam, DocumentState, RecordState

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
THIS_MORNING = NOW.replace(hour=8)


def months_after(moment: datetime, months: int) -> datetime:
    """The same time ``months`` calendar months later (day clamped to the month's length)."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, _days_in(year, month)))


def years_before(moment: datetime, years: int) -> datetime:
    return months_after(moment, -12 * years)


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


# --- structures -----------------------------------------------------------------------------
MSP = "MSP-35-0001"  # A's maison de santé (C's care team)
H = "F350000001"  # hospital H where P is admitted today
SAMU = "SAMU-35"
SST = "SST-35-0007"  # W's occupational-health service

# --- identifiers ----------------------------------------------------------------------------
P_ID, P_INS = "patient-p", "181047510312345"  # P, born 1981, 45 at NOW
M_ID, M_INS = "patient-m", "211063523845678"  # M, 15 at NOW
R1_INS, R2_INS = "178023523811122", "280093523822233"  # M's parents
HEIR_INS = "283077510333344"  # P's heir

A_ID = "810000000001"  # Dr A, GP, P's MT
C_ID = "810000000002"  # C, infirmière in A's MSP
E_ID = "810000000003"  # E, endocrinologist with a valid authorisation
B_ID = "810000000004"  # B, cardiologist, no basis
K_ID = "810000000005"  # K, kiné with authorisation
PH_ID = "810000000006"  # Ph, pharmacien with authorisation
D_ID = "810000000007"  # D, chirurgien-dentiste with authorisation
X_ID = "810000000008"  # X, médecin blocked by P
U_ID = "810000000009"  # U, urgentiste, no authorisation
Q_ID = "810000000010"  # Q, SAMU regulator
W_ID = "810000000011"  # W, médecin du travail
I_ID = "810000000012"  # I, médecin-conseil of P's mutuelle
V_ID = "810000000013"  # V, médecin-conseil of the CPAM
Z_ID = "810000000014"  # Z, radiologist (author of d3)
PSY_ID = "810000000015"  # the psychiatrist who wrote d10
LAB_ID = "810000000016"  # the biologist who signed d4, d5
PHARMACY_ID = "810000000017"  # the pharmacist who fed d9
OB_ID = "810000000018"  # Ob, obstetrician (author of d11)
PP_ID = "810000000019"  # Pp, pédicure-podologue with authorisation
N_ID = "810000000020"  # N, nurse of H
N2_ID = "810000000021"  # N2, nurse of H
K2_ID = "810000000022"  # K2, kiné E refers P to
L_ID = "810000000023"  # Dr L, M's MT
Y_ID = "810000000024"  # Dr Y, gynécologue who saw M (author of m1)
GY_ID = "810000000025"  # Dr Gy, gynécologue seeing M under L1111-5 (secret)
SW_ID = "SOC-H-0001"  # Sw, social worker of H's discharge team
G_ID = "CPAM35-A001"  # G, CPAM desk agent
S_ID = "CNAM-FEED"  # S, CNAM feeding system


def professional(idnps: str, profession: str = "10", **attributes: Any) -> Actor:
    return Actor(kind="professional", id=idnps, profession=profession, **attributes)


# --- actors ---------------------------------------------------------------------------------
P = Actor(kind="patient", id=P_INS)
A = professional(A_ID, structure=MSP)
C = professional(C_ID, "60", structure=MSP)
E = professional(E_ID, structure="CAB-E")
B = professional(B_ID, structure="CAB-B")
K = professional(K_ID, "70", structure="CAB-K")
PH = professional(PH_ID, "21", structure="OFFICINE-PH")
D = professional(D_ID, "40", structure="CAB-D")
X = professional(X_ID, structure="CAB-X")
U = professional(U_ID, structure="CH-URGENCES-U")
Q = professional(Q_ID, role="regulator", structure=SAMU)
W = professional(W_ID, role="occupational", structure=SST)
Z = professional(Z_ID, structure="IMAGERIE-Z")
PP = professional(PP_ID, "80", structure="CAB-PP")
N = professional(N_ID, "60", structure=H)
N2 = professional(N2_ID, "60", structure=H)
N2_VIA_H = professional(N2_ID, "60", structure=H, via_structure=H)  # AIR mode, N2 named
H_CERTIFICATE = Actor(kind="structure", id=H, via_structure=H)  # no acting PS named
SW = Actor(kind="social_professional", id=SW_ID, profession="SOCIAL", structure=H)
L = professional(L_ID, structure="CAB-L")
GY = professional(GY_ID, structure="CAB-GY")
INSURER_I = Actor(kind="insurer", id=I_ID, profession="10")
CPAM_V = Actor(kind="cpam_medical_officer", id=V_ID, profession="10")
G = Actor(kind="agent", id=G_ID)
S = Actor(kind="system", id=S_ID)
HEIR = Actor(kind="heir", id=HEIR_INS)
M_AS_HOLDER = Actor(kind="patient", id=M_INS)
R1 = Actor(kind="legal_representative", id=R1_INS, represents=frozenset({M_ID}))
R2 = Actor(kind="legal_representative", id=R2_INS, represents=frozenset({M_ID}))


# --- consents -------------------------------------------------------------------------------
def authorisation(
    ps: str,
    *,
    granted_at: datetime = NOW - 2 * HOUR,
    expires_at: datetime | None = NOW + 22 * HOUR,  # explicit_consent_ttl = 24 h
    revoked_at: datetime | None = None,
    kind: Literal["authorisation", "express"] = "authorisation",
    granted_by: str = P_INS,
) -> Authorisation:
    return Authorisation(
        ps=ps,
        granted_at=granted_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        granted_by=granted_by,
        kind=kind,
    )


MSP_TEAM = CareTeam(
    id="msp", structure=MSP, since=NOW - 3 * 365 * DAY, consented_at=NOW - 3 * 365 * DAY
)
H_STAY = CareTeam(id="h-stay", structure=H, since=NOW - 3 * HOUR, consented_at=NOW - 2 * HOUR)
H_STAY_UNCONSENTED = replace(H_STAY, consented_at=None)  # #99: informed, did not object
H_STAY_JUST_CONSENTED = replace(H_STAY, consented_at=NOW - timedelta(minutes=5))
H_STAY_WITHDRAWN = replace(H_STAY, consent_withdrawn_at=NOW - HOUR)
W_SERVICE_TEAM = CareTeam(
    id="sst", structure=SST, since=NOW - 365 * DAY, consented_at=NOW - 365 * DAY, occupational=True
)

P_AUTHORISATIONS = tuple(authorisation(ps) for ps in (E_ID, K_ID, PH_ID, D_ID, PP_ID, Z_ID))

P_RECORD = RecordState(
    patient_id=P_ID,
    status="active",
    ins=P_INS,
    holder_birth_date=date(1981, 4, 2),
    mt=A_ID,
    blocked=frozenset({X_ID}),
    authorisations=P_AUTHORISATIONS,
    care_teams=(MSP_TEAM, H_STAY),
)


def p_record(**changes: Any) -> RecordState:
    return replace(P_RECORD, **changes)


def without_authorisation(ps: str) -> tuple[Authorisation, ...]:
    return tuple(a for a in P_AUTHORISATIONS if a.ps != ps)


M_BIRTH = date(2011, 6, 10)  # 15 at NOW
M_RECORD = RecordState(
    patient_id=M_ID,
    status="active",
    ins=M_INS,
    holder_birth_date=M_BIRTH,
    mt=L_ID,
    authorisations=(authorisation(GY_ID, granted_by=M_INS),),
    representatives=frozenset({R1_INS, R2_INS}),
)
M_RECORD_AT_18 = replace(M_RECORD, holder_birth_date=years_before(NOW, 18).date() - DAY)


# --- documents ------------------------------------------------------------------------------
def document(
    doc_id: str, author: str, class_code: str, type_code: str, age: timedelta, **state: Any
) -> DocumentState:
    return DocumentState(
        id=doc_id,
        author=author,
        class_code=class_code,
        type_code=type_code,
        published_at=NOW - age,
        **state,
    )


CR, IMAGING_CR, BIOLOGY = ("10", "11488-4"), ("31", "18748-4"), ("10", "11502-2")
REIMBURSEMENTS, ADVANCE_DIRECTIVES = ("60", "REMB"), ("90", "42348-3")
DISPENSATIONS, PSY_SYNTHESIS = ("43", "60593-1"), ("10", "34785-6")
DELIVERY_CR, VACCINATION = ("10", "15508-5"), ("10", "87273-9")

D1 = document("d1", A_ID, *CR, 90 * DAY, author_structure=MSP)
D2 = document("d2", E_ID, *CR, 60 * DAY, masque_ps=True)
D3 = document("d3", Z_ID, *IMAGING_CR, 45 * DAY)
D4 = document("d4", LAB_ID, *BIOLOGY, 5 * DAY, invisible_patient=True)
D5 = document("d5", LAB_ID, *BIOLOGY, 20 * DAY, invisible_patient=True)
D6 = document("d6", E_ID, *CR, 35 * DAY, invisible_patient=True)
D7 = document("d7", S_ID, *REIMBURSEMENTS, 10 * DAY, author_kind="system")
D8 = document("d8", P_INS, *ADVANCE_DIRECTIVES, 400 * DAY, author_kind="patient")
D9 = document("d9", PHARMACY_ID, *DISPENSATIONS, 15 * DAY)
D10 = document("d10", PSY_ID, *PSY_SYNTHESIS, 200 * DAY)
D11 = document("d11", OB_ID, *DELIVERY_CR, 700 * DAY)
X_OLD_CR = document("dx", X_ID, *CR, 3 * 365 * DAY)  # #25: X's own CR, before P blocked him
P_DOCUMENTS = (D1, D2, D3, D4, D5, D6, D7, D8, D9, D10)

M1 = document("m1", Y_ID, *CR, 30 * DAY, invisible_representatives=True)
M2 = document("m2", L_ID, *VACCINATION, 100 * DAY)
M_DOCUMENTS = (M1, M2)
