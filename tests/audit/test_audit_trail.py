"""One trace per access to personal data, through the middleware, hash-chained, fail-closed."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from tests.scenario import DUPONT, Api


def events(api: Api) -> list[AuditEvent]:
    with api.db.session() as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def test_each_request_writes_exactly_one_trace(api: Api) -> None:
    # A credential in the query string is refused (400) and never stored, even in the trace.
    api.get("/fhir/Practitioner?family=dupont&access_token=SECRET123")
    api.get(f"/fhir/Practitioner/8{DUPONT}")
    api.client.get("/fhir/Organization")  # no token: refused, still traced
    api.client.get("/health")
    api.client.get("/fhir/metadata")
    traced = events(api)
    assert [(e.action, e.resource_type, e.outcome) for e in traced] == [
        ("search", "Practitioner", 400),
        ("read", "Practitioner", 200),
        ("search", "Organization", 401),
    ]
    first, second, third = traced
    assert first.actor_kind == "professional" and first.actor_id == "8" + DUPONT
    assert first.query is not None and "family=dupont" in first.query
    assert "SECRET123" not in first.query and "access_token=***" in first.query
    assert second.resource_id == "8" + DUPONT
    assert third.actor_kind == "anonymous" and third.actor_id is None
    assert first.prev_hash == "0" * 64 and second.prev_hash == first.hash


def test_request_id_is_returned_and_traced(api: Api) -> None:
    response = api.get("/fhir/Practitioner?family=dupont")
    assert events(api)[0].request_id == response.headers["x-request-id"]


def test_chain_verifies_and_detects_tampering(api: Api) -> None:
    for _ in range(5):
        api.get("/fhir/Practitioner?family=dupont")
    assert verify(api.db).ok and verify(api.db).checked == 5
    with api.db.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(outcome=404))
    report = verify(api.db)
    assert not report.ok and report.first_bad_seq == 3 and "modifié" in (report.reason or "")


def test_chain_detects_a_deleted_trace(api: Api) -> None:
    for _ in range(4):
        api.get("/fhir/Practitioner?family=dupont")
    with api.db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    report = verify(api.db)
    assert not report.ok and report.first_bad_seq == 3


def test_no_trace_no_data(api: Api) -> None:
    with api.db.session() as session:
        session.execute(text("DROP TABLE audit_event"))
    response = api.get(f"/fhir/Practitioner/8{DUPONT}")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "Dupont" not in response.text
