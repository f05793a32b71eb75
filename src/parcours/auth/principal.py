"""The authenticated caller, as every domain service sees it, whatever issued the token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["professional", "patient", "agent"]
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

    @property
    def actor_id(self) -> str:
        return self.idnat_ps or self.ins or self.agent_id or self.subject
