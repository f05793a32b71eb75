"""Conformance of the DMP document service against the official corpus in
``/work/shared/conformance`` (README there; reference ``dmp-pdsm.md`` §1, §2, §7, §8).

1. The official ITI-65 transaction bundles (PDSm4DMP TD2 and TD2.1, the PDSm replacement
   bundle), placeholders substituted as the README says, are accepted and each documented
   defect is reported as a warning in the transaction-response; the defects the service refuses
   (hash/size mismatch, D1 / D19) give a 400 naming the element and persist nothing.
2. What was published reads back equal (modulo what the server owns), and ITI-68 returns the
   very bytes whose SHA-1 is ``attachment.hash``.
3. Replacement (T65-20): the replaced document is ``superseded``, the new one ``current``.
4. The PDSm examples that cannot be posted as they are (D1, D15, the PDSm4DMP ITI-105 example).
5. The NIST asbestos ``MHDv420_DocumentRecipient_comprehensive`` rows of ``index.csv``: the XML
   bundles are not run (FHIR XML, template variables, US codes); the intent of each row is
   applied to a valid PDSm bundle from ``parcours.dossier.samples.provide_bundle``.
6. The terminology tables (ASS_X04, TRE_A03, TRE_A07) agree with ``parcours.dossier.terminology``.

Finding not listed among the README's known defects: none of the three official ITI-65 bundles
carries a SubmissionSet ``identifier`` (uniqueId). The service refuses that (400, as asbestos
``Missing_UniqueId_SubmissionSetTypeList`` / T65-11 require); each example test shows the refusal,
then gives the SubmissionSet a uniqueId as asbestos does for its own templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from parcours.app import create_app
from parcours.dossier import terminology as term
from parcours.dossier.samples import INS_NIR, PATIENT_INS, cda, provide_bundle
from parcours.dossier.store import open_store
from tests.conftest import BACKENDS, PostgresScratch, _new_database, make_settings
from tests.dossier import conformance_data as cd
from tests.dossier.conftest import Dmp, _token, grant_access, open_record
from tests.scenario import load_scenario

if not cd.available():
    pytest.skip(
        f"official conformance corpus not found at {cd.CONFORMANCE}", allow_module_level=True
    )

V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
CALLER_STRUCTURE = "1350000014"  # the "dupont" token's structure (IDNST 1 + FINESS)
EMPTY_SHA1 = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
V420 = "MHDv420_DocumentRecipient_comprehensive"


# --- helpers --------------------------------------------------------------------------------


def _issues(outcome: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((outcome or {}).get("issue") or [])


def _errors(outcome: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [i for i in _issues(outcome) if i["severity"] in ("error", "fatal")]


def _expressions(issues: list[dict[str, Any]]) -> list[str]:
    return [e for i in issues for e in i.get("expression") or []]


def _matches(issues: list[dict[str, Any]], pattern: str, text: str | None = None) -> bool:
    return any(
        re.fullmatch(pattern, expr) and (text is None or text in issue["diagnostics"])
        for issue in issues
        for expr in issue.get("expression") or []
    )


def assert_refused(dmp: Dmp, response: Any, before: tuple[int, int, int], *patterns: str) -> Any:
    """400 + OperationOutcome with an error at each expected element; nothing stored."""
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    errors = _errors(outcome)
    assert errors, outcome
    for pattern in patterns:
        assert _matches(errors, pattern), (pattern, _expressions(errors))
    assert dmp.counts() == before
    return outcome


def assert_accepted(bundle: dict[str, Any], response: Any) -> list[dict[str, Any]]:
    """200 transaction-response: one entry per request entry, in order; 201 + location per
    POST (of the posted type), 200 per PATCH (PDSm4DMP); outcomes carry warnings only."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(bundle["entry"])
    for sent, got in zip(bundle["entry"], body["entry"], strict=True):
        answer = got["response"]
        assert "id" not in answer  # D20: do not echo the request fullUrl as an element id
        method = sent["request"]["method"]
        if method == "POST":
            assert answer["status"].split()[0] == "201", answer
            rtype, rid = answer["location"].split("/")[:2]
            assert rtype == sent["resource"]["resourceType"] and rid, answer
        else:
            assert method == "PATCH"
            assert answer["status"].split()[0] == "200", answer
            assert answer["location"].startswith(sent["request"]["url"] + "/"), answer
        assert not _errors(answer.get("outcome")), answer
    return body["entry"]  # type: ignore[no-any-return]


def warnings_of(entries: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    issues = _issues(entries[index]["response"].get("outcome"))
    assert all(i["severity"] == "warning" for i in issues), issues
    return issues


def created_id(entries: list[dict[str, Any]], index: int) -> str:
    return entries[index]["response"]["location"].split("/")[1]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=BACKENDS)
