"""Property tests: random valid bundles round-trip; random corruptions are refused and leave
the store unchanged (rows and blobs)."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcours.dossier import terminology as term
from parcours.dossier.samples import provide_bundle
from tests.dossier.conftest import Dmp
from tests.scenario import DUPONT

# Types a professional may publish: the personal space (90) is the holder's and reimbursements
# (60) the Assurance Maladie's (dmp-access.md R27).
LOINC_TYPES = sorted(
    (t, c)
    for t, c in term._terminology()["type_to_class"]["LOINC"].items()
    if c not in ("60", "90")
)
SLOW = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

documents = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=2000),
        st.sampled_from(LOINC_TYPES),
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60),
    ),
    min_size=1,
    max_size=3,
)


@SLOW
@given(documents)
def test_valid_bundles_round_trip(dmp: Dmp, docs: list[tuple[bytes, tuple[str, str], str]]) -> None:
    bundle = provide_bundle(
        subject=f"Patient/{dmp.patient_id}",
        author_idnps="8" + DUPONT,
        documents=[
            (
                data,
                {
                    "type_code": t,
                    "class_code": c,
                    "title": title,
                    "content_type": "application/octet-stream",
                },
            )
            for data, (t, c), title in docs
        ],
    )
    response = dmp.publish(bundle)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    for (data, (type_code, class_code), title), loc in zip(
        docs, [x for x in locations if x.startswith("DocumentReference/")], strict=True
    ):
        doc = dmp.call("GET", "/fhir/" + loc.rsplit("/_history", 1)[0]).json()
        assert doc["type"]["coding"][0]["code"] == type_code
        assert doc["category"][0]["coding"][0]["code"] == class_code
        assert doc["content"][0]["attachment"]["title"] == title
        assert dmp.call("GET", doc["content"][0]["attachment"]["url"]).content == data


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


# Elements whose removal or change the profiles allow (optional or informative).
_OPTIONAL = {"display", "meta", "name", "given", "family", "custodian", "profile", "use"}


def _corrupt(bundle: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    bad = copy.deepcopy(bundle)
    doc = bad["entry"][1]["resource"]
    candidates = [
        p for p in _paths(doc) if not set(map(str, p)) & _OPTIONAL and p[0] not in ("meta",)
    ]
    path = rng.choice(candidates)
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    action = rng.choice(["delete", "garble"])
    if action == "delete" or not isinstance(parent[path[-1]], (str, int)):
        del parent[path[-1]]
    else:
        parent[path[-1]] = "§garbled§" if isinstance(parent[path[-1]], str) else -7
    return bad


@SLOW
@given(st.randoms(use_true_random=False))
def test_corruptions_are_refused_and_leave_nothing(dmp: Dmp, rng: random.Random) -> None:
    bundle = provide_bundle(subject=f"Patient/{dmp.patient_id}", author_idnps="8" + DUPONT)
    bad = _corrupt(bundle, rng)
    before = dmp.counts()
    response = dmp.publish(bad)
    if response.status_code == 200:
        # Some mutations are harmless by the profiles (e.g. a coding display): they must then
        # still be a complete, valid publication.
        return
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert dmp.counts() == before
