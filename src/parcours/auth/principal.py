"""The authenticated caller, as every domain service sees it, whatever issued the token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal[
    "professional",
    "patient",
    "agent",
    "legal_representative",
    "system",
    "structure",
    "insurer",
    "employer",
    "lender",
    "cpam_medical_officer",
    "heir",
]
ACTOR_KINDS: tuple[str, ...] = ActorKind.__args__  # type: ignore[attr-defined]
Purpose = Literal["care", "contract_conclusion", "contract_execution", "employment", "other"]
PURPOSES: tuple[str, ...] = Purpose.__args__  # type: ignore[attr-defined]
ROLES: tuple[str, ...] = ("none", "regulator", "occupational", "fire", "ehpad_coordinator", "pmi")
# Token ``acr`` values that count as strong authentication (CPS, e-CPS through Pro Santé
# Connect, patient second factor); anything else is a weak login (G1 of the DMP policy).
STRONG_ACR: frozenset[str] = frozenset({"eidas1", "eidas2", "eidas3", "cps", "e-cps"})
AccessMode = Literal["normal", "bris_de_glace", "centre_15"]
ACCESS_MODES: tuple[str, ...] = ("normal", "bris_de_glace", "centre_15")


@dataclass(frozen=True)
class Principal:
    """Identity claims of a verified token.

    Professionals are identified by their IDNPS (``8``+RPPS or ``0``+ADELI) and act for a
    structure (IDNST); patients by their INS; CPAM staff by an agent id. ``auth_level`` carries
    the token's ``acr`` (strong authentication with a CPS/e-CPS matters to the DMP rules).
    """

    kind: ActorKind
    subject: str
    issuer: str
    token_id: str | None = None
    idnat_ps: str | None = None
    profession: str | None = None
    structure: str | None = None
    ins: str | None = None
    agent_id: str | None = None
    auth_level: str | None = None
    access_mode: AccessMode = "normal"
    name: str | None = None
    role: str = "none"
    # A hospital system authenticated by its own certificate asserting the acting PS ("AIR").
    via_structure: str | None = None
    # INS of the holders a legal representative represents.
    represents: tuple[str, ...] = ()
    # Per-request access context (headers), never sticky on a session (DMPi EX_0.2-1050).
    justification: str | None = None
    call_id: str | None = None
    purpose: Purpose = "care"
    minor_secret: bool = False

    @property
    def strong_auth(self) -> bool:
        return self.auth_level in STRONG_ACR

    @property
    def actor_id(self) -> str:
        return self.idnat_ps or self.ins or self.agent_id or self.subject