def shared_dmp(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_scratch: PostgresScratch | None,
) -> Iterator[Dmp]:
    """One DMP per backend for the tests that need no empty record: refusals (which store
    nothing, as asserted) and checks of one fresh publication. It keeps the file fast."""
    directory = tmp_path_factory.mktemp(f"conformance-{request.param}")
    db = _new_database(request.param, directory, pg_scratch)
    settings = make_settings(directory, db.url)
    load_scenario(db, directory)
    store = open_store(settings)
    dmp = Dmp(TestClient(create_app(settings, db, store)), db, settings, store)
    dmp.tokens = {
        "dupont": _token(
            settings,
            cd.OUR_IDNPS,
            {
                "actor": "professional",
                "idnat_ps": cd.OUR_IDNPS,
                "profession": "10",
                "structure": CALLER_STRUCTURE,
            },
        ),
        "agent": _token(settings, "CPAM35-A001", {"actor": "agent", "agent_id": "CPAM35-A001"}),
        "patient": _token(settings, "patient", {"actor": "patient", "ins": PATIENT_INS}),
    }
    dmp.patient_id = open_record(dmp)
    grant_access(dmp, "designate-mt", cd.OUR_IDNPS)  # the publisher is his médecin traitant
    yield dmp
    db.dispose()


# What the server owns or rewrites on a DocumentReference; everything else must read back as
# sent. content, context and relatesTo are compared element by element below.
SERVER_OWNED = {"id", "meta", "text", "identifier", "subject", "securityLabel", "custodian"}
COMPARED_APART = {"content", "context", "relatesTo"}


def assert_reads_back(dmp: Dmp, sent: dict[str, Any], doc_id: str, data: bytes) -> dict[str, Any]:
    got = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}")
    assert got.status_code == 200, got.text
    read = got.json()
    assert read["resourceType"] == "DocumentReference" and read["id"] == doc_id
    for key, value in sent.items():
        if key not in SERVER_OWNED | COMPARED_APART:
            assert read.get(key) == value, key
    for key in ("masterIdentifier", "type", "category", "date", "author", "status"):
        assert read[key] == sent[key], key
    # subject: resolved to our patient (literal or conditional reference in the input)
    assert read["subject"] == {"reference": f"Patient/{dmp.patient_id}"}
    # identifier: what was sent, plus the server-assigned entryUUID
    for ident in sent.get("identifier") or []:
        assert ident in read["identifier"]
    assert {"use": "official", "system": cd.RFC3986, "value": f"urn:uuid:{doc_id}"} in read[
        "identifier"
    ]
    # content: the attachment minus url (rewritten to the Binary), and format
    assert len(read["content"]) == 1
    sent_att = dict(sent["content"][0]["attachment"])
    read_att = dict(read["content"][0]["attachment"])
    url = read_att.pop("url")
    sent_att.pop("url")
    assert read_att == sent_att
    assert read["content"][0].get("format") == sent["content"][0].get("format")
    # context: as sent, sourcePatientInfo aside (it may be resolved)
    rest = {k: v for k, v in read["context"].items() if k != "sourcePatientInfo"}
    assert rest == {k: v for k, v in sent["context"].items() if k != "sourcePatientInfo"}
    assert read["context"].get("sourcePatientInfo")
    assert read.get("relatesTo") == sent.get("relatesTo")
    # securityLabel normalised: one v3 confidentiality code (N in every example, D16's
    # misspelt-system N included); the misspelt system is never emitted
    codings = [c for label in read["securityLabel"] for c in label["coding"]]
    assert [c["code"] for c in codings if c["system"] == V3_CONFIDENTIALITY] == ["N"]
    assert term.VISIBILITY_SYSTEM_MISSPELT not in {c["system"] for c in codings}
    # custodian: as sent, or filled in from the caller's structure (D7)
    if "custodian" in sent:
        assert read["custodian"] == sent["custodian"]
    else:
        assert read["custodian"]["identifier"]["value"] == CALLER_STRUCTURE
    # ITI-68: the same bytes, whose SHA-1 and length are the attachment's
    retrieved = dmp.call("GET", url)
    assert retrieved.status_code == 200, retrieved.text
    assert retrieved.content == data
    assert cd.sha1_b64(retrieved.content) == read_att["hash"]
    assert len(retrieved.content) == read_att["size"]
    assert retrieved.headers["content-type"].split(";")[0] == read_att["contentType"]
    return read  # type: ignore[no-any-return]


def search_ids(dmp: Dmp, status: str) -> set[str]:
    found = dmp.call("GET", f"/fhir/DocumentReference?patient={dmp.patient_id}&status={status}")
    assert found.status_code == 200, found.text
    return {e["resource"]["id"] for e in found.json().get("entry") or []}


def read_status(dmp: Dmp, doc_id: str) -> str:
    got = dmp.call("GET", f"/fhir/DocumentReference/{doc_id}")
    assert got.status_code == 200, got.text
    return got.json()["status"]  # type: ignore[no-any-return]


