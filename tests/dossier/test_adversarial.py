"""Adversarial suite over HTTP (issue 5): every door to another patient's data, all refused,
all traced.

Cast: Alice (the fixture's patient) and Bob (a second patient), each with a record and a
document published by Dr Dupont, the médecin traitant of both. Dr Intrus, a médecin, holds
Alice's authorisation and **no basis at all** for Bob (not his MT, not in a care team, no
authorisation). Bob (a patient principal) tries Alice's record. Insurers, tampered access-mode
headers and forged tokens complete the picture.

What "refused" means here comes from the code and the reference (dmp-access.md): a policy
refusal is a 403 ``OperationOutcome`` with code ``forbidden`` naming the deciding rule
(``règle R19``…), a missing/forged token a 401 with ``WWW-Authenticate``, a malformed request a
400. What "traced" means: exactly one ``audit_event`` row carries the response's
``X-Request-Id``, with the outcome, the actor and — whenever the request reached a record — the
record's patient id and the rule that decided (§3.1 "deny traces keep the actor and the rule";
R44). Bob's content (document id, binary id, title, bytes) must never appear in what the
attacker receives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.auth import keys
from parcours.auth.devidp import mint_token
from parcours.dossier import terminology as term
from parcours.dossier.models import Consent, Document
from parcours.dossier.samples import INS_NIR, OTHER_INS, PATIENT_INS, cda, provide_bundle
from parcours.dossier.validation import EXT_IS_ARCHIVED
from parcours.notify.models import Notification
from tests.dossier.conftest import Dmp, _token, grant_access, open_record
from tests.scenario import DUPONT, MARTIN

INTRUS = "810000008887"  # professional A: a médecin, authorised by Alice, nothing for Bob
THIRD = "810000009992"  # a professional the intruder would like to let in
REGULATOR = "810000007772"
INSURER = "MUTUELLE-MC-1"
BOB_TITLE = "CR confidentiel Bob 4711"
BOB_MARKER = "MARQUEUR-BOB-4711"
BOB_BYTES = cda(f"Sérologie positive, traitement débuté. {BOB_MARKER}", title=BOB_TITLE)
ALICE_BYTES = cda("Examen normal, rien à signaler.")
BASE = "http://testserver"


# --- the world ------------------------------------------------------------------------------


@dataclass
class World:
    dmp: Dmp
    alice: str
    bob: str
    alice_doc: str
    alice_binary: str
    bob_doc: str
    bob_binary: str
    bob_master: str
    bob_list: str
    alice_consent: str
    bob_consent: str
    bob_resource: dict[str, Any]  # Bob's document as his MT reads it

    @property
    def bob_binary_path(self) -> str:
        return f"/fhir/Binary/{self.bob_binary}"

    def names(self) -> dict[str, str]:
        return {
            "alice": self.alice,
            "bob": self.bob,
            "alice_doc": self.alice_doc,
            "bob_doc": self.bob_doc,
            "bob_binary": self.bob_binary,
            "bob_master": self.bob_master,
            "bob_list": self.bob_list,
            "bob_consent": self.bob_consent,
            "alice_ins": PATIENT_INS,
            "bob_ins": OTHER_INS,
            "ins_system": INS_NIR,
            "base": BASE + "/fhir",
        }

    def bob_secrets(self) -> list[str]:
        """What of Bob's document an attacker must never receive."""
        return [
            self.bob_doc,
            self.bob_binary,
            self.bob_master,
            BOB_TITLE,
            BOB_MARKER,
            base64.b64encode(BOB_BYTES).decode()[:40],
        ]


def _right(dmp: Dmp, who: str, pid: str, action: str, target: str, **extra: Any) -> httpx.Response:
    parameters: list[dict[str, Any]] = [
        {"name": "action", "valueCode": action},
        {"name": "target", "valueString": target},
    ]
    for name, value in extra.items():
        key = "valueBoolean" if isinstance(value, bool) else "valueString"
        parameters.append({"name": name, key: value})
    body = {"resourceType": "Parameters", "parameter": parameters}
    return dmp.call("POST", f"/fhir/Patient/{pid}/$dmp-droits", who, json=body)


def _ids_of(location: str) -> str:
    return location.split("/")[1]


@pytest.fixture
def world(dmp: Dmp) -> World:
    settings = dmp.settings
    dmp.tokens["intrus"] = _token(
        settings, INTRUS, {"actor": "professional", "idnat_ps": INTRUS, "profession": "10"}
    )
    dmp.tokens["third"] = _token(
        settings, THIRD, {"actor": "professional", "idnat_ps": THIRD, "profession": "10"}
    )
    dmp.tokens["regulator"] = _token(
        settings,
        REGULATOR,
        {"actor": "professional", "idnat_ps": REGULATOR, "profession": "10", "role": "regulator"},
    )
    dmp.tokens["bob"] = _token(settings, "bob", {"actor": "patient", "ins": OTHER_INS})
    dmp.tokens["alice"] = dmp.tokens["patient"]
    dmp.tokens["insurer"] = _token(settings, INSURER, {"actor": "insurer"})

    alice = dmp.patient_id
    grant_access(dmp, "grant", INTRUS)  # Alice lets the intruder in: he has a basis *there*
    alice_doc = dmp.publish_one(data=ALICE_BYTES)

    bob = open_record(dmp, OTHER_INS)  # CPAM desk: no professional gets an authorisation
    done = _right(dmp, "bob", bob, "designate-mt", "8" + DUPONT)
    assert done.status_code == 200, done.text
    bundle = provide_bundle(
        subject=f"Patient/{bob}",
        author_idnps="8" + DUPONT,
        documents=[(BOB_BYTES, {"patient_ins": OTHER_INS, "title": BOB_TITLE})],
    )
    published = dmp.publish(bundle)
    assert published.status_code == 200, published.text
    entries = published.json()["entry"]
    bob_list = _ids_of(entries[0]["response"]["location"])
    bob_doc = _ids_of(entries[1]["response"]["location"])

    # The Binary URL as an authorised professional (Bob's MT) sees it.
    read = dmp.call("GET", f"/fhir/DocumentReference/{bob_doc}", "dupont")
    assert read.status_code == 200, read.text
    bob_url = read.json()["content"][0]["attachment"]["url"]
    assert bob_url.startswith(BASE + "/fhir/Binary/")
    got = dmp.call("GET", bob_url.removeprefix(BASE), "dupont")
    assert got.status_code == 200 and got.content == BOB_BYTES
    alice_read = dmp.call("GET", f"/fhir/DocumentReference/{alice_doc}", "dupont").json()
    alice_url = alice_read["content"][0]["attachment"]["url"]

    with dmp.db.session() as session:
        consents = dict(session.execute(select(Consent.patient_id, Consent.id)).all())
    return World(
        dmp=dmp,
        alice=alice,
        bob=bob,
        alice_doc=alice_doc,
        alice_binary=alice_url.rsplit("/", 1)[1],
        bob_doc=bob_doc,
        bob_binary=bob_url.rsplit("/", 1)[1],
        bob_master=bundle["entry"][1]["resource"]["masterIdentifier"]["value"],
        bob_list=bob_list,
        alice_consent=consents[alice],
        bob_consent=consents[bob],
        bob_resource=read.json(),
    )


