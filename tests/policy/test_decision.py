"""The decision point and its search filter must agree document by document: a search never
shows what a read would refuse, nor hides what a read would permit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parcours.auth.principal import Principal
from parcours.policy.decision import DocumentFacts, RecordFacts, decide, document_filter

ME, OTHER = "810001234567", "810007654321"
INS = "184123523801254"

principals = st.sampled_from(
    [
        Principal(kind="professional", subject=ME, issuer="t", idnat_ps=ME),
        Principal(kind="professional", subject=OTHER, issuer="t", idnat_ps=OTHER),
        Principal(kind="patient", subject="p", issuer="t", ins=INS),
        Principal(kind="patient", subject="q", issuer="t", ins="290053523812369"),
        Principal(kind="agent", subject="a", issuer="t", agent_id="CPAM35-A001"),
    ]
)
documents = st.builds(
    DocumentFacts,
    author_idnps=st.sampled_from([ME, OTHER, None]),
    published_by=st.sampled_from([ME, OTHER, "robot"]),
    masque_ps=st.booleans(),
    invisible_patient=st.booleans(),
)


def filter_admits(principal: Principal, doc: DocumentFacts) -> bool:
    rules = document_filter(principal)
    me = rules.hide_masque_ps_unless_author
    if me is not None and doc.masque_ps and me not in (doc.author_idnps, doc.published_by):
        return False
    return not (rules.hide_invisible_patient and doc.invisible_patient)


@given(principals, documents)
def test_filter_agrees_with_read_decision(principal: Principal, doc: DocumentFacts) -> None:
    record = RecordFacts("p1", INS, "open")
    if decide(principal, "search", record).deny:
        return  # the whole search is refused before any row is read
    assert decide(principal, "read", record, doc).permit == filter_admits(principal, doc)


@given(principals, documents, st.sampled_from(["read", "search", "publish", "update", "delete"]))
def test_closed_or_absent_records_deny_everything(principal, doc, action) -> None:  # type: ignore[no-untyped-def]
    for status in ("closed", "absent"):
        decision = decide(principal, action, RecordFacts("p1", INS, status), doc)
        assert decision.deny and decision.rule in ("dmp-ferme", "dmp-inexistant")


def test_decisions_name_their_rule() -> None:
    record = RecordFacts("p1", INS, "open")
    agent = Principal(kind="agent", subject="a", issuer="t", agent_id="A")
    assert decide(agent, "read", record).rule == "acteur-non-habilite"
    patient = Principal(kind="patient", subject="p", issuer="t", ins=INS)
    assert decide(patient, "close-record", record).rule == "patient-titulaire"
    doc = DocumentFacts(author_idnps=ME, published_by=ME, masque_ps=False, invisible_patient=False)
    other = Principal(kind="professional", subject=OTHER, issuer="t", idnat_ps=OTHER)
    assert decide(other, "delete", record, doc).rule == "auteur-seulement"