def document_bytes(bundle: dict[str, Any], document: dict[str, Any]) -> bytes:
    """The bytes of the Binary a DocumentReference of the bundle points to."""
    return cd.binary_bytes(bundle, document["content"][0]["attachment"]["url"])


def official_bundle(dmp: Dmp, relative: str) -> dict[str, Any]:
    bundle = cd.substitute(cd.load(relative), dmp.patient_id)
    cd.make_unique(bundle)
    return bundle


# Documented defects of the PDSm4DMP bundles, each expected as a warning: (entry, expression
# under Bundle.entry[n].resource, a fragment of the diagnostics or None).
PDSM4DMP_WARNINGS = [
    (0, r"\.extension\[designationType\]", None),  # D6: TRE_A03 class as contentTypeCode
    (0, r"\.source", None),  # D12: a plain Practitioner as SubmissionSet source
    (0, r"\.extension", "sourcePatientId"),  # D12: ihe-sourcePatientId on a List
    (1, r"\.category", "11488-4"),  # D5: consult note 11488-4 with class 11 (ASS_X04: 10)
    (1, r"\.custodian", None),  # D7: no custodian
    (1, r"\.context\.facilityType", "22232009"),  # D7: SNOMED CT facility
    (1, r"\.context\.practiceSetting", "394802001"),  # D7: SNOMED CT practice setting
]


def assert_warned(entries: list[dict[str, Any]], expected: list[tuple[int, str, Any]]) -> None:
    for index, element, text in expected:
        pattern = rf"Bundle\.entry\[{index}\]\.resource{element}"
        assert _matches(warnings_of(entries, index), pattern, text), (index, element, text)


def publish_td2(dmp: Dmp) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    bundle = official_bundle(dmp, cd.TD2_SUBMISSION)
    cd.add_submission_unique_id(bundle)
    response = dmp.publish(bundle)
    return bundle, assert_accepted(bundle, response)


# --- 1 & 2: the official ITI-65 bundles --------------------------------------------------------


def test_pdsm4dmp_td2_submission_is_accepted_with_its_defects_as_warnings(dmp: Dmp) -> None:
    bundle = official_bundle(dmp, cd.TD2_SUBMISSION)
    before = dmp.counts()
    # As published, the SubmissionSet has no uniqueId (T65-11): refused, and only for that.
    outcome = assert_refused(
        dmp, dmp.publish(bundle), before, r"Bundle\.entry\[0\]\.resource\.identifier"
    )
    assert _expressions(_errors(outcome)) == ["Bundle.entry[0].resource.identifier"]

    unique_id = cd.add_submission_unique_id(bundle)
    entries = assert_accepted(bundle, dmp.publish(bundle))
    assert_warned(entries, PDSM4DMP_WARNINGS)
    assert dmp.counts() == (before[0] + 1, before[1] + 1, before[2] + 1)

    sent = bundle["entry"][1]["resource"]
    assert_reads_back(dmp, sent, created_id(entries, 1), document_bytes(bundle, sent))

    listed = dmp.call("GET", f"/fhir/List/{created_id(entries, 0)}")
    assert listed.status_code == 200, listed.text
    submission = listed.json()
    assert {"use": "usual", "system": cd.RFC3986, "value": unique_id} in submission["identifier"]
    assert [e["item"]["reference"] for e in submission["entry"]] == [
        f"DocumentReference/{created_id(entries, 1)}"
    ]


def test_pdsm4dmp_td21_replacement_supersedes_the_replaced_document(dmp: Dmp) -> None:
    """T65-20 with the PDSm4DMP TD2.1 bundle; X = the TD2 example we published first."""
    _, first = publish_td2(dmp)
    x_id = created_id(first, 1)
    bundle = official_bundle(dmp, cd.TD21_REPLACEMENT)
    cd.retarget(bundle, "doc-x-id", x_id)
    before = dmp.counts()
    outcome = assert_refused(
        dmp, dmp.publish(bundle), before, r"Bundle\.entry\[0\]\.resource\.identifier"
    )
    assert _expressions(_errors(outcome)) == ["Bundle.entry[0].resource.identifier"]
    assert read_status(dmp, x_id) == "current"

    cd.add_submission_unique_id(bundle)
    entries = assert_accepted(bundle, dmp.publish(bundle))
    assert [e["request"]["method"] for e in bundle["entry"]] == ["POST", "POST", "PATCH", "POST"]
    assert entries[2]["response"]["location"].startswith(f"DocumentReference/{x_id}/_history/")
    assert_warned(entries, PDSM4DMP_WARNINGS)

    y_id = created_id(entries, 1)
    sent = bundle["entry"][1]["resource"]
    read = assert_reads_back(dmp, sent, y_id, document_bytes(bundle, sent))
    assert read["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{x_id}"}}
    ]
    assert read_status(dmp, x_id) == "superseded"
    assert read_status(dmp, y_id) == "current"
    assert search_ids(dmp, "current") == {y_id}
    assert search_ids(dmp, "superseded") == {x_id}
    old_url = dmp.call("GET", f"/fhir/DocumentReference/{x_id}").json()["content"][0]
    assert dmp.call("GET", old_url["attachment"]["url"]).status_code in (404, 410)


