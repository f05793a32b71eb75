"""The access policy over HTTP: the same record seen four ways, bris de glace traced and
notified, the patient's rights, refusals that say which rule decided (dmp-access.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.audit.service import verify
from parcours.notify.models import Notification
from tests.dossier.conftest import Dmp, _token, grant_access
from tests.scenario import DUPONT, MARTIN

KINE = "810000009992"
INSURER = "MUTUELLE-MC-1"


def _tokens(dmp: Dmp) -> None:
    dmp.tokens["kine"] = _token(
        dmp.settings, KINE, {"actor": "professional", "idnat_ps": KINE, "profession": "70"}
    )
    dmp.tokens["insurer"] = _token(dmp.settings, INSURER, {"actor": "insurer"})
    dmp.tokens["weak"] = _token(
        dmp.settings,
        "8" + MARTIN,
        {"actor": "professional", "idnat_ps": "8" + MARTIN, "profession": "10", "acr": "pwd"},
    )


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def _notifications(dmp: Dmp) -> list[tuple[str, str, str]]:
    with dmp.db.session() as session:
        rows = session.execute(select(Notification).order_by(Notification.created_at)).scalars()
        return [(n.event, n.recipient_kind, n.recipient_id) for n in rows]


def _search(dmp: Dmp, who: str, **headers: str) -> Any:
    return dmp.call(
        "GET",
        f"/fhir/DocumentReference?patient={dmp.patient_id}&status=current",
        who,
        headers=headers,
    )


def test_one_record_four_ways(dmp: Dmp) -> None:
    """GP (médecin traitant), kiné (authorised: matrix applies), insurer (forbidden), patient."""
    _tokens(dmp)
    grant_access(dmp, "grant", KINE)
    report = dmp.publish_one()  # CR de consultation (class 10)
    lab = dmp.publish_one(
        data=b"NFS normale", type_code="11502-2", class_code="10", title="Biologie"
    )
    assert _ids(_search(dmp, "dupont")) == {report, lab}
    assert _ids(_search(dmp, "kine")) == {report}  # kiné × biologie ✗? (R20)
    refused = dmp.call("GET", f"/fhir/DocumentReference/{lab}", "kine")
    assert refused.status_code == 403 and "règle R20" in refused.text
    insurer = _search(dmp, "insurer")
    assert insurer.status_code == 403 and "règle G3" in insurer.text
    assert _ids(_search(dmp, "patient")) == {report, lab}
    weak = _search(dmp, "weak")
    assert weak.status_code == 403 and "règle G1" in weak.text


def test_stranger_is_refused_then_breaks_the_glass(dmp: Dmp) -> None:
    _tokens(dmp)
    doc = dmp.publish_one()
    stranger = "810000008887"
    dmp.tokens["urgentiste"] = _token(
        dmp.settings, stranger, {"actor": "professional", "idnat_ps": stranger, "profession": "10"}
    )
    path = f"/fhir/DocumentReference/{doc}"
    refused = dmp.call("GET", path, "urgentiste")
    assert refused.status_code == 403 and "règle R19" in refused.text
    empty = dmp.call("GET", path, "urgentiste", headers={"X-Acces-Mode": "bris_de_glace"})
    assert empty.status_code == 403 and "règle R17" in empty.text  # no justification
    before = _notifications(dmp)
    ok = dmp.call(
        "GET",
        path,
        "urgentiste",
        headers={"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "inconscient"},
    )
    assert ok.status_code == 200, ok.text
    added = _notifications(dmp)[len(before) :]
    assert ("bris-de-glace", "holder", dmp_ins(dmp)) in added
    assert ("bris-de-glace", "mt", "8" + DUPONT) in added
    with dmp.db.session() as session:
        trace = session.execute(
            select(AuditEvent).where(AuditEvent.actor_id == stranger, AuditEvent.outcome == 200)
        ).scalar_one()
        assert trace.rule == "R17" and trace.justification == "inconscient"
        assert trace.access_mode == "bris_de_glace"
    # The patient finds it in his traces.
    traces = dmp.call("GET", f"/fhir/AuditEvent?patient={dmp.patient_id}", "patient").json()
    assert any("R17" in (e["resource"].get("outcomeDesc") or "") for e in traces["entry"])
    # The mode is per request: the next request without the header is refused again.
    assert dmp.call("GET", path, "urgentiste").status_code == 403
    assert verify(dmp.db).ok


def test_opposition_blocks_bris_de_glace_but_not_the_regulator(dmp: Dmp) -> None:
    doc = dmp.publish_one()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": "set-opposition"},
            {"name": "setting", "valueCode": "bris_de_glace"},
            {"name": "value", "valueBoolean": True},
        ],
    }
    done = dmp.call("POST", f"/fhir/Patient/{dmp.patient_id}/$dmp-droits", "patient", json=body)
    assert done.status_code == 200, done.text
    stranger, regulator = "810000008887", "810000007772"
    dmp.tokens["u"] = _token(
        dmp.settings, stranger, {"actor": "professional", "idnat_ps": stranger, "profession": "10"}
    )
    dmp.tokens["q"] = _token(
        dmp.settings,
        regulator,
        {"actor": "professional", "idnat_ps": regulator, "profession": "10", "role": "regulator"},
    )
    path = f"/fhir/DocumentReference/{doc}"
    bdg = {"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "inconscient"}
    assert "règle R17" in dmp.call("GET", path, "u", headers=bdg).text
    c15 = {"X-Acces-Mode": "centre_15", "X-Acces-Appel": "APPEL-42"}
    assert dmp.call("GET", path, "q", headers=c15).status_code == 200
    assert "règle R18" in dmp.call("GET", path, "u", headers=c15).text  # not a regulator


def test_first_access_is_notified_once(dmp: Dmp) -> None:
    doc = dmp.publish_one()
    for _ in range(3):
        assert dmp.call("GET", f"/fhir/DocumentReference/{doc}", "martin").status_code == 200
    first = [n for n in _notifications(dmp) if n[0] == "first-access"]
    assert first.count(("first-access", "holder", dmp_ins(dmp))) == 1


def test_blocking_and_the_mt_rule(dmp: Dmp) -> None:
    doc = dmp.publish_one()
    url = f"/fhir/Patient/{dmp.patient_id}/$dmp-droits"

    def right(action: str, target: str) -> Any:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "action", "valueCode": action},
                {"name": "target", "valueString": target},
            ],
        }
        return dmp.call("POST", url, "patient", json=body)

    refused = right("block", "8" + DUPONT)  # the médecin traitant (R34)
    assert refused.status_code == 403 and "règle R34" in refused.text
    assert right("block", "8" + MARTIN).status_code == 200
    blocked = dmp.call("GET", f"/fhir/DocumentReference/{doc}", "martin")
    assert blocked.status_code == 403 and "règle G4" in blocked.text
    assert right("unblock", "8" + MARTIN).status_code == 200
    assert dmp.call("GET", f"/fhir/DocumentReference/{doc}", "martin").status_code == 200
    assert right("revoke", "8" + MARTIN).status_code == 200
    assert "règle R19" in dmp.call("GET", f"/fhir/DocumentReference/{doc}", "martin").text
    settings = dmp.call("GET", url, "patient").json()
    assert {"name": "mt", "valueString": "8" + DUPONT} in settings["parameter"]
    assert dmp.call("GET", url, "dupont").status_code == 403  # settings are the holder's
    bad = dmp.call("POST", url, "patient", json={"resourceType": "Parameters", "parameter": []})
    assert bad.status_code == 400
    assert right("block", "not-an-idnps").status_code == 400


def test_a_refused_action_queues_nothing(dmp: Dmp) -> None:
    before = _notifications(dmp)
    response = dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}", "agent")
    assert response.status_code in (400, 403)
    assert _notifications(dmp) == before


def dmp_ins(dmp: Dmp) -> str:
    return dmp.call("GET", f"/fhir/Patient/{dmp.patient_id}").json()["identifier"][0]["value"]
