"""The single place where HTTP accesses to personal data are traced.

A pure ASGI middleware (no per-handler calls): it lets the route run, and when the response
starts it writes the trace *before* forwarding the first byte. If the trace cannot be written
the caller gets a 500 instead of the data: no trace, no data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parcours.audit import context as audit_context
from parcours.audit.service import AuditEntry, record
from parcours.fhir.errors import Issue, operation_outcome

log = logging.getLogger("parcours.audit")

# Query parameters that may carry credentials: never stored, even in the trace.
_SECRET_PARAMS = frozenset({"access_token", "token", "id_token", "code", "client_secret"})


def _printable(text: str | None) -> str | None:
    """Control characters (NUL above all, which PostgreSQL text refuses) are escaped so that a
    hostile request line can never make the trace fail to write."""
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _scrub_query(raw: str) -> str | None:
    if not raw:
        return None
    parts = []
    for item in raw.split("&"):
        name = item.split("=", 1)[0]
        parts.append(f"{name}=***" if name.lower() in _SECRET_PARAMS else item)
    return _printable("&".join(parts))


def classify(method: str, path: str, prefix: str) -> tuple[str, str | None, str | None]:
    """FHIR interaction, resource type and id from a request line under ``prefix``."""
    parts = [p for p in path[len(prefix) :].split("/") if p]
    rtype = parts[0] if parts else None
    rid = parts[1] if len(parts) > 1 else None
    if not parts:
        return ("transaction" if method == "POST" else "system", None, None)
    if len(parts) >= 3 and parts[2] == "_history":
        return ("vread" if len(parts) == 4 else "history", rtype, rid)
    if len(parts) == 3 and parts[2].startswith("$"):
        # An instance operation ($dmp-droits…): "operation" in FHIR's restful-interaction
        # codes when it acts, a read when it only answers.
        return ("read" if method == "GET" else "operation", rtype, rid)
    if method == "GET":
        return ("read" if rid and not rid.startswith("_") else "search", rtype, rid)
    action = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )
    if rid == "_search":
        return ("search", rtype, None)
    return (action, rtype, rid)


class AuditMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        database: Callable[[], object],
        prefixes: tuple[str, ...] = ("/fhir",),
        exempt: tuple[str, ...] = ("/fhir/metadata",),
    ) -> None:
        self.app = app
        self.database = database
        self.prefixes = prefixes
        self.exempt = exempt

    def _audited_prefix(self, path: str) -> str | None:
        if any(path == e or path.startswith(e + "/") for e in self.exempt):
            return None
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        prefix = self._audited_prefix(scope["path"])
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        if prefix is None:
            await self.app(scope, receive, send)
            return

        details: dict[str, object] = {"request_id": request_id}
        state["audit_details"] = details
        token = audit_context.current.set(details)

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                try:
                    await anyio.to_thread.run_sync(self._write, scope, prefix, message["status"])
                except Exception:
                    log.exception("audit write failed; response withheld (request %s)", request_id)
                    body = orjson.dumps(
                        operation_outcome(
                            [Issue("exception", "Trace d'accès impossible : réponse retenue.")]
                        )
                    )
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [(b"content-type", b"application/fhir+json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    state["audit_failed"] = True
                    return
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif state.get("audit_failed"):
                return
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        finally:
            audit_context.current.reset(token)

    def _write(self, scope: Scope, prefix: str, status: int) -> None:
        state = scope.get("state", {})
        principal = state.get("principal")
        action, rtype, rid = classify(scope["method"], scope["path"], prefix)
        details = state.get("audit_details") or {}
        # Portal pages name what they served (their paths are not FHIR request lines).
        action = str(details.get("action", action))
        rtype = details.get("resource_type", rtype)
        rid = details.get("resource_id", rid)
        client = scope.get("client")
        entry = AuditEntry(
            request_id=state["request_id"],
            actor_kind=principal.kind if principal else "anonymous",
            actor_id=principal.actor_id if principal else None,
            actor_structure=principal.structure if principal else None,
            access_mode=principal.access_mode if principal else "normal",
            action=action,
            resource_type=rtype,
            resource_id=_printable(rid[:128] if rid else rid),
            query=_scrub_query(scope.get("query_string", b"").decode("latin-1")),
            outcome=status,
            client_ip=client[0] if client else None,
            patient_id=details.get("patient_id"),
            rule=details.get("rule"),
            justification=_printable(details.get("justification")),
            call_id=_printable(details.get("call_id")),
            on_behalf_of=principal.via_structure if principal else None,
            policy_version=details.get("policy_version"),
        )
        # Notifications follow only actions that succeeded (never a refusal, never a rollback).
        pending = (details.get("notifications") or []) if status < 400 else []
        record(self.database(), entry, notifications=pending)  # type: ignore[arg-type]