# --- assertions ---------------------------------------------------------------------------

TRACE_COLUMNS = (
    "actor_kind",
    "actor_id",
    "access_mode",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "patient_id",
    "rule",
    "justification",
    "call_id",
    "query",
)


def trace(dmp: Dmp, response: httpx.Response) -> dict[str, Any]:
    """The one trace row of ``response``'s request (found by its X-Request-Id)."""
    request_id = response.headers.get("x-request-id")
    assert request_id, f"no X-Request-Id: request not traced ({response.status_code})"
    with dmp.db.session() as session:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.request_id == request_id))
            .scalars()
            .all()
        )
        assert len(rows) == 1, f"{len(rows)} trace rows for request {request_id}"
        return {c: getattr(rows[0], c) for c in TRACE_COLUMNS}


def shown(row: dict[str, Any]) -> str:
    """A trace row in one line, for failure messages."""
    keys = ("outcome", "actor_kind", "actor_id", "access_mode", "action", "patient_id", "rule")
    return "trace " + " ".join(f"{k}={row[k]}" for k in keys)


def outcome_text(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert "entry" not in body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def assert_no_bob(w: World, response: httpx.Response) -> None:
    for secret in w.bob_secrets():
        assert secret not in response.text, f"{secret!r} leaked in {response.text[:300]}"
    assert BOB_BYTES not in response.content


def assert_refused(
    w: World,
    response: httpx.Response,
    *,
    status: int,
    rule: str | None,
    actor: str | None,
    patient: str | None,
    code: str = "forbidden",
) -> dict[str, Any]:
    """Refused with an OperationOutcome naming the rule, nothing of Bob's in it, traced once
    with the outcome, the actor, the record and the rule."""
    assert response.status_code == status, response.text
    text = outcome_text(response)
    assert response.json()["issue"][0]["code"] == code, response.text
    if rule is not None:
        assert f"règle {rule}" in text, text
    assert_no_bob(w, response)
    row = trace(w.dmp, response)
    assert row["outcome"] == status, shown(row)
    assert row["actor_id"] == actor, shown(row)
    assert row["patient_id"] == patient, shown(row) + f" (expected patient {patient})"
    assert row["rule"] == rule, shown(row) + f" (expected rule {rule})"
    return row


def bundle_entries(w: World, response: httpx.Response) -> list[dict[str, Any]]:
    """A searchset with none of Bob's documents, whatever the entry's mode."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    entries = body.get("entry", [])
    for entry in entries:
        resource = entry["resource"]
        assert resource["id"] != w.bob_doc
        assert entry["fullUrl"] != f"{BASE}/fhir/DocumentReference/{w.bob_doc}"
        assert (resource.get("subject") or {}).get("reference") != f"Patient/{w.bob}"
        assert resource["resourceType"] != "Patient" or resource["id"] != w.bob
        assert entry["search"]["mode"] == "match"
        text = json.dumps(resource, ensure_ascii=False)
        for secret in w.bob_secrets():
            assert secret not in text
    assert body.get("total", len(entries)) == len(entries)
    return entries


# --- professional A, document by id ---------------------------------------------------------


def test_read_by_id_is_refused_and_traced(world: World) -> None:
    w = world
    response = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "intrus")
    row = assert_refused(w, response, status=403, rule="R19", actor=INTRUS, patient=w.bob)
    assert (row["action"], row["resource_type"], row["resource_id"]) == (
        "read",
        "DocumentReference",
        w.bob_doc,
    )
    assert row["actor_kind"] == "professional" and row["access_mode"] == "normal"
    # The same token reads Alice's document: the refusal is about Bob, not a broken token.
    assert w.dmp.call("GET", f"/fhir/DocumentReference/{w.alice_doc}", "intrus").status_code == 200
    # The submission set and the consent of Bob's record are the record too.
    listed = w.dmp.call("GET", f"/fhir/List/{w.bob_list}", "intrus")
    assert_refused(w, listed, status=403, rule="R19", actor=INTRUS, patient=w.bob)
    consent = w.dmp.call("GET", f"/fhir/Consent/{w.bob_consent}", "intrus")
    assert_refused(w, consent, status=403, rule="R19", actor=INTRUS, patient=w.bob)


# --- professional A, searches --------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    id: str
    params: tuple[tuple[str, str], ...]
    status: int
    rule: str | None = None
    patient: str | None = None  # "alice" | "bob": the record the trace must name
    method: str = "GET"
    path: str = "/fhir/DocumentReference"
    form: tuple[tuple[str, str], ...] = ()
    lenient: bool = False
    entries: tuple[str, ...] = ()  # world attributes expected in a 200 searchset
    code: str = ""  # OperationOutcome issue code; default forbidden (403) / invalid (400)


CURRENT = ("status", "current")
SEARCHES = [
    Probe("patient=B", (("patient", "{bob}"), CURRENT), 403, "R19", "bob"),
    Probe("patient=Patient/B", (("patient", "Patient/{bob}"), CURRENT), 403, "R19", "bob"),
    Probe(
        "patient=absolute-url", (("patient", "{base}/Patient/{bob}"), CURRENT), 403, "R19", "bob"
    ),
    Probe(
        "patient.identifier=system|INS",
        (("patient.identifier", "{ins_system}|{bob_ins}"), CURRENT),
        403,
        "R19",
        "bob",
    ),
    Probe(
        "patient.identifier=INS", (("patient.identifier", "{bob_ins}"), CURRENT), 403, "R19", "bob"
    ),
    # The name the issue uses; the API's is patient.identifier (ITI-67): unknown, strictly 400.
    Probe("subject.identifier", (("subject.identifier", "{ins_system}|{bob_ins}"), CURRENT), 400),
    Probe("subject=Patient/B", (("subject", "Patient/{bob}"), CURRENT), 400),
    Probe("no-patient", (CURRENT,), 400, code="required"),
    Probe("no-patient-identifier", (("identifier", "{bob_master}"),), 400, code="required"),
    Probe("_id=B-doc", (("_id", "{bob_doc}"),), 400),
    Probe("_id=B-doc-with-status", (("_id", "{bob_doc}"), CURRENT), 400),
    Probe(
        "_id=B-doc-lenient-no-patient",
        (("_id", "{bob_doc}"), CURRENT),
        400,
        lenient=True,
        code="required",
    ),
    Probe(
        "_id=B-doc-lenient-patient=A",
        (("patient", "{alice}"), CURRENT, ("_id", "{bob_doc}")),
        200,
        "R12",
        "alice",
        lenient=True,
        entries=("alice_doc",),
    ),
    Probe(
        "_include=subject-patient=A",
        (("patient", "{alice}"), CURRENT, ("_include", "DocumentReference:subject")),
        400,
    ),
    Probe(
        "_include=subject-patient=B",
        (("patient", "{bob}"), CURRENT, ("_include", "DocumentReference:subject")),
        400,
    ),
    Probe(
        "_include:iterate-patient=B",
        (("patient", "{bob}"), CURRENT, ("_include:iterate", "DocumentReference:patient")),
        400,
    ),
    Probe(
        "_include=subject-lenient-patient=A",
        (("patient", "{alice}"), CURRENT, ("_include", "DocumentReference:subject")),
        400,
        lenient=True,
    ),
    Probe(
        "_revinclude-patient=A",
        (("patient", "{alice}"), CURRENT, ("_revinclude", "DocumentReference:relatesto")),
        400,
    ),
    Probe(
        "_revinclude-patient=B",
        (("patient", "{bob}"), CURRENT, ("_revinclude", "List:item")),
        400,
    ),
    Probe(
        "_revinclude-lenient-patient=A",
        (("patient", "{alice}"), CURRENT, ("_revinclude", "List:item")),
        200,
        "R12",
        "alice",
        lenient=True,
        entries=("alice_doc",),
    ),
    Probe(
        "patient=A&identifier=B-doc",
        (("patient", "{alice}"), ("identifier", "urn:uuid:{bob_doc}")),
        200,
        "R12",
        "alice",
    ),
    Probe(
        "patient=A&identifier=B-master",
        (("patient", "{alice}"), ("identifier", "{bob_master}")),
        200,
        "R12",
        "alice",
    ),
    Probe(
        "patient=A&relatesTo=B-doc",
        (("patient", "{alice}"), CURRENT, ("relatesTo", "DocumentReference/{bob_doc}")),
        200,
        "R12",
        "alice",
    ),
    Probe(
        "patient=A&_content=B-marker",
        (("patient", "{alice}"), CURRENT, ("_content", BOB_MARKER)),
        200,
        "R12",
        "alice",
    ),
    Probe(
        "patient=A-unfiltered",
        (("patient", "{alice}"), CURRENT),
        200,
        "R12",
        "alice",
        entries=("alice_doc",),
    ),
    # One refused record refuses the whole search, and the trace must name *that* record and
    # its rule (R44: Bob's "who looked at my record" must show the attempt).
    Probe("patient=B,A", (("patient", "{bob},{alice}"), CURRENT), 403, "R19", "bob"),
    Probe("patient=A,B", (("patient", "{alice},{bob}"), CURRENT), 403, "R19", "bob"),
    Probe(
        "patient=A&patient.identifier=B",
        (("patient", "{alice}"), ("patient.identifier", "{ins_system}|{bob_ins}"), CURRENT),
        403,
        "R19",
        "bob",
    ),
    Probe(
        "POST-_search-form-patient=B",
        (),
        403,
        "R19",
        "bob",
        method="POST",
        path="/fhir/DocumentReference/_search",
        form=(("patient", "{bob}"), CURRENT),
    ),
    Probe(
        "POST-_search-query=A-form=B",
        (("patient", "{alice}"),),
        403,
        "R19",
        "bob",
        method="POST",
        path="/fhir/DocumentReference/_search",
        form=(("patient", "{bob}"), CURRENT),
    ),
    Probe(
        "List?patient=B",
        (("patient", "{bob}"), ("code", "submissionset"), CURRENT),
        403,
        "R19",
        "bob",
        path="/fhir/List",
    ),
    Probe(
        "List?patient.identifier=B",
        (("patient.identifier", "{ins_system}|{bob_ins}"), ("code", "submissionset"), CURRENT),
        403,
        "R19",
        "bob",
        path="/fhir/List",
    ),
]


@pytest.mark.parametrize("probe", SEARCHES, ids=[p.id for p in SEARCHES])
def test_search_never_returns_bob(world: World, probe: Probe) -> None:
    w = world
    names = w.names()
    params = [(k, v.format(**names)) for k, v in probe.params]
    headers = {"Prefer": "handling=lenient"} if probe.lenient else {}
    kw: dict[str, Any] = {"params": params, "headers": headers}
    if probe.form:
        kw["data"] = {k: v.format(**names) for k, v in probe.form}
    response = w.dmp.call(probe.method, probe.path, "intrus", **kw)
    patient = {"alice": w.alice, "bob": w.bob, None: None}[probe.patient]
    if probe.status == 200:
        entries = bundle_entries(w, response)
        assert {e["resource"]["id"] for e in entries} == {getattr(w, a) for a in probe.entries}
        row = trace(w.dmp, response)
        assert (row["outcome"], row["patient_id"], row["rule"]) == (200, patient, probe.rule)
        assert row["actor_id"] == INTRUS and row["action"] == "search"
        return
    code = probe.code or ("forbidden" if probe.status == 403 else "invalid")
    row = assert_refused(
        w, response, status=probe.status, rule=probe.rule, actor=INTRUS, patient=patient, code=code
    )
    assert row["action"] == "search"
    assert row["resource_type"] == probe.path.split("/")[2]


# --- professional A, Binary URL and history -------------------------------------------------


@pytest.mark.parametrize("accept", ["*/*", "text/xml", "application/fhir+json"])
def test_binary_url_is_refused_and_traced(world: World, accept: str) -> None:
    w = world
    response = w.dmp.call("GET", w.bob_binary_path, "intrus", headers={"Accept": accept})
    row = assert_refused(w, response, status=403, rule="R19", actor=INTRUS, patient=w.bob)
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert (row["action"], row["resource_type"], row["resource_id"]) == (
        "read",
        "Binary",
        w.bob_binary,
    )


def test_binary_by_absolute_url_and_query_tricks(world: World) -> None:
    """The attachment URL exactly as served to the MT, and with decorations a proxy or a cache
    key might treat differently: still refused or unknown, never the bytes, one trace each."""
    w = world
    url = w.bob_resource["content"][0]["attachment"]["url"]
    path = url.removeprefix(BASE)
    attempts = [
        ("GET", url, 403),
        ("GET", url + "?_format=json", 403),
        ("GET", url + "?access_token=x", 403),
        ("HEAD", url, 405),
        ("POST", url, 404),
        ("GET", url + "/", 404),
        ("GET", url + "/_history/1", 404),
        ("GET", BASE + path.replace("/Binary/", "/binary/"), 404),
        ("GET", BASE + path.replace("/fhir/", "/fhir//"), 404),
        ("GET", BASE + path.replace("/Binary/", "/DocumentReference/../Binary/"), 403),
    ]
    for method, target, status in attempts:
        response = w.dmp.client.request(
            method,
            target,
            headers={"Authorization": f"Bearer {w.dmp.tokens['intrus']}"},
            follow_redirects=False,
        )
        assert response.status_code == status, (method, target, response.status_code)
        for secret in (BOB_TITLE, BOB_MARKER, base64.b64encode(BOB_BYTES).decode()[:40]):
            assert secret not in response.text
        assert BOB_BYTES not in response.content
        row = trace(w.dmp, response)
        assert row["outcome"] == status, row
        if status == 403:
            assert (row["actor_id"], row["patient_id"], row["rule"]) == (INTRUS, w.bob, "R19")
        else:  # not the Binary route: no record reached
            assert (row["patient_id"], row["rule"]) == (None, None)
        if "access_token" in target:
            assert row["query"] == "access_token=***"  # a credential never lands in a trace


ARCHIVED_PATH = f"DocumentReference.extension.where(url='{EXT_IS_ARCHIVED}')"


def test_history_and_vread_are_refused_and_traced(world: World) -> None:
    w = world
    # The author archives the document: version 2 now, version 1 kept in the history.
    archive = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": ARCHIVED_PATH},
                    {"name": "value", "valueBoolean": True},
                ],
            }
        ],
    }
    done = w.dmp.call("PATCH", f"/fhir/DocumentReference/{w.bob_doc}", "dupont", json=archive)
    assert done.status_code == 200, done.text
    history = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}/_history", "dupont")
    assert history.status_code == 200 and history.json()["total"] == 2

    for suffix, action in (("/_history", "history"), ("/_history/1", "vread")):
        response = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}{suffix}", "intrus")
        row = assert_refused(w, response, status=403, rule="R19", actor=INTRUS, patient=w.bob)
        assert (row["action"], row["resource_id"]) == (action, w.bob_doc)
    for version in ("2", "999"):  # the current one, and one that does not exist
        response = w.dmp.call(
            "GET", f"/fhir/DocumentReference/{w.bob_doc}/_history/{version}", "intrus"
        )
        assert_refused(w, response, status=403, rule="R19", actor=INTRUS, patient=w.bob)


# --- professional A, writes -----------------------------------------------------------------


def _mask_patch() -> list[dict[str, Any]]:
    return [
        {
            "op": "add",
            "path": "/securityLabel/-",
            "value": {"coding": [{"system": term.VISIBILITY_SYSTEM, "code": term.MASQUE_PS}]},
        }
    ]


def _status_patch(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.status"},
                    {"name": "value", "valueCode": status},
                ],
            }
        ],
    }


def _bob_unchanged(w: World) -> None:
    read = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "dupont")
    assert read.status_code == 200, read.text
    assert read.json() == w.bob_resource
    assert read.headers["etag"] == 'W/"1"'
    got = w.dmp.call("GET", w.bob_binary_path, "dupont")
    assert got.status_code == 200 and got.content == BOB_BYTES
    with w.dmp.db.session() as session:
        doc = session.get(Document, w.bob_doc)
        assert doc is not None
        assert (doc.version, doc.status, doc.deleted_at, doc.masque_ps) == (
            1,
            "current",
            None,
            False,
        )


JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def test_patch_and_delete_are_refused_traced_and_change_nothing(world: World) -> None:
    w = world
    path = f"/fhir/DocumentReference/{w.bob_doc}"
    attempts = [
        ("PATCH", path, {"json": _status_patch("superseded")}, "R19"),
        ("PATCH", path, {"json": _status_patch("entered-in-error")}, "R19"),
        ("PATCH", path, {"content": json.dumps(_mask_patch()), "headers": JSON_PATCH}, "R19"),
        (
            "PATCH",
            path,
            {
                "content": json.dumps(
                    [{"op": "replace", "path": "/status", "value": "superseded"}]
                ),
                "headers": JSON_PATCH,
            },
            "R19",
        ),
        (
            "PATCH",
            "/fhir/DocumentReference",
            {"params": {"identifier": w.bob_master}, "json": _status_patch("superseded")},
            "R19",
        ),
        ("DELETE", path, {}, "R29"),
    ]
    for method, url, kw, rule in attempts:
        response = w.dmp.call(method, url, "intrus", **kw)
        row = assert_refused(w, response, status=403, rule=rule, actor=INTRUS, patient=w.bob)
        assert row["action"] == method.lower()
    _bob_unchanged(w)


def test_bris_de_glace_gives_no_write(world: World) -> None:
    """Bris de glace gives an outsider a *read* basis (R17); managing the document stays the
    author's (R28, R29). Refused, unchanged, and each trace names the rule that refused (not
    the R17 read permit the PATCH passed on its way)."""
    w = world
    path = f"/fhir/DocumentReference/{w.bob_doc}"
    glass = {"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "inconscient"}
    attempts = [
        ("PATCH", {"json": _status_patch("superseded")}, "R28"),
        ("PATCH", {"content": json.dumps(_mask_patch()), "headers": JSON_PATCH}, "R30"),
        ("DELETE", {}, "R29"),
    ]
    responses = []
    for method, kw, rule in attempts:
        headers = {**glass, **kw.pop("headers", {})}
        responses.append((w.dmp.call(method, path, "intrus", headers=headers, **kw), rule))
    assert [r.status_code for r, _ in responses] == [403, 403, 403]
    _bob_unchanged(w)
    for response, rule in responses:
        row = assert_refused(w, response, status=403, rule=rule, actor=INTRUS, patient=w.bob)
        assert row["access_mode"] == "bris_de_glace"


def test_a_deleted_document_is_no_oracle(world: World) -> None:
    """Once Bob's document is deleted, an outsider still gets the record-level refusal (as the
    read does, R25 comment in documents._authorise), never a 410 telling him the document
    existed and was deleted; and the attempt is traced against Bob's record."""
    w = world
    path = f"/fhir/DocumentReference/{w.bob_doc}"
    assert w.dmp.call("DELETE", path, "dupont").status_code == 204
    attempts = [
        ("GET", path, {}),
        ("GET", path + "/_history", {}),
        ("GET", w.bob_binary_path, {}),
        ("PATCH", path, {"json": _status_patch("superseded")}),
        ("DELETE", path, {}),
    ]
    for method, url, kw in attempts:
        response = w.dmp.call(method, url, "intrus", **kw)
        assert response.status_code == 403, (method, url, response.status_code, response.text)
        assert_refused(w, response, status=403, rule="R19", actor=INTRUS, patient=w.bob)