def test_pdsm_replacement_bundle_hash_defect_is_refused_then_accepted_once_fixed(
    dmp: Dmp,
) -> None:
    """D19: the proposed PDSm replacement bundle declares a SHA-1 that is not its Binary's."""
    x_id = dmp.publish_one()
    bundle = official_bundle(dmp, cd.PDSM_REPLACEMENT)
    cd.retarget(bundle, "doc-old", x_id)
    hash_at = r"Bundle\.entry\[1\]\.resource\.content\[0\]\.attachment\.hash"
    before = dmp.counts()

    outcome = assert_refused(
        dmp, dmp.publish(bundle), before, r"Bundle\.entry\[0\]\.resource\.identifier", hash_at
    )
    assert len(_errors(outcome)) == 2
    cd.add_submission_unique_id(bundle)
    outcome = assert_refused(dmp, dmp.publish(bundle), before, hash_at)
    assert len(_errors(outcome)) == 1  # the size (5 bytes) is right, only the hash is wrong
    assert "9/+ei3uy4Jtwk1pdeF4MxdnQq/A=" in _errors(outcome)[0]["diagnostics"]
    assert read_status(dmp, x_id) == "current"

    cd.fix_hashes(bundle)
    assert bundle["entry"][1]["resource"]["content"][0]["attachment"]["hash"] == (
        "9/+ei3uy4Jtwk1pdeF4MxdnQq/A="
    )
    entries = assert_accepted(bundle, dmp.publish(bundle))
    assert_warned(
        entries,
        [
            (1, r"\.category", "34133-9"),  # 34133-9 with class 10 (ASS_X04: 11)
            (1, r"\.custodian", None),  # D7 / D19: no custodian
            (1, r"\.securityLabel\[0\]", "TRE_A07"),  # D16: misspelt TRE_A07 system
        ],
    )
    assert not warnings_of(entries, 0)  # this SubmissionSet is clean (TRE_R02, PractitionerRole)

    y_id = created_id(entries, 1)
    sent = bundle["entry"][1]["resource"]
    assert_reads_back(dmp, sent, y_id, document_bytes(bundle, sent))
    assert read_status(dmp, x_id) == "superseded"
    assert search_ids(dmp, "current") == {y_id}


# --- 4: PDSm examples that cannot be posted as they are -----------------------------------------


def wrap_pdsm_documentreference(dmp: Dmp) -> dict[str, Any]:
    """``exemple-pdsm-documentreference`` wrapped, with the shipped ``Binary-6789``, into an
    ITI-65 bundle whose SubmissionSet is the PDSm ``ExampleSubmissionSet``."""
    document = cd.substitute(cd.load(cd.PDSM_DOCREF), dmp.patient_id)
    submission = cd.substitute(cd.load(cd.PDSM_SUBMISSIONSET), dmp.patient_id)
    binary = cd.load(cd.PDSM_BINARY)
    doc_url, binary_url, list_url = cd.fresh_urn(), cd.fresh_urn(), cd.fresh_urn()
    # Wrapping: references to resources outside the example become bundle-internal ones, and
    # the placeholder author / source patient (PractitionerRole/…, Patient/fr-patient-123,
    # neither contained, as MHD Comprehensive requires) become the contained practitioner and a
    # contained patient with our INS.
    document["author"] = [{"reference": "#practitioner-example"}]
    document["contained"].append(
        {
            "resourceType": "Patient",
            "id": "patient-source",
            "identifier": [{"system": INS_NIR, "value": PATIENT_INS}],
        }
    )
    document["context"]["sourcePatientInfo"] = {"reference": "#patient-source"}
    document["content"][0]["attachment"]["url"] = binary_url
    submission["entry"] = [{"item": {"reference": doc_url}}]
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [cd.BUNDLE_PROFILE]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": list_url,
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": doc_url,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary_url,
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    cd.make_unique(bundle)
    return bundle


def test_pdsm_documentreference_example_placeholder_hash_and_size_are_refused(dmp: Dmp) -> None:
    """D1: the example's hash is the SHA-1 of the empty string and its size 345678, for an
    11-byte Binary: refused, naming both; accepted once recomputed from the Binary."""
    bundle = wrap_pdsm_documentreference(dmp)
    document = bundle["entry"][1]["resource"]
    att = document["content"][0]["attachment"]
    assert (att["hash"], att["size"]) == (EMPTY_SHA1, 345678)
    before = dmp.counts()
    outcome = assert_refused(
        dmp,
        dmp.publish(bundle),
        before,
        r"Bundle\.entry\[1\]\.resource\.content\[0\]\.attachment\.hash",
        r"Bundle\.entry\[1\]\.resource\.content\[0\]\.attachment\.size",
    )
    assert len(_errors(outcome)) == 2
    warnings = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert _matches(warnings, r"Bundle\.entry\[1\]\.resource\.category", "34133-9")
    assert _matches(warnings, r"Bundle\.entry\[1\]\.resource\.securityLabel\[0\]", "TRE_A07")

    cd.fix_hashes(bundle)
    entries = assert_accepted(bundle, dmp.publish(bundle))
    assert_reads_back(dmp, document, created_id(entries, 1), b"Hello World")


