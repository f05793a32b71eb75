"""ITI-66 Find Document Lists: the SubmissionSets of a patient's record.

Folders are not supported (ITI-65 ignores them with ``PartialFolderContentNotProcessed``), so a
search for ``code=folder`` is valid and returns nothing. Required parameters, as MHD says:
``patient`` or ``patient.identifier``, ``code`` and ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from parcours.auth.principal import Principal
from parcours.dossier import records
from parcours.dossier.models import Patient, Submission
from parcours.fhir.dates import instant_param
from parcours.fhir.errors import BadRequest, NotFound
from parcours.fhir.search import (
    STRING_MODIFIERS,
    SearchParam,
    SearchQuery,
    match_string,
    parse_token,
)

LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"


def _code(values: list[str], _m: str) -> Any:
    codes = set()
    for raw in values:
        tok = parse_token(raw)
        if tok.system not in (None, LIST_TYPES, LIST_TYPES.replace("https:", "http:")):
            raise BadRequest(
                f"Système de code de List inconnu : {tok.system}.", expression=["code"]
            )
        if tok.code not in ("submissionset", "folder"):
            raise BadRequest("code accepte submissionset ou folder.", expression=["code"])
        codes.add(tok.code)
    return Submission.id.is_not(None) if "submissionset" in codes else Submission.id.is_(None)


def _status(values: list[str], _m: str) -> Any:
    return Submission.status.in_([parse_token(v).code for v in values])


def _string(column: Any) -> Any:
    return lambda values, modifier: match_string(column, values, modifier)


def _identifier(values: list[str], _m: str) -> Any:
    conds = []
    for raw in values:
        code = parse_token(raw).code
        conds.append(Submission.unique_id == code)
        if code.startswith("urn:uuid:"):
            conds.append(Submission.id == code.removeprefix("urn:uuid:"))
    return or_(*conds)


PARAMS: dict[str, SearchParam] = {
    p.name: p
    for p in [
        SearchParam(
            "patient",
            "reference",
            "Patient",
            lambda v, _m: Submission.patient_id.in_(records.patient_ids(v)),
        ),
        SearchParam(
            "patient.identifier",
            "token",
            "INS du patient",
            lambda v, _m: Submission.patient_id.in_(
                select(Patient.id).where(records.ins_condition(v))
            ),
        ),
        SearchParam("code", "token", "submissionset | folder", _code),
        SearchParam("status", "token", "current | superseded", _status),
        SearchParam("date", "date", "Date de soumission", instant_param(Submission.date)),
        SearchParam(
            "designationType",
            "token",
            "contentTypeCode",
            lambda v, _m: or_(
                *[
                    Submission.designation.endswith("|" + parse_token(x).code)
                    if not parse_token(x).system
                    else Submission.designation == f"{parse_token(x).system}|{parse_token(x).code}"
                    for x in v
                ]
            ),
        ),
        SearchParam("identifier", "token", "uniqueId ou entryUUID", _identifier),
        SearchParam(
            "sourceId",
            "token",
            "Système émetteur",
            lambda v, _m: Submission.source_id.in_([parse_token(x).code for x in v]),
        ),
        SearchParam(
            "source.family",
            "string",
            "Nom de l'auteur",
            _string(Submission.source_family),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "source.given",
            "string",
            "Prénom de l'auteur",
            _string(Submission.source_given),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "isArchived",
            "boolean",
            "Archivé",
            lambda v, _m: Submission.id.is_not(None) if "false" in v else Submission.id.is_(None),
        ),
    ]
}


@dataclass
class ListResult:
    matches: list[dict[str, Any]]
    total: int | None
    has_more: bool


def search(session: Session, principal: Principal, query: SearchQuery) -> ListResult:
    names = {c.param.name for c in query.criteria}
    missing = []
    if not names & {"patient", "patient.identifier"}:
        missing.append("patient ou patient.identifier")
    if "code" not in names:
        missing.append("code")
    if "status" not in names:
        missing.append("status")
    if missing:
        raise BadRequest(
            f"ITI-66 : paramètre(s) obligatoire(s) absent(s) : {', '.join(missing)}.",
            code="required",
        )
    records.authorise_search(session, principal, query)
    where = and_(*[c.condition() for c in query.criteria])
    rows = (
        session.execute(
            select(Submission.resource)
            .where(where)
            .order_by(Submission.date.desc(), Submission.id)
            .offset(query.offset)
            .limit(query.count + 1)
        )
        .scalars()
        .all()
        if query.count
        else []
    )
    total = None
    if query.total != "none":
        total = session.execute(
            select(func.count()).select_from(Submission).where(where)
        ).scalar_one()
    return ListResult(list(rows[: query.count]), total, len(rows) > query.count)


def read(session: Session, principal: Principal, list_id: str) -> dict[str, Any]:
    sub = session.get(Submission, list_id)
    if sub is None:
        raise NotFound("List", list_id)
    patient = session.get(Patient, sub.patient_id)
    assert patient is not None
    records.enforce(principal, "read-record", records.load(session, patient).state, session=session)
    return sub.resource
