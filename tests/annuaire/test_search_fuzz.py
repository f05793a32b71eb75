"""Whatever the query string, a search answers 200 or 400 + OperationOutcome — never a 500."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcours.annuaire.service import KINDS
from tests.scenario import Api

NAMES = [
    *sorted({n for kind in KINDS.values() for n in kind.params}),
    *("_count", "_offset", "_total", "_include", "_summary", "_sort", "_elements", "foo", ""),
]
MODIFIERS = ["", ":exact", ":contains", ":not", ":missing", ":text", ":", ":exact:exact"]
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "true",
            "false",
            "-1",
            "0",
            "99999999999999999999",
            "a|b",
            "|",
            ",",
            ",,",
            "urn:oid:1.2.250.1.71.4.2.1|",
            "Organization/",
            "%",
            "_",
            "\\",
            "'",
            "\u0000",
        ]
    ),
)
PARAM = st.tuples(st.sampled_from(NAMES), st.sampled_from(MODIFIERS), VALUES)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(resource=st.sampled_from(sorted(KINDS)), params=st.lists(PARAM, max_size=4))
def test_search_never_fails_with_500(
    api: Api, resource: str, params: list[tuple[str, str, str]]
) -> None:
    query = "&".join(f"{quote(n + m, safe=':_')}={quote(v, safe='')}" for n, m, v in params)
    response = api.get(f"/fhir/{resource}?{query}")
    assert response.status_code in (200, 400), (query, response.text)
    body = response.json()
    if response.status_code == 400:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    else:
        assert body["resourceType"] == "Bundle"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# "." and ".." are dot-segments: the client removes them from the path (RFC 3986 §5.2.4)
# before any server sees them, so they are not ids the server could be asked for.
@given(
    resource=st.sampled_from(sorted(KINDS)),
    rid=st.text(min_size=1, max_size=80).filter(lambda r: r not in (".", "..")),
)
def test_read_never_fails_with_500(api: Api, resource: str, rid: str) -> None:
    response = api.get(f"/fhir/{resource}/{quote(rid, safe='')}")
    assert response.status_code in (200, 400, 404), (rid, response.text)
    assert response.json()["resourceType"] in ("OperationOutcome", resource)


def test_control_characters_are_refused_not_crashing(api: Api) -> None:
    for query in ("name=%00", "mailbox-mss=a%00", "identifier=%00", "_id=%1f"):
        response = api.get(f"/fhir/Practitioner?{query}")
        assert response.status_code == 400 and "contrôle" in response.text
    assert api.get("/fhir/Practitioner/a%00b").status_code == 400
