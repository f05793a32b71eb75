"""The policy-decision point: every DMP access asks ``decide`` and obeys its answer.

A decision carries the rule that decided and a French reason, so a refusal can say why
(OperationOutcome) and an auditor can replay it from the trace. Searches must not leak what a
read would refuse: ``document_filter`` states, as data, which documents of a record the caller
may see, and the dossier service turns it into SQL; a test checks that the filter and
``decide`` agree document by document.

Rules here are the first, deliberately small set (issue 4): authenticated professional or the
patient himself, closed records shut, masked documents (``MASQUE_PS``) hidden from professionals
other than their author, ``INVISIBLE_PATIENT`` documents hidden from the patient, deletion and
metadata updates by the author. The full habilitation matrix (issue 5) replaces the rule
functions, not the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from parcours.auth.principal import Principal

Action = Literal[
    "create-record",
    "close-record",
    "read-record",
    "search",
    "read",
    "publish",
    "update",
    "delete",
    "read-traces",
]


@dataclass(frozen=True)
class Decision:
    permit: bool
    rule: str
    reason: str

    @property
    def deny(self) -> bool:
        return not self.permit


@dataclass(frozen=True)
class RecordFacts:
    patient_id: str
    ins: str
    status: Literal["open", "closed", "absent"]


@dataclass(frozen=True)
class DocumentFacts:
    author_idnps: str | None
    published_by: str
    masque_ps: bool
    invisible_patient: bool


@dataclass(frozen=True)
class DocumentFilter:
    """Which documents of a permitted record the caller sees (conjunction of the fields)."""

    hide_masque_ps_unless_author: str | None = None  # the caller's IDNPS
    hide_invisible_patient: bool = False


def _permit(rule: str, reason: str) -> Decision:
    return Decision(True, rule, reason)


def _deny(rule: str, reason: str) -> Decision:
    return Decision(False, rule, reason)


def _is_own_record(principal: Principal, record: RecordFacts) -> bool:
    return principal.kind == "patient" and principal.ins is not None and principal.ins == record.ins


def _is_author(principal: Principal, document: DocumentFacts) -> bool:
    me = principal.actor_id
    return me in (document.author_idnps, document.published_by)


def decide_record(principal: Principal, action: Action, record: RecordFacts) -> Decision:
    """Record-level rules: may this caller do ``action`` on this patient's DMP at all?"""
    if action == "create-record":  # also reopens a closed record within its retention
        if record.status == "open":
            return _deny("dmp-existe-deja", "Ce patient a déjà un DMP ouvert.")
        if principal.kind in ("professional", "agent") or _is_own_record(principal, record):
            return _permit("creation-avec-consentement", "Création sur consentement du patient.")
        return _deny("creation-non-habilitee", "Seul le patient ou un acteur habilité crée un DMP.")
    if record.status == "absent":
        return _deny("dmp-inexistant", "Ce patient n'a pas de DMP.")
    if record.status == "closed":
        return _deny(
            "dmp-ferme",
            "Le DMP de ce patient est fermé : il n'est plus accessible, seulement conservé "
            "pendant la durée légale (10 ans).",
        )
    if _is_own_record(principal, record):
        return _permit("patient-titulaire", "Le patient accède à son propre DMP.")
    if principal.kind == "patient":
        return _deny("autre-patient", "Un patient n'accède qu'à son propre DMP.")
    if action == "read-traces":
        return _deny(
            "traces-au-titulaire", "Les traces d'un DMP sont consultées par son titulaire."
        )
    if principal.kind == "professional":
        if action == "close-record":
            return _deny("fermeture-par-le-titulaire", "Seul le patient ferme son DMP.")
        return _permit("professionnel-authentifie", "Professionnel de santé authentifié.")
    return _deny(
        "acteur-non-habilite",
        "Cet acteur n'est pas habilité à consulter ou alimenter le contenu d'un DMP.",
    )


def decide(
    principal: Principal,
    action: Action,
    record: RecordFacts,
    document: DocumentFacts | None = None,
) -> Decision:
    """The decision for one action, on one record and optionally one of its documents."""
    at_record = decide_record(principal, action, record)
    if at_record.deny or document is None:
        return at_record
    if action in ("update", "delete"):
        if principal.kind == "patient" and action == "update":
            return _permit("patient-titulaire", "Le patient gère la visibilité de ses documents.")
        if not _is_author(principal, document):
            return _deny(
                "auteur-seulement",
                "Seul l'auteur du document peut le modifier ou le supprimer.",
            )
        return _permit("auteur", "L'auteur gère son document.")
    if (
        principal.kind == "professional"
        and document.masque_ps
        and not _is_author(principal, document)
    ):
        return _deny("document-masque-ps", "Document masqué aux professionnels de santé.")
    if principal.kind == "patient" and document.invisible_patient:
        return _deny("document-invisible-patient", "Document non encore visible par le patient.")
    return at_record


def document_filter(principal: Principal) -> DocumentFilter:
    """The per-document rules of ``decide`` for reads, as data a query can apply."""
    if principal.kind == "professional":
        return DocumentFilter(hide_masque_ps_unless_author=principal.actor_id)
    if principal.kind == "patient":
        return DocumentFilter(hide_invisible_patient=True)
    return DocumentFilter()
