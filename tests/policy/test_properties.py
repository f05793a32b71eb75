"""Property-based tests of the policy-decision point (dmp-access.md §5.3), over random actors,
documents, modes and record settings drawn from the scenario cast."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from parcours.policy.engine import decide, search
from parcours.policy.facts import Actor, DocumentState, RecordState, Request
from tests.policy import scenario_cast as cast

ACTORS = [
    cast.P, cast.A, cast.C, cast.E, cast.B, cast.K, cast.PH, cast.D, cast.X, cast.U, cast.Q,
    cast.W, cast.Z, cast.PP, cast.N, cast.N2, cast.N2_VIA_H, cast.H_CERTIFICATE, cast.SW,
    cast.INSURER_I, cast.CPAM_V, cast.G, cast.S, cast.HEIR,
]  # fmt: skip
FORBIDDEN = {"insurer", "employer", "lender", "cpam_medical_officer"}
PS_IDS = [a.id for a in ACTORS if a.kind == "professional"]

actors = st.sampled_from(ACTORS)
documents = st.sampled_from((*cast.P_DOCUMENTS, cast.D11, cast.X_OLD_CR))
modes = st.sampled_from(["normal", "bris_de_glace", "centre_15"])


@st.composite
def records(draw: st.DrawFn) -> RecordState:
    return cast.p_record(
        oppose_bris_de_glace=draw(st.booleans()),
        oppose_centre_15=draw(st.booleans()),
        mask_all=draw(st.booleans()),
        blocked=frozenset(draw(st.lists(st.sampled_from(PS_IDS), max_size=3))),
        removed_from_team=frozenset(draw(st.lists(st.sampled_from(PS_IDS), max_size=2))),
    )


@st.composite
def requests(draw: st.DrawFn, action: str = "read") -> Request:
    return Request(
        action=action,  # type: ignore[arg-type]
        now=cast.NOW,
        mode=draw(modes),
        justification=draw(st.sampled_from([None, "", "inconscient, douleur thoracique"])),
        call_id=draw(st.sampled_from([None, "APPEL-1"])),
        purpose=draw(st.sampled_from(["care", "care", "contract_conclusion", "other"])),
        first_access=draw(st.booleans()),
    )


def _has_basis_without_emergency(actor: Actor, record: RecordState) -> bool:
    if actor.id == record.mt:
        return True
    if any(a.ps == actor.id and a.valid_at(cast.NOW) for a in record.authorisations):
        return True
    return actor.id not in record.removed_from_team and any(
        t.includes(actor, cast.NOW) and t.consented(cast.NOW) for t in record.care_teams
    )


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_forbidden_accessors_and_purposes_never_read(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    decision = decide(request, actor, record, document)
    if actor.kind in FORBIDDEN or request.purpose in ("contract_conclusion",):
        assert decision.deny


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_blocked_professionals_never_read(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    if actor.id in record.blocked:
        assert decide(request, actor, record, document).deny
        assert decide(replace(request, action="read-traces"), actor, record).deny


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_notifications_only_follow_permits_and_emergencies_notify_holder_and_mt(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    decision = decide(request, actor, record, document)
    if decision.deny:
        assert decision.notifications == ()
    elif request.mode == "bris_de_glace" and actor.kind == "professional":
        events = {(n.recipient, n.event) for n in decision.notifications}
        assert {("holder", "bris-de-glace"), ("mt", "bris-de-glace")} <= events


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_no_basis_no_read_outside_emergencies(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    if request.mode != "normal" or actor.kind not in ("professional", "social_professional"):
        return
    if not _has_basis_without_emergency(actor, record):
        assert decide(request, actor, record, document).deny


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_emergency_never_bypasses_masking(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    if request.mode == "normal" or document.author == actor.id or actor.kind == "patient":
        return  # masking binds professionals; the holder reads his masked documents
    masked = replace(document, masque_ps=True)
    assert decide(request, actor, record, masked).deny


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_masking_never_grants_and_never_hides_from_holder_author_or_mt(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    plain = decide(request, actor, record, replace(document, masque_ps=False))
    masked = decide(request, actor, record, replace(document, masque_ps=True))
    assert not (masked.permit and plain.deny)
    spared = actor.kind == "patient" or document.author == actor.id
    spared = spared or (actor.id == record.mt and request.mode == "normal" and not record.mask_all)
    if plain.permit and spared:
        assert masked.permit


@settings(max_examples=400)
@given(requests(), actors, records(), documents)
def test_the_two_oppositions_are_independent(
    request: Request, actor: Actor, record: RecordState, document: DocumentState
) -> None:
    if request.mode == "bris_de_glace":
        other = replace(record, oppose_centre_15=not record.oppose_centre_15)
    elif request.mode == "centre_15":
        other = replace(record, oppose_bris_de_glace=not record.oppose_bris_de_glace)
    else:
        return
    assert decide(request, actor, record, document) == decide(request, actor, other, document)


@settings(max_examples=300)
@given(requests(action="search"), actors, records())
def test_search_returns_exactly_what_read_permits(
    request: Request, actor: Actor, record: RecordState
) -> None:
    candidates = [*cast.P_DOCUMENTS, cast.D11, cast.X_OLD_CR]
    at_record, hits = search(request, actor, record, candidates)
    read = replace(request, action="read", first_access=False)
    expected = [
        d
        for d in candidates
        if at_record.permit and d.status == "current" and decide(read, actor, record, d).permit
    ]
    assert hits == expected
    if at_record.deny:
        assert hits == []