def test_pdsm_documentreference_example_lab_format_for_a_pdf_is_reported(shared_dmp: Dmp) -> None:
    dmp = shared_dmp
    bundle = wrap_pdsm_documentreference(dmp)
    cd.fix_hashes(bundle)
    entries = assert_accepted(bundle, dmp.publish(bundle))
    assert _matches(warnings_of(entries, 1), r"Bundle\.entry\[1\]\.resource\.content\[0\].*")


def _iti105(dmp: Dmp, relative: str) -> dict[str, Any]:
    document = cd.substitute(cd.load(relative), dmp.patient_id)
    document.pop("text", None)
    document["masterIdentifier"]["value"] = cd.fresh_urn()
    return document


def test_pdsm4dmp_iti105_example_is_refused_naming_missing_producer_codes(shared_dmp: Dmp) -> None:
    """The PDSm4DMP ITI-105 example (TD2 option A) has no facilityType nor practiceSetting,
    while ``constr-bind-ProducteurDoc-simplified`` requires one of them: refused, precisely."""
    dmp = shared_dmp
    document = _iti105(dmp, cd.PDSM4DMP_ITI105)
    before = dmp.counts()
    response = dmp.call("POST", "/fhir/DocumentReference", json=document)
    assert "location" not in response.headers
    assert_refused(
        dmp,
        response,
        before,
        r"(.+\.)?context\.facilityType",
        r"(.+\.)?context\.practiceSetting",
    )


def test_iti105_refusal_names_elements_of_the_posted_document_reference(shared_dmp: Dmp) -> None:
    dmp = shared_dmp
    document = _iti105(dmp, cd.PDSM4DMP_ITI105)
    response = dmp.call("POST", "/fhir/DocumentReference", json=document)
    assert response.status_code == 400
    expressions = _expressions(response.json()["issue"])
    assert expressions
    assert all(e.startswith("DocumentReference.") for e in expressions), expressions


def test_pdsm_iti105_example_is_accepted_with_hash_and_size_recomputed(shared_dmp: Dmp) -> None:
    dmp = shared_dmp
    document = _iti105(dmp, cd.PDSM_ITI105)
    # The author placeholder (PractitionerRole/practitionerrole-example, not on our server)
    # becomes a contained practitioner: our directory professional, as in the PDSm4DMP example.
    document["contained"] = [
        {
            "resourceType": "Practitioner",
            "id": "auteur",
            "identifier": [{"system": cd.IDNPS, "value": cd.OUR_IDNPS}],
        }
    ]
    document["author"] = [{"reference": "#auteur"}]
    att = document["content"][0]["attachment"]
    assert (att["hash"], att["size"]) == (EMPTY_SHA1, 250000)  # D15: not to be trusted
    before = dmp.counts()
    response = dmp.call("POST", "/fhir/DocumentReference", json=document)
    assert response.status_code == 201, response.text
    assert response.headers["location"]
    created = response.json()
    assert created["content"][0]["attachment"]["hash"] == "Ck1VqNd45QIvq3AZd8XYQLvEhtA="
    assert created["content"][0]["attachment"]["size"] == 11
    assert dmp.counts()[0] == before[0] + 1
    got = dmp.call("GET", created["content"][0]["attachment"]["url"])
    assert got.content == b"Hello World"


def test_custodian_filled_in_from_the_caller_is_a_valid_fhir_identifier(shared_dmp: Dmp) -> None:
    dmp = shared_dmp
    bundle = provide_bundle(subject=f"Patient/{dmp.patient_id}", author_idnps=cd.OUR_IDNPS)
    del bundle["entry"][1]["resource"]["custodian"]
    entries = assert_accepted(bundle, dmp.publish(bundle))
    read = dmp.call("GET", f"/fhir/DocumentReference/{created_id(entries, 1)}").json()
    assert read["custodian"] == {"identifier": {"system": IDNST_SYSTEM, "value": CALLER_STRUCTURE}}


# --- 5: asbestos MHDv420 comprehensive, intent applied to a valid PDSm bundle ----------------


Bundle = dict[str, Any]
LIST, DOC = 0, 1  # entry positions in samples.provide_bundle: List, DocumentReference, Binary
BAD_LINK = "http://example.com/fhir/Patient/1"  # the asbestos bad link


def _doc(b: Bundle) -> dict[str, Any]:
    return b["entry"][DOC]["resource"]  # type: ignore[no-any-return]