def test_an_outsider_cannot_let_a_third_professional_in(world: World) -> None:
    """R12/R13/R36: a professional records a consent *he* collected for himself, or delegates
    to a colleague only if he has a basis himself. Without any basis for Bob, "grant" to a
    third professional must be refused, and that third professional must still be refused."""
    w = world
    response = _right(w.dmp, "intrus", w.bob, "grant", THIRD, consentCollected=True)
    read = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "third")
    assert read.status_code == 403, f"{THIRD} let into Bob's record: {read.status_code}"
    assert_refused(w, read, status=403, rule="R19", actor=THIRD, patient=w.bob)
    assert response.status_code == 403, response.text
    row = trace(w.dmp, response)
    assert (row["outcome"], row["actor_id"], row["patient_id"]) == (403, INTRUS, w.bob)
    assert row["rule"] in ("R12", "R13", "R19"), row
    assert f"règle {row['rule']}" in outcome_text(response)
    delegated = _right(w.dmp, "intrus", w.bob, "delegate", THIRD)
    assert_refused(w, delegated, status=403, rule="R19", actor=INTRUS, patient=w.bob)
    settings = w.dmp.call("GET", f"/fhir/Patient/{w.bob}/$dmp-droits", "bob").json()
    assert THIRD not in json.dumps(settings)


