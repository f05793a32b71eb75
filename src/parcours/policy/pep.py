"""From a verified caller to the facts the policy-decision point reads.

The token says who the caller is; the request headers say in which mode he acts for this one
request (``auth.dependencies``). This module turns both into ``Actor`` and ``Request`` values so
that every service asks ``engine.decide`` the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parcours.auth.principal import Principal
from parcours.policy.facts import Action, Actor, RecordState, Request

SOCIAL_PROFESSION = "SOCIAL"


def actor_for(principal: Principal, record: RecordState) -> Actor:
    kind: Any = principal.kind
    if kind == "professional" and principal.profession == SOCIAL_PROFESSION:
        kind = "social_professional"
    represents: frozenset[str] = frozenset()
    if kind == "legal_representative" and record.ins in principal.represents:
        represents = frozenset({record.patient_id})
    return Actor(
        kind=kind,
        id=principal.actor_id,
        profession=principal.profession,
        role=principal.role,  # type: ignore[arg-type]
        structure=principal.structure,
        strong_auth=principal.strong_auth,
        via_structure=principal.via_structure,
        represents=represents,
    )


def request_for(principal: Principal, action: Action, now: datetime, **fields: Any) -> Request:
    return Request(
        action=action,
        now=now,
        mode=principal.access_mode,
        justification=principal.justification,
        call_id=principal.call_id,
        purpose=principal.purpose,
        minor_secret=principal.minor_secret,
        **fields,
    )