def _list(b: Bundle) -> dict[str, Any]:
    return b["entry"][LIST]["resource"]  # type: ignore[no-any-return]


def _att(b: Bundle) -> dict[str, Any]:
    return _doc(b)["content"][0]["attachment"]  # type: ignore[no-any-return]


def _drop_extension(b: Bundle, name: str) -> None:
    _list(b)["extension"] = [e for e in _list(b)["extension"] if not e["url"].endswith(name)]


def _drop_contained_patient(b: Bundle) -> None:
    _doc(b)["contained"] = [c for c in _doc(b)["contained"] if c["resourceType"] != "Patient"]


def _unidentified_source_patient(b: Bundle) -> None:
    for c in _doc(b)["contained"]:
        if c["resourceType"] == "Patient":
            del c["identifier"]


def _set(
    target: Callable[[Bundle], dict[str, Any]], key: str, value: Any
) -> Callable[[Bundle], None]:
    def mutate(b: Bundle) -> None:
        target(b)[key] = value

    return mutate


def _del(target: Callable[[Bundle], dict[str, Any]], key: str) -> Callable[[Bundle], None]:
    def mutate(b: Bundle) -> None:
        del target(b)[key]

    return mutate


D = r"Bundle\.entry\[1\]\.resource"
L = r"Bundle\.entry\[0\]\.resource"
A = D + r"\.content\[0\]\.attachment"

# asbestos test name → (mutation of a valid bundle, expected error expression; reference §8.1)
NEGATIVE: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "Missing_TypeCode": (_del(_doc, "type"), D + r"\.type"),  # T65-03
    "Missing_Format_Code": (
        _del(lambda b: _doc(b)["content"][0], "format"),
        D + r"\.content\[0\]\.format",
    ),  # T65-04
    "Missing_HealthcareFacilityTypeCode": (
        _del(lambda b: _doc(b)["context"], "facilityType"),
        D + r"\.context\.facilityType",
    ),  # T65-05
    "Missing_PracticeSettingCode": (
        _del(lambda b: _doc(b)["context"], "practiceSetting"),
        D + r"\.context\.practiceSetting",
    ),  # T65-06
    "Missing_LanguageCode": (_del(_att, "language"), A + r"\.language"),  # T65-07
    "Missing_MimeType": (_del(_att, "contentType"), A + r"\.contentType"),  # T65-08
    "Missing_Document": (_del(_att, "url"), A + r"\.url"),  # T65-09
    "Missing_UniqueId_Reference": (
        _del(_doc, "masterIdentifier"),
        D + r"\.masterIdentifier",
    ),  # T65-10
    "Missing_UniqueId_SubmissionSetTypeList": (
        _del(_list, "identifier"),
        L + r"\.identifier",
    ),  # T65-11
    "Missing_SourceId": (
        lambda b: _drop_extension(b, "ihe-sourceId"),
        L + r"\.extension.*sourceId.*",
    ),  # T65-12
    "Missing_SubmissionTime": (_del(_list, "date"), L + r"\.date"),  # T65-13
    "Missing_ContentTypeCode": (
        lambda b: _drop_extension(b, "ihe-designationType"),
        L + r"\.extension.*designationType.*",
    ),  # T65-14
    # Missing_PatientID: its description.md says "will succeed" (a copy-paste slip); its
    # TestScript (expected failing assertion CMPMETA4_1) and index.csv make it negative.
    "Missing_PatientID": (_del(_doc, "subject"), D + r"\.subject"),  # T65-15
    "Missing_PatientID_Reference": (_set(_doc, "subject", {}), D + r"\.subject"),  # T65-15
    "Missing_PatientID_SubmissionSetTypeList": (_del(_list, "subject"), L + r"\.subject"),  # T65-15
    "Missing_SourcePatientId": (
        _del(lambda b: _doc(b)["context"], "sourcePatientInfo"),
        D + r"\.context\.sourcePatientInfo",
    ),  # T65-16
    "Bad_Patient_Link": (
        _set(_doc, "subject", {"reference": BAD_LINK}),
        D + r"\.subject",
    ),  # T65-17
    # Only List.subject is broken; the service reports the List/DocumentReference subject
    # mismatch on the DocumentReference's subject: either subject is an acceptable pointer.
    "Bad_Patient_Link_SubmissionSetTypeList": (
        _set(_list, "subject", {"reference": BAD_LINK}),
        r"Bundle\.entry\[[01]\]\.resource\.subject",
    ),  # T65-17
    "Bad_SourcePatientInfo_Link": (
        _drop_contained_patient,
        D + r"\.context\.sourcePatientInfo",
    ),  # T65-18
    "Bad_Profile": (
        lambda b: b["meta"].update(profile=["http://ihe.net/fhir/StructureDefinition/IHE_MHD"]),
        r"Bundle\.meta\.profile",
    ),  # T65-19
    "Missing_Profile": (lambda b: b.pop("meta"), r"Bundle\.meta\.profile"),  # T65-19
}
# Reference §8.1 variants that asbestos does not have.
EXTRA_NEGATIVE: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "T65-16_source_patient_without_identifier": (
        _unidentified_source_patient,
        D + r"\.context\.sourcePatientInfo",
    ),
    "T65-30_status_superseded": (_set(_doc, "status", "superseded"), D + r"\.status"),
}

