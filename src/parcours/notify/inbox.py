"""A user's portal inbox: his own messages and nobody else's.

A message belongs to its recipient only, so the single rule is "recipient = caller", applied in
the query itself; a foreign id answers 404 like an unknown one. The FHIR ``Communication``
routes and the portal pages both read through here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parcours.auth.principal import Principal
from parcours.fhir.errors import NotFound
from parcours.notify.models import InboxMessage
from parcours.storage.models import utcnow


def _mine(principal: Principal) -> Any:
    return InboxMessage.recipient_id == principal.actor_id


def messages(
    session: Session, principal: Principal, count: int, offset: int
) -> tuple[int, list[InboxMessage], int]:
    """(total, page newest first, unread count)."""
    total = session.execute(
        select(func.count()).select_from(InboxMessage).where(_mine(principal))
    ).scalar_one()
    unread = session.execute(
        select(func.count())
        .select_from(InboxMessage)
        .where(_mine(principal), InboxMessage.read_at.is_(None))
    ).scalar_one()
    rows = list(
        session.execute(
            select(InboxMessage)
            .where(_mine(principal))
            .order_by(InboxMessage.created_at.desc(), InboxMessage.id)
            .offset(offset)
            .limit(count)
        ).scalars()
    )
    return total, rows, unread


def message(
    session: Session, principal: Principal, message_id: str, *, mark_read: bool = False
) -> InboxMessage:
    found = session.get(InboxMessage, message_id)
    if found is None or found.recipient_id != principal.actor_id:
        raise NotFound("Communication", message_id)
    if mark_read and found.read_at is None:
        found.read_at = utcnow()
        session.flush()
    return found