def test_a_stranger_cannot_file_documents_into_a_record(world: World) -> None:
    """R27: only a PS with a basis (in the patient's care) feeds the record; the intruder has
    none for Bob, so nothing of his lands there, and the refusal is traced against Bob."""
    w = world
    before = w.dmp.counts()
    bundle = provide_bundle(
        subject=f"Patient/{w.bob}",
        author_idnps=INTRUS,
        documents=[(b"Faux compte rendu", {"patient_ins": OTHER_INS, "title": "Intrusion"})],
    )
    response = w.dmp.publish(bundle, who="intrus")
    assert response.status_code == 403, response.text
    assert "règle R27" in outcome_text(response)
    row = trace(w.dmp, response)
    assert (row["outcome"], row["actor_id"], row["patient_id"], row["rule"]) == (
        403,
        INTRUS,
        w.bob,
        "R27",
    )
    assert w.dmp.counts() == before  # no document, no submission, no blob


def test_a_self_recorded_authorisation_is_confirmed_to_the_holder(world: World) -> None:
    """R12 lets a PS assert the consent he collected (the reference allows it); the holder is
    then told (§3.2 "grant → holder confirmation"), so an abuse does not go unseen."""
    w = world
    response = _right(w.dmp, "intrus", w.bob, "grant", INTRUS, consentCollected=True)
    assert response.status_code == 200, response.text
    with w.dmp.db.session() as session:
        told = (
            session.execute(
                select(Notification.recipient_id).where(
                    Notification.patient_id == w.bob,
                    Notification.event == "confirmation",
                    Notification.request_id == response.headers["x-request-id"],
                )
            )
            .scalars()
            .all()
        )
    assert told == [OTHER_INS]