NEGATIVE_ROWS = cd.asbestos_rows(V420, "negative")
POSITIVE_ROWS = cd.asbestos_rows(V420, "positive")


def valid_bundle(dmp: Dmp, **overrides: Any) -> Bundle:
    documents = [(cda("Examen normal."), overrides)] if overrides else None
    return provide_bundle(
        subject=f"Patient/{dmp.patient_id}", author_idnps=cd.OUR_IDNPS, documents=documents
    )


def _refused_and_not_found(dmp: Dmp, bundle: Bundle, expression: str) -> dict[str, Any]:
    before = dmp.counts()
    master = (_doc(bundle).get("masterIdentifier") or {}).get("value")
    outcome = assert_refused(dmp, dmp.publish(bundle), before, expression)
    if master:  # asbestos checks "nothing persisted" by searching afterwards
        found = dmp.call(
            "GET",
            f"/fhir/DocumentReference?patient={dmp.patient_id}&identifier={cd.RFC3986}|{master}",
        )
        assert found.status_code == 200 and found.json()["total"] == 0, found.text
    return outcome


def test_every_negative_v420_comprehensive_row_is_mapped() -> None:
    names = {row["test"] for row in NEGATIVE_ROWS}
    assert len(names) == 21, names
    assert names == set(NEGATIVE)  # every negative row of the collection is exercised
    for row in NEGATIVE_ROWS:
        assert row["expected_outcome"].startswith("HTTP 400 + OperationOutcome"), row


@pytest.mark.parametrize("row", NEGATIVE_ROWS, ids=lambda row: row["test"])
def test_asbestos_negative_row_is_refused_and_nothing_stored(
    shared_dmp: Dmp, row: dict[str, str]
) -> None:
    mutate, expression = NEGATIVE[row["test"]]
    bundle = valid_bundle(shared_dmp)
    mutate(bundle)
    _refused_and_not_found(shared_dmp, bundle, expression)


@pytest.mark.parametrize("name", sorted(EXTRA_NEGATIVE))
def test_reference_negative_variant_is_refused(shared_dmp: Dmp, name: str) -> None:
    mutate, expression = EXTRA_NEGATIVE[name]
    bundle = valid_bundle(shared_dmp)
    mutate(bundle)
    _refused_and_not_found(shared_dmp, bundle, expression)


def test_unknown_patient_in_both_subjects_is_refused_naming_the_subject(shared_dmp: Dmp) -> None:
    """T65-17 / T65-29: List and DocumentReference agree, but on a patient we do not have."""
    bundle = valid_bundle(shared_dmp)
    _doc(bundle)["subject"] = {"reference": BAD_LINK}
    _list(bundle)["subject"] = {"reference": BAD_LINK}
    _refused_and_not_found(shared_dmp, bundle, r"Bundle\.entry\[[01]\]\.resource\.subject")


def test_refusal_of_one_document_reports_only_that_document(shared_dmp: Dmp) -> None:
    bundle = valid_bundle(shared_dmp)
    del _doc(bundle)["type"]  # Missing_TypeCode
    response = shared_dmp.publish(bundle)
    assert response.status_code == 400
    assert _expressions(_errors(response.json())) == ["Bundle.entry[1].resource.type"]


def _relate(code: str, target: str) -> Callable[[Bundle], None]:
    def mutate(b: Bundle) -> None:
        _doc(b)["relatesTo"] = [
            {"code": code, "target": {"reference": f"DocumentReference/{target}"}}
        ]

    return mutate


@pytest.mark.parametrize("row", POSITIVE_ROWS, ids=lambda row: row["test"])
def test_asbestos_positive_row_is_accepted(shared_dmp: Dmp, row: dict[str, str]) -> None:
    dmp, name = shared_dmp, row["test"]
    original: str | None = None
    if name.startswith("Document_"):  # setup: an original document X
        original = dmp.publish_one()
    if name == "Two_Documents_Submit":
        bundle = provide_bundle(
            subject=f"Patient/{dmp.patient_id}",
            author_idnps=cd.OUR_IDNPS,
            documents=[(cda("Premier."), {}), (cda("Second."), {})],
        )
    elif name == "Document_Replace":
        bundle = provide_bundle(
            subject=f"Patient/{dmp.patient_id}", author_idnps=cd.OUR_IDNPS, patches=[original]
        )
        _relate("replaces", original)(bundle)  # type: ignore[arg-type]
    elif name in ("Document_Addendum", "Document_Transforms"):
        bundle = valid_bundle(dmp)
        code = "appends" if name == "Document_Addendum" else "transforms"
        _relate(code, original)(bundle)  # type: ignore[arg-type]
    else:
        assert name == "1_Prerequisite_Single_Document_with_Binary", name
        bundle = valid_bundle(dmp)
    entries = assert_accepted(bundle, dmp.publish(bundle))
    for index, entry in enumerate(bundle["entry"]):
        if entry["resource"]["resourceType"] == "DocumentReference":
            doc_id = created_id(entries, index)
            sent = entry["resource"]
            assert_reads_back(dmp, sent, doc_id, document_bytes(bundle, sent))
            assert read_status(dmp, doc_id) == "current"
    if original is not None:
        expected = "superseded" if name == "Document_Replace" else "current"
        assert read_status(dmp, original) == expected


