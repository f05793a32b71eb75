"""Details a service adds to the current request's trace (patient concerned, deciding rule,
notifications to queue with it).

The audit middleware puts a fresh dict in a context variable for each request; the service's
policy-enforcement point calls :func:`note` and :func:`queue`. FastAPI runs sync routes in a
worker thread with a *copy* of the context, so the middleware shares a mutable dict rather than
reading the variable back: the copy holds the same dict object.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

current: ContextVar[dict[str, Any] | None] = ContextVar("parcours_audit_details", default=None)


def note(*, override: bool = False, **details: Any) -> None:
    """Record details for the trace of the request being served (no-op outside a request).

    The first note wins (a request that reads the record, then a document, is traced against
    the record and rule of its first decision) unless ``override``: a refusal always replaces
    what earlier permits of the same request noted, so the trace names the record and the rule
    that actually refused."""
    target = current.get()
    if target is None:
        return
    for key, value in details.items():
        if value is not None:
            if override:
                target[key] = value
            else:
                target.setdefault(key, value)


def request_id() -> str | None:
    target = current.get()
    return None if target is None else target.get("request_id")


def queue(*items: Any) -> None:
    """Notifications to write in the trace's transaction, if the request succeeds (R45)."""
    target = current.get()
    if target is None:
        return
    target.setdefault("notifications", []).extend(items)