# --- patient B against patient A ------------------------------------------------------------


def test_patient_cannot_read_another_patients_record(world: World) -> None:
    w = world
    alice = w.alice
    probes: list[tuple[str, str, dict[str, Any], str | None]] = [
        ("GET", f"/fhir/Patient/{alice}", {}, None),
        ("GET", "/fhir/Patient", {"params": {"identifier": f"{INS_NIR}|{PATIENT_INS}"}}, None),
        ("GET", f"/fhir/DocumentReference/{w.alice_doc}", {}, "R19"),
        ("GET", f"/fhir/DocumentReference/{w.alice_doc}/_history", {}, "R19"),
        ("GET", f"/fhir/DocumentReference/{w.alice_doc}/_history/1", {}, "R19"),
        ("GET", f"/fhir/Binary/{w.alice_binary}", {}, "R19"),
        (
            "GET",
            "/fhir/DocumentReference",
            {"params": {"patient": alice, "status": "current"}},
            "R19",
        ),
        (
            "GET",
            "/fhir/DocumentReference",
            {"params": {"patient.identifier": f"{INS_NIR}|{PATIENT_INS}", "status": "current"}},
            "R19",
        ),
        (
            "GET",
            "/fhir/List",
            {"params": {"patient": alice, "code": "submissionset", "status": "current"}},
            "R19",
        ),
        ("GET", f"/fhir/Consent/{w.alice_consent}", {}, "R19"),
        ("GET", f"/fhir/Patient/{alice}/$dmp-droits", {}, "R19"),
        ("GET", "/fhir/AuditEvent", {"params": {"patient": alice}}, "R19"),
        (
            "PATCH",
            f"/fhir/DocumentReference/{w.alice_doc}",
            {"json": _status_patch("superseded")},
            "R19",
        ),
        ("DELETE", f"/fhir/DocumentReference/{w.alice_doc}", {}, "R19"),
    ]
    for method, url, kw, rule in probes:
        response = w.dmp.call(method, url, "bob", **kw)
        assert response.status_code == 403, (method, url, response.text)
        row = assert_refused(w, response, status=403, rule=rule, actor=OTHER_INS, patient=alice)
        assert row["actor_kind"] == "patient"
        assert "Examen normal" not in response.text and PATIENT_INS not in response.text
    # Nor may he change Alice's settings (block her MT's colleague, let someone in, oppose).
    for action, target in (("block", "8" + MARTIN), ("grant", THIRD), ("designate-mt", THIRD)):
        response = _right(w.dmp, "bob", alice, action, target)
        assert_refused(w, response, status=403, rule="R19", actor=OTHER_INS, patient=alice)
    settings = w.dmp.call("GET", f"/fhir/Patient/{alice}/$dmp-droits", "alice").json()
    values = {(p["name"], p.get("valueString")) for p in settings["parameter"]}
    assert ("mt", "8" + DUPONT) in values and ("blocked", "8" + MARTIN) not in values
    assert THIRD not in json.dumps(settings)
    assert w.dmp.call("GET", f"/fhir/DocumentReference/{w.alice_doc}", "alice").status_code == 200