# --- 6: terminology -----------------------------------------------------------------------------


def test_ass_x04_type_to_class_rows_agree_with_the_service() -> None:
    rows = cd.read_csv("terminology/type_class_mapping_ASS_X04.csv")
    assert len(rows) == 110
    disagree = [
        (
            r["type_system"],
            r["type_code"],
            r["class_code"],
            term.expected_class(r["type_system"], r["type_code"]),
        )
        for r in rows
        if term.expected_class(r["type_system"], r["type_code"]) != r["class_code"]
    ]
    assert not disagree


def test_every_tre_a03_class_lands_in_exactly_one_of_the_nine_dmp_spaces() -> None:
    classes = cd.read_csv("terminology/classCode_TRE_A03.csv")
    assert len(classes) == 11
    seed_names = {
        r["space_name_fr_seed"]
        for r in cd.read_csv("terminology/dmp_display_spaces_DERIVED.csv")
        if r["space_name_fr_seed"]
    }
    assert len(seed_names) == 9
    assert {s.label for s in term.spaces()} == seed_names
    assert len(term.SPACE_CODES) == 9
    for row in classes:
        assert term.is_class_system(row["system"]), row
        assert term.class_display(row["code"]) == row["display"], row
        holders = [s.code for s in term.spaces() if row["code"] in s.classes]
        assert len(holders) == 1, (row["code"], holders)
        assert term.space_for(row["code"], None, "", by_patient=False) == holders[0]


def test_derived_space_rules_agree_with_the_service() -> None:
    """The class rules and type overrides of ``dmp_display_spaces_DERIVED.csv``; class 95,
    which the table leaves without a space, is the project's decision (Espace Perso)."""
    by_label = {s.label: s.code for s in term.spaces()}
    for row in cd.read_csv("terminology/dmp_display_spaces_DERIVED.csv"):
        name = row["space_name_fr_seed"]
        for code in filter(None, row["rule_class_codes"].split(",")):
            expected = by_label[name] if name else "espace-personnel"
            assert term.space_for(code.strip(), None, "", by_patient=False) == expected, row
    loinc = "http://loinc.org"
    assert term.space_for("10", loinc, "11502-2", by_patient=False) == by_label["Analyse"]
    for vaccination in ("87273-9", "11369-6"):
        assert term.space_for("52", loinc, vaccination, by_patient=False) == by_label["Prévention"]
    assert (
        term.space_for("60", term.TRE_A05_SYSTEM, "REMB", by_patient=False)
        == by_label["Historique de remboursements"]
    )


def test_tre_a07_dmp_visibility_codes_are_the_service_codes() -> None:
    rows = cd.read_csv("terminology/visibility_TRE_A07.csv")
    dmp_rows = [r for r in rows if r["used_by_dmp_pdsm4dmp"].startswith("yes")]
    assert {r["code"] for r in dmp_rows} == set(term.DMP_VISIBILITY_CODES)
    for row in rows:
        assert row["system"] == term.VISIBILITY_SYSTEM
        assert "urn:oid:" + row["oid"] == term.VISIBILITY_OID


def _without_narrative(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_narrative(v) for k, v in node.items() if k != "text"}
    if isinstance(node, list):
        return [_without_narrative(v) for v in node]
    return node


def test_substitution_replaces_the_placeholders_and_nothing_else() -> None:
    placeholders = ("123456789012345", "180017505600103", "899700218896", "1011848351")
    for relative in (cd.TD2_SUBMISSION, cd.TD21_REPLACEMENT, cd.PDSM_REPLACEMENT):
        published = _without_narrative(cd.load(relative))
        substituted = cd.substitute(published, "p-1")
        text = repr(substituted)
        for placeholder in (*placeholders, "Patient/fr-patient-123"):
            assert placeholder not in text, (relative, placeholder)
        assert cd.OUR_IDNPS in text and PATIENT_INS in text
        for before, after in zip(published["entry"], substituted["entry"], strict=True):
            assert before["request"] == after["request"]
            assert before["fullUrl"] == after["fullUrl"]
            for key in ("masterIdentifier", "type", "category", "content", "relatesTo", "date"):
                assert before["resource"].get(key) == after["resource"].get(key), key
