"""After the holder's death (dmp-access.md R43, G2; art. L1110-4 V CSP): the CNAM feed records
the death, the record closes for everyone, an heir files a request (never reads directly), the
Assurance Maladie reviews it, and the heir is told; the holder's lifetime opposition wins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.notify.channels import InboxChannel
from parcours.notify.worker import run_once
from tests.dossier.conftest import Dmp, _token

HEIR = "heritier-0001"
OTHER_HEIR = "heritier-0002"


def _params(**values: Any) -> dict[str, Any]:
    parameter = []
    for name, value in values.items():
        key = "valueBoolean" if isinstance(value, bool) else "valueString"
        if name == "deathDate":
            key = "valueDate"
        parameter.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": parameter}


def _cast(dmp: Dmp) -> None:
    dmp.tokens["cnam"] = _token(dmp.settings, "CNAM-INSI", {"actor": "system", "acr": "eidas3"})
    for who in (HEIR, OTHER_HEIR):
        dmp.tokens[who] = _token(
            dmp.settings, who, {"actor": "heir", "acr": "eidas1", "name": "Paul Lefèvre"}
        )


def _die(dmp: Dmp) -> None:
    response = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$deces",
        "cnam",
        json=_params(deathDate="2026-11-20"),
    )
    assert response.status_code == 200, response.text


def _ask(dmp: Dmp, who: str = HEIR, **overrides: Any) -> Any:
    values = {
        "lien": "heritier",
        "motif": "cause-deces",
        "justificatif": "Acte de décès n° 2026-1120 et acte de notoriété",
        **overrides,
    }
    return dmp.call(
        "POST", f"/fhir/Patient/{dmp.patient_id}/$demande-ayant-droit", who, json=_params(**values)
    )


def _rule_of(dmp: Dmp, response: Any) -> tuple[int, str | None]:
    with dmp.db.session() as session:
        row = session.execute(
            select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
        ).scalar_one()
        return row.outcome, row.rule


def test_death_closes_the_record_and_an_heir_request_is_reviewed(dmp: Dmp) -> None:
    _cast(dmp)
    doc = dmp.publish_one()
    early = _ask(dmp)  # the holder is alive: no heir request yet
    assert early.status_code == 403 and "règle R43" in early.text
    _die(dmp)

    read = dmp.call("GET", f"/fhir/DocumentReference/{doc}", "dupont")  # even the MT
    assert read.status_code == 403 and "règle G2" in read.text
    direct = dmp.call("GET", f"/fhir/DocumentReference/{doc}", HEIR)  # no direct login
    assert direct.status_code == 403 and "règle R43" in direct.text

    filed = _ask(dmp)
    assert filed.status_code == 201, filed.text
    task = filed.json()
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    assert task["reasonCode"]["coding"][0]["code"] == "cause-deces"
    assert _rule_of(dmp, filed) == (201, "R43")

    # Only the requester and the Assurance Maladie see it.
    assert dmp.call("GET", f"/fhir/Task/{task['id']}", HEIR).status_code == 200
    assert dmp.call("GET", f"/fhir/Task/{task['id']}", OTHER_HEIR).status_code == 404
    assert dmp.call("GET", "/fhir/Task", OTHER_HEIR).json()["total"] == 0
    assert dmp.call("GET", "/fhir/Task", "dupont").status_code == 403
    pending = dmp.call("GET", "/fhir/Task?status=requested", "agent").json()
    assert [e["resource"]["id"] for e in pending["entry"]] == [task["id"]]

    # Review: a rejection needs a reason; only an agent decides; decided once.
    assert (
        dmp.call(
            "POST", f"/fhir/Task/{task['id']}/$instruire", "agent", json=_params(decision="rejeter")
        ).status_code
        == 400
    )
    by_heir = dmp.call(
        "POST", f"/fhir/Task/{task['id']}/$instruire", HEIR, json=_params(decision="accepter")
    )
    assert by_heir.status_code == 403
    accepted = dmp.call(
        "POST", f"/fhir/Task/{task['id']}/$instruire", "agent", json=_params(decision="accepter")
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    again = dmp.call(
        "POST",
        f"/fhir/Task/{task['id']}/$instruire",
        "agent",
        json=_params(decision="rejeter", motif="x"),
    )
    assert again.status_code == 409

    # The heir is told in his inbox.
    run_once(dmp.db, [InboxChannel()])
    inbox = dmp.call("GET", "/fhir/Communication", HEIR).json()
    codes = [e["resource"]["category"][0]["coding"][0]["code"] for e in inbox["entry"]]
    assert codes == ["heir-request-accepted"]


def test_the_holders_lifetime_opposition_wins(dmp: Dmp) -> None:
    _cast(dmp)
    opposed = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$dmp-droits",
        "patient",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "action", "valueCode": "set-opposition"},
                {"name": "setting", "valueCode": "ayants_droit"},
                {"name": "value", "valueBoolean": True},
            ],
        },
    )
    assert opposed.status_code == 200, opposed.text
    assert {"name": "oppose_ayants_droit", "valueBoolean": True} in opposed.json()["parameter"]
    _die(dmp)
    refused = _ask(dmp)
    assert refused.status_code == 403 and "opposé" in refused.text
    assert _rule_of(dmp, refused) == (403, "R43")
    assert dmp.call("GET", "/fhir/Task?status=requested", "agent").json()["total"] == 0


def test_bad_requests_and_who_records_a_death(dmp: Dmp) -> None:
    _cast(dmp)
    assert (
        dmp.call(
            "POST",
            f"/fhir/Patient/{dmp.patient_id}/$deces",
            "dupont",
            json=_params(deathDate="2026-11-20"),
        ).status_code
        == 403
    )
    future = dmp.call(
        "POST",
        f"/fhir/Patient/{dmp.patient_id}/$deces",
        "cnam",
        json=_params(deathDate="2099-01-01"),
    )
    assert future.status_code == 400 and "futur" in future.text
    _die(dmp)
    assert _ask(dmp, motif="curiosite").status_code == 400
    assert _ask(dmp, lien="voisin").status_code == 400
    missing = _ask(dmp, justificatif=" ")
    assert missing.status_code == 400 and "justificatif" in missing.text