def test_traces_never_cross_records(world: World) -> None:
    w = world
    # Activity on both records, including refusals.
    assert w.dmp.call("GET", f"/fhir/DocumentReference/{w.alice_doc}", "dupont").status_code == 200
    assert w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "intrus").status_code == 403
    bob_on_alice = w.dmp.call("GET", f"/fhir/DocumentReference/{w.alice_doc}", "bob")
    assert bob_on_alice.status_code == 403

    # Bob asking for Alice's traces: refused, nothing of hers.
    foreign = w.dmp.call("GET", "/fhir/AuditEvent", "bob", params={"patient": w.alice})
    assert_refused(w, foreign, status=403, rule="R19", actor=OTHER_INS, patient=w.alice)
    assert w.alice_doc not in foreign.text

    # Bob's own traces: only his record's.
    own = w.dmp.call("GET", "/fhir/AuditEvent", "bob", params={"patient": w.bob})
    assert own.status_code == 200, own.text
    events = [e["resource"] for e in own.json()["entry"]]
    assert events, "Bob's record has traces (publication, MT's reads, the intruder's refusal)"
    for event in events:
        refs = [x["what"]["reference"] for x in event["entity"]]
        assert refs[0] == f"Patient/{w.bob}", event
        assert f"Patient/{w.alice}" not in refs and f"DocumentReference/{w.alice_doc}" not in refs
    # ...including the intruder's refused attempt (the holder sees denies too, §3.1).
    assert any(
        e["agent"][0]["who"]["identifier"]["value"] == INTRUS and e["outcome"] == "4"
        for e in events
    )

    # Alice sees Bob's attempt on her record, and nothing of Bob's record.
    alice = w.dmp.call("GET", "/fhir/AuditEvent", "alice", params={"patient": w.alice}).json()
    alice_events = [e["resource"] for e in alice["entry"]]
    assert any(
        e["agent"][0]["who"]["identifier"]["value"] == OTHER_INS and e["outcome"] == "4"
        for e in alice_events
    )
    for event in alice_events:
        assert event["entity"][0]["what"]["reference"] == f"Patient/{w.alice}"
        assert w.bob_doc not in json.dumps(event)

    # The intruder (no basis for Bob) reads only his own actions there (R39, scenario #71).
    mine = w.dmp.call("GET", "/fhir/AuditEvent", "intrus", params={"patient": w.bob})
    assert mine.status_code == 200, mine.text
    seen = [e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in mine.json()["entry"]]
    assert seen and set(seen) == {INTRUS}


# --- tampering with the access mode ---------------------------------------------------------


@dataclass(frozen=True)
class Tamper:
    id: str
    who: str
    target: str  # "bob_doc" | "alice_doc"
    headers: tuple[tuple[str, str], ...]
    status: int
    rule: str | None
    patient: str | None  # "alice" | "bob" | None
    mode: str = "normal"  # the access mode the trace must show
    diagnostics: str = ""


BDG = ("X-Acces-Mode", "bris_de_glace")
C15 = ("X-Acces-Mode", "centre_15")
WHY = ("X-Acces-Justification", "patient inconscient")
CALL = ("X-Acces-Appel", "APPEL-42")
TAMPERING = [
    Tamper("bdg-no-justification", "intrus", "bob_doc", (BDG,), 403, "R17", "bob", "bris_de_glace"),
    Tamper(
        "bdg-blank-justification",
        "intrus",
        "bob_doc",
        (BDG, ("X-Acces-Justification", "    ")),
        403,
        "R17",
        "bob",
        "bris_de_glace",
    ),
    Tamper(
        "bdg-justification-without-mode",
        "intrus",
        "bob_doc",
        (WHY,),
        403,
        "R19",
        "bob",
    ),
    Tamper(
        "c15-non-regulator",
        "intrus",
        "bob_doc",
        (C15, CALL),
        403,
        "R18",
        "bob",
        "centre_15",
    ),
    Tamper(
        "c15-regulator-without-call",
        "regulator",
        "bob_doc",
        (C15,),
        403,
        "R18",
        "bob",
        "centre_15",
    ),
    Tamper(
        "unknown-mode",
        "intrus",
        "bob_doc",
        (("X-Acces-Mode", "god_mode"),),
        400,
        None,
        None,
        diagnostics="Mode d'accès inconnu",
    ),
    Tamper(
        "mode-wrong-case",
        "intrus",
        "bob_doc",
        (("X-Acces-Mode", "BRIS_DE_GLACE"), WHY),
        400,
        None,
        None,
        diagnostics="Mode d'accès inconnu",
    ),
    Tamper(
        "mode-list",
        "intrus",
        "bob_doc",
        (("X-Acces-Mode", "normal,bris_de_glace"), WHY),
        400,
        None,
        None,
        diagnostics="Mode d'accès inconnu",
    ),
    Tamper(
        "justification-control-chars",
        "intrus",
        "bob_doc",
        (BDG, ("X-Acces-Justification", "urgence\tvitale")),
        400,
        None,
        None,
        diagnostics="x-acces-justification",
    ),
    Tamper(
        "unknown-purpose",
        "dupont",
        "bob_doc",
        (("X-Acces-Finalite", "curiosity"),),
        400,
        None,
        None,
        diagnostics="Finalité inconnue",
    ),
    Tamper(
        "contract-purpose-by-the-mt",
        "dupont",
        "bob_doc",
        (("X-Acces-Finalite", "contract_conclusion"),),
        403,
        "G3",
        "bob",
    ),
    Tamper(
        "secret-mode-on-an-adult",
        "dupont",
        "bob_doc",
        (("X-Acces-Secret", "true"),),
        403,
        "R24b",
        "bob",
    ),
    Tamper(
        "patient-bdg-on-another-record",
        "bob",
        "alice_doc",
        (BDG, WHY),
        403,
        "R19",
        "alice",
        "bris_de_glace",
    ),
    Tamper(
        "patient-c15-on-another-record",
        "bob",
        "alice_doc",
        (C15, CALL),
        403,
        "R19",
        "alice",
        "centre_15",
    ),
    Tamper("insurer-bdg", "insurer", "bob_doc", (BDG, WHY), 403, "G3", "bob", "bris_de_glace"),
    Tamper("insurer-c15", "insurer", "bob_doc", (C15, CALL), 403, "G3", "bob", "centre_15"),
    Tamper("insurer-normal", "insurer", "bob_doc", (), 403, "G3", "bob"),
]
ACTORS = {
    "intrus": ("professional", INTRUS),
    "regulator": ("professional", REGULATOR),
    "dupont": ("professional", "8" + DUPONT),
    "bob": ("patient", OTHER_INS),
    "insurer": ("insurer", INSURER),
}


@pytest.mark.parametrize("case", TAMPERING, ids=[t.id for t in TAMPERING])
def test_tampered_access_context_is_refused_and_traced(world: World, case: Tamper) -> None:
    w = world
    doc = getattr(w, case.target)
    response = w.dmp.call(
        "GET", f"/fhir/DocumentReference/{doc}", case.who, headers=dict(case.headers)
    )
    patient = {"alice": w.alice, "bob": w.bob, None: None}[case.patient]
    kind, actor = ACTORS[case.who]
    if case.status == 400:
        # Refused before any record is touched: nothing of the record, an anonymous-at-worst
        # trace of the attempt (attribution: see the next test).
        assert response.status_code == 400, response.text
        text = outcome_text(response)
        assert response.json()["issue"][0]["code"] == "invalid"
        assert case.diagnostics in text, text
        assert_no_bob(w, response)
        assert "Examen normal" not in response.text
        row = trace(w.dmp, response)
        assert (row["outcome"], row["patient_id"], row["rule"]) == (400, None, None)
        assert (row["resource_type"], row["resource_id"]) == ("DocumentReference", doc)
        return
    row = assert_refused(w, response, status=403, rule=case.rule, actor=actor, patient=patient)
    assert "Examen normal" not in response.text
    assert (row["actor_kind"], row["access_mode"]) == (kind, case.mode)
    if case.mode == "centre_15" and dict(case.headers).get("X-Acces-Appel"):
        assert row["call_id"] == "APPEL-42"
    if case.mode == "bris_de_glace" and WHY in case.headers:
        assert row["justification"] == "patient inconscient"


def test_tampered_mode_header_trace_names_the_authenticated_actor(world: World) -> None:
    """The token was valid: the trace of an authenticated professional sending a forged mode
    must name him (§3.1: deny traces keep the actor), not "anonymous", or probing with
    tampered headers cannot be attributed."""
    w = world
    response = w.dmp.call(
        "GET",
        f"/fhir/DocumentReference/{w.bob_doc}",
        "intrus",
        headers={"X-Acces-Mode": "god_mode"},
    )
    assert response.status_code == 400
    row = trace(w.dmp, response)
    assert (row["actor_kind"], row["actor_id"]) == ("professional", INTRUS), shown(row)


def test_a_patient_cannot_claim_an_emergency_mode(world: World) -> None:
    """Bris de glace and centre 15 are professionals' modes (dmp-access.md §1.2, R17 "if the
    actor is a PS … Otherwise DENY R17", R18 regulator only). A patient sending the header,
    even on his own record, is refused rather than traced as an emergency access."""
    w = world
    for headers, rule in (
        ({"X-Acces-Mode": "bris_de_glace", "X-Acces-Justification": "x"}, "R17"),
        ({"X-Acces-Mode": "centre_15", "X-Acces-Appel": "APPEL-1"}, "R18"),
    ):
        response = w.dmp.call(
            "GET", f"/fhir/DocumentReference/{w.alice_doc}", "alice", headers=headers
        )
        assert response.status_code == 403, (
            f"{headers}: {response.status_code}, {shown(trace(w.dmp, response))}"
        )
        row = assert_refused(w, response, status=403, rule=rule, actor=PATIENT_INS, patient=w.alice)
        assert row["actor_kind"] == "patient"


def test_a_token_with_a_sticky_emergency_mode_is_no_shortcut(world: World) -> None:
    """An IdP-signed ``access_mode`` claim is the default mode, not a licence: without a
    justification it is refused like the header; an unknown claimed mode is a 401."""
    w = world
    settings = w.dmp.settings
    claims = {"actor": "professional", "idnat_ps": INTRUS, "profession": "10"}
    w.dmp.tokens["sticky"] = _token(settings, INTRUS, {**claims, "access_mode": "bris_de_glace"})
    response = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "sticky")
    row = assert_refused(w, response, status=403, rule="R17", actor=INTRUS, patient=w.bob)
    assert row["access_mode"] == "bris_de_glace"
    w.dmp.tokens["weird"] = _token(settings, INTRUS, {**claims, "access_mode": "god_mode"})
    response = w.dmp.call("GET", f"/fhir/DocumentReference/{w.bob_doc}", "weird")
    assert response.status_code == 401
    assert "Mode d'accès inconnu" in outcome_text(response)
    row = trace(w.dmp, response)
    assert (row["outcome"], row["actor_kind"], row["actor_id"]) == (401, "anonymous", None)


# --- forged tokens --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(settings: Any, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": settings.dev_issuer,
        "aud": settings.audience,
        "sub": "8" + DUPONT,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "forged",
        "acr": "eidas1",
        "actor": "professional",
        "idnat_ps": "8" + DUPONT,  # Bob's MT: the identity worth forging
        "profession": "10",
        **extra,
    }


def _raw(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(payload).encode()),
            _b64url(signature),
        ]
    )


def forge(kind: str, dmp: Dmp) -> str:
    settings = dmp.settings
    key = keys.load_or_create(settings.keys_dir)
    mt = {"actor": "professional", "idnat_ps": "8" + DUPONT, "profession": "10"}
    if kind == "wrong-signature":
        other = keys.SigningKey(ec.generate_private_key(ec.SECP256R1()), key.kid)
        return mint_token(
            other,
            issuer=settings.dev_issuer,
            audience=settings.audience,
            subject="8" + DUPONT,
            claims=mt,
            ttl_seconds=600,
        )
    if kind in ("expired", "not-yet-valid"):
        shift = -7200 if kind == "expired" else 7200
        return mint_token(
            key,
            issuer=settings.dev_issuer,
            audience=settings.audience,
            subject="8" + DUPONT,
            claims=mt,
            ttl_seconds=600,
            now=time.time() + shift,
        )
    if kind in ("wrong-audience", "unknown-issuer"):
        return mint_token(
            key,
            issuer="https://evil.example/idp" if kind == "unknown-issuer" else settings.dev_issuer,
            audience="https://other.example" if kind == "wrong-audience" else settings.audience,
            subject="8" + DUPONT,
            claims=mt,
            ttl_seconds=600,
        )
    if kind == "alg-none":
        return _raw({"alg": "none", "typ": "JWT"}, _claims(settings), b"")
    if kind == "alg-none-two-segments":
        return _raw({"alg": "none", "typ": "JWT"}, _claims(settings), b"").rstrip(".")
    if kind == "hs256-public-key-as-secret":
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        secret = json.dumps(key.public_jwk).encode()
        signing_input = ".".join(
            [_b64url(json.dumps(header).encode()), _b64url(json.dumps(_claims(settings)).encode())]
        )
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64url(mac)
    # Claims changed after a genuine signature: the intruder's own token, edited.
    genuine = dmp.tokens["intrus"]
    head, body, signature = genuine.split(".")
    payload = json.loads(_unb64url(body))
    if kind == "claims-changed":
        payload.update(sub="8" + DUPONT, idnat_ps="8" + DUPONT)
    elif kind == "role-escalated":
        payload.update(role="regulator")
    elif kind == "expiry-extended":
        payload.update(exp=payload["exp"] + 10 * 365 * 86400)
    elif kind == "signature-stripped":
        return f"{head}.{body}."
    else:
        raise AssertionError(kind)
    return f"{head}.{_b64url(json.dumps(payload).encode())}.{signature}"


FORGERIES = {
    "wrong-signature": "Signature du jeton invalide",
    "expired": "Jeton expiré",
    "not-yet-valid": "pas encore valide",
    "wrong-audience": "autre audience",
    "unknown-issuer": "Émetteur de jeton non reconnu",
    "alg-none": "Algorithme de signature « none » refusé",
    "alg-none-two-segments": "Jeton mal formé",
    "hs256-public-key-as-secret": "Algorithme de signature « HS256 » refusé",
    "claims-changed": "Signature du jeton invalide",
    "role-escalated": "Signature du jeton invalide",
    "expiry-extended": "Signature du jeton invalide",
    "signature-stripped": "",
}


@pytest.mark.parametrize("kind", list(FORGERIES))
def test_forged_token_is_401_and_traced_anonymous(world: World, kind: str) -> None:
    w = world
    token = forge(kind, w.dmp)
    headers = {"Authorization": f"Bearer {token}"}
    if kind == "role-escalated":
        headers.update({"X-Acces-Mode": "centre_15", "X-Acces-Appel": "APPEL-42"})
    for url in (f"/fhir/DocumentReference/{w.bob_doc}", w.bob_binary_path):
        response = w.dmp.client.get(url, headers=headers)
        assert response.status_code == 401, (kind, response.text)
        text = outcome_text(response)
        assert response.json()["issue"][0]["code"] == "login"
        assert FORGERIES[kind] in text, text
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert token not in response.text  # the token is never echoed
        assert_no_bob(w, response)
        row = trace(w.dmp, response)
        # The forged identity is never believed, not even in the trace.
        assert (row["outcome"], row["actor_kind"], row["actor_id"]) == (401, "anonymous", None)
        assert (row["patient_id"], row["rule"]) == (None, None)
        assert row["resource_id"] in (w.bob_doc, w.bob_binary)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "bearer", "Token abc"],
)
def test_missing_or_malformed_credentials_are_401_and_traced(
    world: World, authorization: str
) -> None:
    w = world
    headers = {"Authorization": authorization} if authorization else {}
    response = w.dmp.client.get(f"/fhir/DocumentReference/{w.bob_doc}", headers=headers)
    assert response.status_code == 401, response.text
    assert outcome_text(response)
    assert response.headers["www-authenticate"].startswith('Bearer realm="parcours"')
    assert_no_bob(w, response)
    row = trace(w.dmp, response)
    assert (row["outcome"], row["actor_kind"], row["actor_id"], row["patient_id"]) == (
        401,
        "anonymous",
        None,
        None,
    )
