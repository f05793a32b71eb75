"""DMP documents: ITI-65 publish, ITI-67 find, ITI-68 retrieve, metadata update, deletion.

Publishing is all-or-nothing. The bundle is validated in full first (``validation``), then the
patient, the policy, the authors (Annuaire santé), the replaced documents and the uniqueness of
identifiers are checked; only then are the encrypted bytes written to the blob store and the
rows inserted, in one database transaction. If anything fails after a blob was written, the
blobs are deleted again before the error leaves (compensation), so a refused submission leaves
no row and no blob.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonpatch
from sqlalchemy import and_, exists, insert, or_, select
from sqlalchemy.orm import Session

from parcours.annuaire.directory import find_professional
from parcours.auth.principal import Principal
from parcours.dossier import fulltext, records
from parcours.dossier import terminology as term
from parcours.dossier.models import (
    Document,
    DocumentTerm,
    DocumentToken,
    DocumentVersion,
    Patient,
    Submission,
)
from parcours.dossier.store import DocumentStore
from parcours.dossier.validation import (
    EXT_IS_ARCHIVED,
    DocumentDraft,
    ParsedSubmission,
    parse_provide_bundle,
    sha1_b64,
    visibility_label,
)
from parcours.fhir.dates import instant_param, period_param
from parcours.fhir.errors import BadRequest, FHIRError, Issue, NotFound, operation_outcome
from parcours.fhir.search import (
    STRING_MODIFIERS,
    SearchParam,
    SearchQuery,
    fold,
    match_string,
    parse_token,
)
from parcours.identity import IDNST_OID
from parcours.policy import pep
from parcours.policy.engine import decide
from parcours.policy.facts import DocumentState, Flags
from parcours.policy.rules import load_rules
from parcours.storage.crypto import DecryptionError, KeyRing
from parcours.storage.db import Database
from parcours.storage.models import utcnow

log = logging.getLogger("parcours.dossier")
RFC3986 = "urn:ietf:rfc:3986"


# --- publish (ITI-65) ---------------------------------------------------------------------


@dataclass
class PublishResult:
    response: dict[str, Any]
    patient_id: str
    document_ids: list[str]


def _professional_author_check(session: Session, parsed: ParsedSubmission) -> list[Issue]:
    issues = []
    for doc in parsed.documents:
        for i, author in enumerate(doc.authors):
            if (
                author.kind == "professional"
                and author.idnps
                and find_professional(session, author.idnps) is None
            ):
                issues.append(
                    Issue(
                        "business-rule",
                        f"Auteur inconnu de l'Annuaire santé : IDNPS {author.idnps}.",
                        expression=[f"Bundle.entry[{doc.index}].resource.author[{i}]"],
                    )
                )
    return issues


def _blob_key(patient_id: str, binary_id: str) -> str:
    return f"{patient_id[:2]}/{patient_id}/{binary_id}"


def _doc_tokens(doc_id: str, draft: DocumentDraft) -> list[dict[str, Any]]:
    rows = [
        {"document_id": doc_id, "param": p, "system": s, "code": c[:255]}
        for p, s, c in draft.tokens
    ]
    for author in draft.authors:
        if author.idnps:
            rows.append(
                {
                    "document_id": doc_id,
                    "param": "author.identifier",
                    "system": "urn:oid:1.2.250.1.71.4.2.1",
                    "code": author.idnps,
                }
            )
        if author.family:
            rows.append(
                {
                    "document_id": doc_id,
                    "param": "author.family",
                    "system": None,
                    "code": fold(author.family),
                }
            )
        for given in author.given:
            rows.append(
                {
                    "document_id": doc_id,
                    "param": "author.given",
                    "system": None,
                    "code": fold(given),
                }
            )
    for rel in draft.resource.get("relatesTo") or []:
        target = str(((rel or {}).get("target") or {}).get("reference") or "")
        if "DocumentReference/" in target:
            rows.append(
                {
                    "document_id": doc_id,
                    "param": "relatesto",
                    "system": rel.get("code"),
                    "code": target.rsplit("DocumentReference/", 1)[1].split("/")[0],
                }
            )
    return rows


def publish(
    db: Database,
    store: DocumentStore,
    principal: Principal,
    bundle: Any,
    *,
    simplified: bool = False,
) -> PublishResult:
    parsed = parse_provide_bundle(bundle, max_bytes=store.max_document_bytes, simplified=simplified)
    written: list[str] = []
    try:
        with db.session() as session:
            result = _publish_in(session, store, principal, parsed, written)
        return result
    except BaseException:
        for key in written:
            try:
                store.blobs.delete(key)
            except Exception:  # the orphan sweep will find it; the refusal must still go out
                log.exception("could not remove blob %s after a failed submission", key)
        raise


def _publish_in(
    session: Session,
    store: DocumentStore,
    principal: Principal,
    parsed: ParsedSubmission,
    written: list[str],
) -> PublishResult:
    patient = records.resolve_reference(
        session,
        parsed.submission.patient_ref,
        expression=f"Bundle.entry[{parsed.submission.index}].resource.subject",
    )
    resolved = records.load(session, patient)
    state = resolved.state
    status = 422 if state.status != "active" else 403
    for draft in parsed.documents:
        records.enforce(
            principal,
            "publish",
            state,
            status=status,
            document_class=draft.class_code,
            document_type=draft.type_code,
            flags=Flags(
                masque_ps=term.MASQUE_PS in draft.visibility,
                invisible_patient=term.INVISIBLE_PATIENT in draft.visibility,
                invisible_representatives=term.INVISIBLE_REPRESENTANTS_LEGAUX in draft.visibility,
            ),
        )

    issues = _professional_author_check(session, parsed)
    masters = [d.master_identifier for d in parsed.documents]
    taken = set(
        session.execute(
            select(Document.master_identifier).where(Document.master_identifier.in_(masters))
        ).scalars()
    )
    for doc in parsed.documents:
        if doc.master_identifier in taken:
            issues.append(
                Issue(
                    "duplicate",
                    f"Identifiant unique déjà utilisé : {doc.master_identifier} "
                    "(XDSDuplicateUniqueIdInRegistry).",
                    expression=[f"Bundle.entry[{doc.index}].resource.masterIdentifier"],
                )
            )
    if session.execute(
        select(Submission.id).where(Submission.unique_id == parsed.submission.unique_id)
    ).first():
        issues.append(
            Issue(
                "duplicate",
                f"Lot de soumission déjà reçu : {parsed.submission.unique_id}.",
                expression=[f"Bundle.entry[{parsed.submission.index}].resource.identifier"],
            )
        )
    replaced: dict[str, Document] = {}
    for doc in parsed.documents:
        if not doc.replaces:
            continue
        old = session.get(Document, doc.replaces)
        where = [f"Bundle.entry[{doc.index}].resource.relatesTo"]
        if old is None or old.deleted_at is not None:
            issues.append(
                Issue(
                    "not-found",
                    f"Document remplacé introuvable : {doc.replaces}.",
                    expression=where,
                )
            )
        elif old.patient_id != patient.id:
            issues.append(
                Issue(
                    "business-rule",
                    "Le document remplacé appartient à un autre patient.",
                    expression=where,
                )
            )
        elif old.status != "current":
            issues.append(
                Issue(
                    "business-rule",
                    "Le document remplacé est déjà remplacé (superseded).",
                    expression=where,
                )
            )
        else:
            replaced[doc.replaces] = old
    if issues:
        code = 409 if all(i.code == "duplicate" for i in issues) else 422
        raise FHIRError(
            code, issues[0].code, issues[0].diagnostics, issues=issues + parsed.warnings
        )
    for draft in parsed.documents:
        if draft.replaces in replaced:
            records.enforce(
                principal,
                "replace",
                state,
                document_state(replaced[draft.replaces]),
                status=403,
                flags=Flags(
                    masque_ps=term.MASQUE_PS in draft.visibility,
                    invisible_patient=term.INVISIBLE_PATIENT in draft.visibility,
                ),
            )

    now = utcnow()
    submission_id = str(uuid.uuid4())
    ids: dict[str, str] = {parsed.submission.full_url: f"List/{submission_id}"}
    doc_ids = {d.full_url: str(uuid.uuid4()) for d in parsed.documents}
    binary_ids = {url: str(uuid.uuid4()) for url in parsed.binaries}
    for url, did in doc_ids.items():
        ids[url] = f"DocumentReference/{did}"
    for url, bid in binary_ids.items():
        ids[url] = f"Binary/{bid}"
    patient_ref = {"reference": f"Patient/{patient.id}"}

    sub = parsed.submission
    sub_resource = copy.deepcopy(sub.resource)
    sub_resource.update(
        id=submission_id,
        meta={**(sub_resource.get("meta") or {}), "versionId": "1", "lastUpdated": now.isoformat()},
        subject=patient_ref,
    )
    sub_resource.pop("text", None)
    sub_resource["identifier"] = [
        *(sub_resource.get("identifier") or []),
        {"use": "official", "system": RFC3986, "value": f"urn:uuid:{submission_id}"},
    ]
    for item in sub_resource.get("entry") or []:
        ref = (item.get("item") or {}).get("reference")
        if ref:
            item["item"]["reference"] = ids.get(ref, ref)
    session.add(
        Submission(
            id=submission_id,
            patient_id=patient.id,
            unique_id=sub.unique_id,
            source_id=sub.source_id,
            designation=sub.designation,
            date=sub.date,
            status="current",
            source_family=fold(sub.source_family) if sub.source_family else None,
            source_given=fold(sub.source_given) if sub.source_given else None,
            submitted_by=principal.actor_id,
            version=1,
            last_updated=now,
            resource=sub_resource,
        )
    )
    session.flush()

    token_rows: list[dict[str, Any]] = []
    term_rows: list[dict[str, Any]] = []
    created: list[str] = []
    for draft in parsed.documents:
        doc_id = doc_ids[draft.full_url]
        binary = parsed.binaries[draft.binary_url]
        binary_id = binary_ids[draft.binary_url]
        key = _blob_key(patient.id, binary_id)
        sealed = store.keys.seal(binary.data, aad=key)
        store.blobs.put(key, sealed.ciphertext)
        written.append(key)
        resource = copy.deepcopy(draft.resource)
        resource.pop("text", None)
        resource.update(
            id=doc_id,
            meta={**(resource.get("meta") or {}), "versionId": "1", "lastUpdated": now.isoformat()},
            subject=patient_ref,
        )
        resource["identifier"] = [
            *(resource.get("identifier") or []),
            {"use": "official", "system": RFC3986, "value": f"urn:uuid:{doc_id}"},
        ]
        resource["content"][0]["attachment"]["url"] = f"Binary/{binary_id}"
        if not draft.has_custodian and principal.structure:
            resource["custodian"] = {
                "identifier": {"system": "urn:oid:" + IDNST_OID, "value": principal.structure}
            }
        by_patient = any(a.kind == "patient" for a in draft.authors)
        professional = next((a for a in draft.authors if a.idnps), None)
        session.add(
            Document(
                id=doc_id,
                patient_id=patient.id,
                submission_id=submission_id,
                version=1,
                last_updated=now,
                status="current",
                master_identifier=draft.master_identifier,
                class_code=draft.class_code,
                type_code=draft.type_code,
                space=term.space_for(
                    draft.class_code, draft.type_system, draft.type_code, by_patient=by_patient
                ),
                date=draft.date,
                creation=draft.creation,
                period_start=draft.period_start,
                period_end=draft.period_end,
                confidentiality=draft.confidentiality,
                masque_ps=term.MASQUE_PS in draft.visibility,
                invisible_patient=term.INVISIBLE_PATIENT in draft.visibility,
                invisible_representants=term.INVISIBLE_REPRESENTANTS_LEGAUX in draft.visibility,
                published_at=now,
                secret_session=principal.minor_secret,
                archived=draft.archived,
                author_idnps=professional.idnps if professional else None,
                authored_by_patient=by_patient,
                published_by=principal.actor_id,
                title=draft.title,
                content_type=draft.content_type,
                size=len(binary.data),
                sha1=sha1_b64(binary.data),
                sha256=hashlib.sha256(binary.data).hexdigest(),
                binary_id=binary_id,
                blob_key=key,
                key_id=sealed.key_id,
                wrapped_key=sealed.wrapped_key,
                resource=resource,
            )
        )
        token_rows += _doc_tokens(doc_id, draft)
        token_rows.append(
            {
                "document_id": doc_id,
                "param": "identifier",
                "system": RFC3986,
                "code": f"urn:uuid:{doc_id}",
            }
        )
        text = draft.title + "\n" + fulltext.extract_text(draft.content_type, binary.data)
        term_rows += [
            {"document_id": doc_id, "term": t, "patient_id": patient.id}
            for t in fulltext.blind_terms(text, store.keys.index_key)
        ]
        created.append(doc_id)
    session.flush()
    if token_rows:
        session.execute(insert(DocumentToken), token_rows)
    if term_rows:
        session.execute(insert(DocumentTerm), term_rows)

    patched: dict[str, Document] = {}
    for old in replaced.values():
        _new_version(session, old, now)
        old.status = "superseded"
        old.resource = {**old.resource, "status": "superseded"}
        patched[old.id] = old
    session.flush()

    entries: list[dict[str, Any]] = []
    per_entry: dict[int, list[Issue]] = {}
    for w in parsed.warnings:
        idx = _entry_index(w)
        per_entry.setdefault(idx if idx is not None else 0, []).append(w)
    for position, (kind, ref) in enumerate(parsed.request_order):
        response: dict[str, Any]
        if kind == "patch":
            doc = patched.get(ref) or session.get(Document, ref)
            version = doc.version if doc else 1
            response = {
                "status": "200 OK",
                "location": f"DocumentReference/{ref}/_history/{version}",
                "etag": f'W/"{version}"',
                "lastModified": now.isoformat(),
            }
        elif kind == "ignored":
            response = {"status": "200 OK"}
        else:
            response = {
                "status": "201 Created",
                "location": f"{ids[ref]}/_history/1",
                "etag": 'W/"1"',
                "lastModified": now.isoformat(),
            }
        if position in per_entry:
            response["outcome"] = operation_outcome(per_entry[position])
        entries.append({"response": response})
    return PublishResult(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": entries},
        patient.id,
        created,
    )


def _entry_index(issue: Issue) -> int | None:
    for expr in issue.expression:
        if expr.startswith("Bundle.entry["):
            return int(expr[len("Bundle.entry[") :].split("]", 1)[0])
    return None


def _new_version(session: Session, doc: Document, now: datetime) -> None:
    """Keep the current version for ``_history`` and bump the version counter."""
    session.add(
        DocumentVersion(
            document_id=doc.id, version=doc.version, recorded_at=now, resource=doc.resource
        )
    )
    doc.version += 1
    doc.last_updated = now
    meta = {**(doc.resource.get("meta") or {}), "versionId": str(doc.version)}
    meta["lastUpdated"] = now.isoformat()
    doc.resource = {**doc.resource, "meta": meta}


def document_state(doc: Any) -> DocumentState:
    """The policy's view of a stored document."""
    if doc.deleted_at is not None:
        status = "deleted"
    elif doc.status == "superseded":
        status = "deprecated"
    elif doc.archived:
        status = "archived"
    else:
        status = "current"
    if doc.authored_by_patient:
        author, kind = doc.published_by, "patient"
    elif doc.class_code == "60" and doc.author_idnps is None:
        author, kind = doc.published_by, "system"
    else:
        author, kind = doc.author_idnps or doc.published_by, "professional"
    return DocumentState(
        id=doc.id,
        author=author,
        class_code=doc.class_code,
        type_code=doc.type_code,
        published_at=doc.published_at or doc.last_updated,
        author_kind=kind,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        masque_ps=doc.masque_ps,
        invisible_patient=doc.invisible_patient,
        invisible_representatives=doc.invisible_representants,
        announced_at=doc.announced_at,
        secret_session=doc.secret_session,
    )


# --- search (ITI-67) ----------------------------------------------------------------------


def _token_exists(param: str) -> Callable[[list[str], str], Any]:
    def build(values: list[str], modifier: str) -> Any:
        conds = []
        for raw in values:
            tok = parse_token(raw)
            cond = and_(DocumentToken.param == param, DocumentToken.code == tok.code)
            if tok.system:
                cond = and_(cond, DocumentToken.system == tok.system)
            conds.append(cond)
        found = exists().where(DocumentToken.document_id == Document.id, or_(*conds))
        return ~found if modifier == "not" else found

    return build


def _string_exists(param: str) -> Callable[[list[str], str], Any]:
    def build(values: list[str], modifier: str) -> Any:
        return exists().where(
            DocumentToken.document_id == Document.id,
            DocumentToken.param == param,
            match_string(DocumentToken.code, values, modifier),
        )

    return build


def _patient_param(values: list[str], _modifier: str) -> Any:
    return Document.patient_id.in_(records.patient_ids(values))


def _patient_identifier(values: list[str], _modifier: str) -> Any:
    return Document.patient_id.in_(select(Patient.id).where(records.ins_condition(values)))


def _status(values: list[str], _modifier: str) -> Any:
    codes = {parse_token(v).code for v in values}
    unknown = codes - {"current", "superseded"}
    if unknown:
        raise BadRequest(
            f"status accepte current ou superseded, reçu « {', '.join(sorted(unknown))} ».",
            expression=["status"],
        )
    return Document.status.in_(codes)


def _security_label(values: list[str], modifier: str) -> Any:
    conds = []
    for raw in values:
        code = parse_token(raw).code
        if code in term.CONFIDENTIALITY_CODES:
            conds.append(Document.confidentiality == code)
        elif code == term.MASQUE_PS:
            conds.append(Document.masque_ps.is_(True))
        elif code == term.INVISIBLE_PATIENT:
            conds.append(Document.invisible_patient.is_(True))
        elif code == term.INVISIBLE_REPRESENTANTS_LEGAUX:
            conds.append(Document.invisible_representants.is_(True))
        else:
            raise BadRequest(f"security-label inconnu : {code}.", expression=["security-label"])
    cond = or_(*conds)
    return ~cond if modifier == "not" else cond


def _space(values: list[str], _modifier: str) -> Any:
    codes = [parse_token(v).code for v in values]
    unknown = set(codes) - term.SPACE_CODES
    if unknown:
        raise BadRequest(
            f"Espace DMP inconnu : {', '.join(sorted(unknown))}. Espaces : "
            f"{', '.join(s.code for s in term.spaces())}.",
            expression=["space"],
        )
    return Document.space.in_(codes)


def _archived(values: list[str], _modifier: str) -> Any:
    return or_(*[Document.archived.is_(v == "true") for v in values])


def _content_param(index_key: Callable[[], bytes]) -> Callable[[list[str], str], Any]:
    def build(values: list[str], _modifier: str) -> Any:
        alternatives = []
        for raw in values:
            terms = fulltext.query_terms(raw, index_key())
            if not terms:
                raise BadRequest(
                    f"_content « {raw} » ne contient aucun mot recherchable.",
                    expression=["_content"],
                )
            alternatives.append(
                and_(
                    *[
                        exists().where(
                            DocumentTerm.document_id == Document.id, DocumentTerm.term == t
                        )
                        for t in terms
                    ]
                )
            )
        return or_(*alternatives)

    return build


def document_params(index_key: Callable[[], bytes]) -> dict[str, SearchParam]:
    """ITI-67 parameters (MHD 4.2 + PDSm 3.1.1), plus ``space`` and ``_content``."""
    token_mods = frozenset({"", "not"})
    params = [
        SearchParam("patient", "reference", "Patient (subject)", _patient_param),
        SearchParam(
            "patient.identifier", "token", "INS du patient (système|valeur)", _patient_identifier
        ),
        SearchParam("status", "token", "current | superseded", _status),
        SearchParam(
            "category", "token", "classCode (TRE_A03)", _token_exists("category"), token_mods
        ),
        SearchParam(
            "type", "token", "typeCode (LOINC, TRE_A05)", _token_exists("type"), token_mods
        ),
        SearchParam("format", "token", "formatCode", _token_exists("format"), token_mods),
        SearchParam("facility", "token", "context.facilityType", _token_exists("facility")),
        SearchParam("setting", "token", "context.practiceSetting", _token_exists("setting")),
        SearchParam("event", "token", "context.event", _token_exists("event")),
        SearchParam("related", "token", "context.related", _token_exists("related")),
        SearchParam(
            "identifier", "token", "masterIdentifier ou identifier", _token_exists("identifier")
        ),
        SearchParam(
            "author.identifier", "token", "IDNPS de l'auteur", _token_exists("author.identifier")
        ),
        SearchParam(
            "author.family",
            "string",
            "Nom de l'auteur",
            _string_exists("author.family"),
            STRING_MODIFIERS,
        ),
        SearchParam(
            "author.given",
            "string",
            "Prénom de l'auteur",
            _string_exists("author.given"),
            STRING_MODIFIERS,
        ),
        SearchParam("relatesTo", "reference", "Document lié", _relates_to),
        SearchParam(
            "security-label", "token", "Confidentialité / visibilité", _security_label, token_mods
        ),
        SearchParam("date", "date", "Date de la DocumentReference", instant_param(Document.date)),
        SearchParam(
            "creation", "date", "Date de création du document", instant_param(Document.creation)
        ),
        SearchParam(
            "period",
            "date",
            "Période de l'acte (chevauchement)",
            period_param(Document.period_start, Document.period_end),
        ),
        SearchParam(
            "period-start", "date", "Début de l'acte", instant_param(Document.period_start)
        ),
        SearchParam("period-end", "date", "Fin de l'acte", instant_param(Document.period_end)),
        SearchParam("isArchived", "boolean", "Document archivé", _archived),
        SearchParam("space", "token", "Espace du DMP (dérivé de classe/type)", _space),
        SearchParam(
            "_content", "string", "Recherche plein texte (français)", _content_param(index_key)
        ),
    ]
    return {p.name: p for p in params}


def _relates_to(values: list[str], _modifier: str) -> Any:
    ids = [v.rstrip("/").rsplit("/", 1)[-1] for v in values]
    return exists().where(
        DocumentToken.document_id == Document.id,
        DocumentToken.param == "relatesto",
        DocumentToken.code.in_(ids),
    )


@dataclass
class SearchResult:
    matches: list[dict[str, Any]]
    total: int | None
    has_more: bool


_POLICY_COLUMNS = (
    Document.id,
    Document.patient_id,
    Document.status,
    Document.deleted_at,
    Document.archived,
    Document.authored_by_patient,
    Document.author_idnps,
    Document.published_by,
    Document.class_code,
    Document.type_code,
    Document.published_at,
    Document.last_updated,
    Document.version,
    Document.date,
    Document.masque_ps,
    Document.invisible_patient,
    Document.invisible_representants,
    Document.announced_at,
    Document.secret_session,
    Document.space,
)


def search(session: Session, principal: Principal, query: SearchQuery, base: str) -> SearchResult:
    """ITI-67. The SQL narrows by the client's criteria; the policy then judges every
    candidate exactly as a read would (R26: search = filtered read), and only then is the
    page cut, so neither the page nor the total reveals a hidden document."""
    visible = [row.id for row in _visible(session, principal, query)]
    page = visible[query.offset : query.offset + query.count] if query.count else []
    resources = dict(
        session.execute(select(Document.id, Document.resource).where(Document.id.in_(page))).all()
    )
    total = len(visible) if query.total != "none" else None
    has_more = len(visible) > query.offset + query.count
    return SearchResult([absolute(resources[i], base) for i in page], total, has_more)


def search_by_space(
    session: Session, principal: Principal, query: SearchQuery, base: str
) -> dict[str, list[dict[str, Any]]]:
    """The record the way the DMP shows it: every visible match of ``query`` (same policy
    filter as ITI-67), grouped by display space, newest first, each space in its order."""
    rows = _visible(session, principal, query)
    resources = dict(
        session.execute(
            select(Document.id, Document.resource).where(Document.id.in_([r.id for r in rows]))
        ).all()
    )
    grouped: dict[str, list[dict[str, Any]]] = {s.code: [] for s in term.spaces()}
    for row in rows:
        grouped.setdefault(row.space, []).append(absolute(resources[row.id], base))
    return grouped


def _visible(session: Session, principal: Principal, query: SearchQuery) -> list[Any]:
    names = {c.param.name for c in query.criteria}
    if not names & {"patient", "patient.identifier"}:
        raise BadRequest(
            "ITI-67 : le paramètre patient ou patient.identifier est obligatoire.",
            code="required",
            expression=["patient"],
        )
    if "status" not in names and "identifier" not in names:
        raise BadRequest(
            "ITI-67 : le paramètre status est obligatoire (current, superseded).",
            code="required",
            expression=["status"],
        )
    states = records.authorise_search(session, principal, query)
    if not states:
        return []
    where = and_(
        Document.deleted_at.is_(None),
        Document.patient_id.in_(list(states)),
        *[c.condition() for c in query.criteria],
    )
    candidates = session.execute(
        select(*_POLICY_COLUMNS).where(where).order_by(Document.date.desc(), Document.id)
    ).all()
    rules = load_rules()
    now = utcnow()
    read = pep.request_for(principal, "read", now)
    actors = {pid: pep.actor_for(principal, state) for pid, state in states.items()}
    return [
        row
        for row in candidates
        if decide(
            read, actors[row.patient_id], states[row.patient_id], document_state(row), rules=rules
        ).permit
    ]


def absolute(resource: dict[str, Any], base: str) -> dict[str, Any]:
    """Stored attachment URLs are relative (``Binary/<id>``); clients get the full URL."""
    for content in resource.get("content") or []:
        att = content.get("attachment") or {}
        url = att.get("url")
        if isinstance(url, str) and url.startswith("Binary/"):
            att["url"] = f"{base}/{url}"
    return resource


# --- read, retrieve (ITI-68), history ------------------------------------------------------


def _load_document(session: Session, doc_id: str) -> Document:
    doc = session.get(Document, doc_id)
    if doc is None:
        raise NotFound("DocumentReference", doc_id)
    return doc


def _authorise(session: Session, principal: Principal, doc: Document, action: str) -> None:
    facts = records.facts_for(session, doc.patient_id, principal.actor_id)
    assert facts is not None  # a document's patient exists (foreign key)
    state, seen = facts
    if doc.deleted_at is not None and action in ("read", "delete"):
        # R25: a deleted document is served to nobody; a caller who may use the record learns
        # that it is gone (410, as MHD says), anyone else gets the record-level refusal.
        records.enforce(principal, "read-record", state, session=session, known_reader=seen)
        raise FHIRError(410, "deleted", f"DocumentReference/{doc.id} a été supprimée.")
    records.enforce(
        principal,
        action,  # type: ignore[arg-type]
        state,
        document_state(doc),
        session=session,
        known_reader=seen,
    )  # type: ignore[arg-type]


def read(session: Session, principal: Principal, doc_id: str, base: str) -> dict[str, Any]:
    doc = _load_document(session, doc_id)
    _authorise(session, principal, doc, "read")
    if doc.deleted_at is not None:
        raise FHIRError(410, "deleted", f"DocumentReference/{doc_id} a été supprimée.")
    return absolute(doc.resource, base)


def history(session: Session, principal: Principal, doc_id: str, base: str) -> list[dict[str, Any]]:
    doc = _load_document(session, doc_id)
    _authorise(session, principal, doc, "read")
    older = (
        session.execute(
            select(DocumentVersion.resource)
            .where(DocumentVersion.document_id == doc_id)
            .order_by(DocumentVersion.version.desc())
        )
        .scalars()
        .all()
    )
    return [absolute(r, base) for r in [doc.resource, *older]]


def vread(
    session: Session, principal: Principal, doc_id: str, version: str, base: str
) -> dict[str, Any]:
    for resource in history(session, principal, doc_id, base):
        if (resource.get("meta") or {}).get("versionId") == version:
            return resource
    raise FHIRError(
        404, "not-found", f"Version {version} de DocumentReference/{doc_id} introuvable."
    )


@dataclass
class Retrieved:
    content_type: str
    data: bytes
    document_id: str


def retrieve(
    session: Session, store: DocumentStore, principal: Principal, binary_id: str
) -> Retrieved:
    doc = session.execute(
        select(Document).where(Document.binary_id == binary_id)
    ).scalar_one_or_none()
    if doc is None:
        raise NotFound("Binary", binary_id)
    _authorise(session, principal, doc, "read")
    if doc.deleted_at is not None or doc.status != "current":
        raise FHIRError(
            410,
            "deleted",
            "Document supprimé ou remplacé (deprecated) : son contenu n'est plus servi.",
        )
    try:
        sealed = store.blobs.get(doc.blob_key)
        data = store.keys.open(sealed, doc.key_id, doc.wrapped_key, aad=doc.blob_key)
    except (KeyError, DecryptionError):
        log.error("document %s: blob missing or does not decrypt", doc.id)
        raise FHIRError(500, "exception", "Contenu du document indisponible (intégrité).") from None
    if hashlib.sha256(data).hexdigest() != doc.sha256 or sha1_b64(data) != doc.sha1:
        log.error("document %s: content hash mismatch", doc.id)
        raise FHIRError(500, "exception", "Contenu du document altéré : empreinte invalide.")
    return Retrieved(doc.content_type, data, doc.id)


# --- metadata update and deletion ---------------------------------------------------------

_UPDATABLE = ("status", "securityLabel", "extension", "meta")


def _find_for_patch(session: Session, doc_id: str | None, identifier: str | None) -> Document:
    if doc_id:
        return _load_document(session, doc_id)
    if not identifier:
        raise BadRequest("PATCH conditionnel : paramètre identifier obligatoire.")
    tok = parse_token(identifier)
    cond = and_(DocumentToken.param == "identifier", DocumentToken.code == tok.code)
    if tok.system:
        cond = and_(cond, DocumentToken.system == tok.system)
    ids = session.execute(select(DocumentToken.document_id).where(cond).distinct()).scalars().all()
    if not ids:
        raise FHIRError(404, "not-found", f"Aucun document d'identifiant {identifier}.")
    if len(ids) > 1:
        raise FHIRError(
            412, "multiple-matches", f"{len(ids)} documents ont l'identifiant {identifier}."
        )
    return _load_document(session, ids[0])


def _apply_fhirpath_patch(resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    for op in body.get("parameter") or []:
        parts = {p.get("name"): p for p in op.get("part") or [] if isinstance(p, dict)}
        kind = (parts.get("type") or {}).get("valueCode")
        path = str((parts.get("path") or {}).get("valueString") or "")
        value = parts.get("value") or {}
        if kind == "replace" and path == "DocumentReference.status":
            out["status"] = value.get("valueCode") or value.get("valueString")
        elif (
            kind == "add"
            and path == "DocumentReference"
            and (parts.get("name") or {}).get("valueString") == "securityLabel"
        ):
            out.setdefault("securityLabel", []).append(value.get("valueCodeableConcept"))
        elif kind == "delete" and path.startswith("DocumentReference.securityLabel.where("):
            code = path.split("'")[1] if "'" in path else ""
            out["securityLabel"] = [
                lab
                for lab in out.get("securityLabel") or []
                if code not in {c.get("code") for c in lab.get("coding") or []}
            ]
        elif (
            kind == "replace"
            and path.startswith("DocumentReference.extension.where(")
            and (EXT_IS_ARCHIVED in path)
        ):
            _set_archived(out, bool(value.get("valueBoolean")))
        else:
            raise FHIRError(
                405,
                "not-supported",
                f"Modification non autorisée : {kind} {path}. Seuls status, securityLabel et "
                "l'extension isArchived sont modifiables.",
            )
    return out


def _set_archived(resource: dict[str, Any], value: bool) -> None:
    exts = [e for e in resource.get("extension") or [] if e.get("url") != EXT_IS_ARCHIVED]
    exts.append({"url": EXT_IS_ARCHIVED, "valueBoolean": value})
    resource["extension"] = exts


def patch(
    session: Session,
    principal: Principal,
    *,
    doc_id: str | None,
    identifier: str | None,
    body: Any,
    content_type: str,
    base: str,
) -> dict[str, Any]:
    doc = _find_for_patch(session, doc_id, identifier)
    patient = session.get(Patient, doc.patient_id)
    assert patient is not None
    state = records.load(session, patient).state
    records.enforce(principal, "read-record", state)
    if doc.deleted_at is not None:
        raise FHIRError(410, "deleted", "Document supprimé.")
    if "json-patch" in content_type:
        if not isinstance(body, list):
            raise BadRequest("JSON Patch (RFC 6902) attendu : un tableau d'opérations.")
        try:
            updated = jsonpatch.apply_patch(doc.resource, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise FHIRError(422, "processing", f"JSON Patch inapplicable : {exc}") from None
    elif isinstance(body, dict) and body.get("resourceType") == "Parameters":
        updated = _apply_fhirpath_patch(doc.resource, body)
    else:
        raise FHIRError(
            415,
            "not-supported",
            "Corps de PATCH attendu : application/json-patch+json ou Parameters FHIRPath Patch.",
        )
    changed = {k for k in set(doc.resource) | set(updated) if doc.resource.get(k) != updated.get(k)}
    forbidden = changed - set(_UPDATABLE)
    if "meta" in changed:
        forbidden.add("meta")
    others_before = [
        e for e in doc.resource.get("extension") or [] if e.get("url") != EXT_IS_ARCHIVED
    ]
    others_after = [e for e in updated.get("extension") or [] if e.get("url") != EXT_IS_ARCHIVED]
    if others_before != others_after:
        forbidden.add("extension")
    if forbidden:
        raise FHIRError(
            405,
            "not-supported",
            "Seuls status, securityLabel et l'extension isArchived sont modifiables "
            f"(modifié : {', '.join(sorted(forbidden))}).",
        )
    status = updated.get("status")
    now = utcnow()
    if status == "entered-in-error":
        _delete(session, principal, doc, now)
        return absolute(doc.resource, base)
    if status not in ("current", "superseded"):
        raise FHIRError(422, "value", f"Statut « {status} » non admis (current, superseded).")
    confidentiality, visibility = _labels(updated.get("securityLabel") or [])
    archived = any(
        e.get("url") == EXT_IS_ARCHIVED and e.get("valueBoolean") is True
        for e in updated.get("extension") or []
    )
    current = document_state(doc)
    for action in _patch_actions(doc, status, confidentiality, visibility, archived):
        records.enforce(principal, action, state, current, now=now)  # type: ignore[arg-type]
    if term.INVISIBLE_PATIENT not in visibility and doc.invisible_patient:
        doc.announced_at = now  # R33: the announcement consultation took place
    _new_version(session, doc, now)
    labels = [
        {
            "coding": [
                {
                    "system": term.CONFIDENTIALITY_SYSTEM,
                    "code": confidentiality,
                    "display": term.CONFIDENTIALITY_CODES[confidentiality],
                }
            ]
        },
        *[visibility_label(c) for c in sorted(visibility)],
    ]
    doc.resource = {
        **updated,
        "meta": doc.resource["meta"],
        "securityLabel": labels,
    }
    doc.status = status
    doc.confidentiality = confidentiality
    doc.masque_ps = term.MASQUE_PS in visibility
    doc.invisible_patient = term.INVISIBLE_PATIENT in visibility
    doc.invisible_representants = term.INVISIBLE_REPRESENTANTS_LEGAUX in visibility
    doc.archived = archived
    session.flush()
    return absolute(doc.resource, base)


def set_masked(
    session: Session, principal: Principal, doc_id: str, masked: bool, base: str
) -> dict[str, Any]:
    """Mask a document from professionals (or unmask it): the patient's gesture of the
    portal, done as the JSON Patch of its security labels an API client would send, so the
    same rules decide (R21) and the same version history records it."""
    doc = _load_document(session, doc_id)
    labels = doc.resource.get("securityLabel") or []
    at = [
        i
        for i, label in enumerate(labels)
        if any(c.get("code") == term.MASQUE_PS for c in label.get("coding") or [])
    ]
    if masked == bool(at):
        return absolute(doc.resource, base)  # already as asked: nothing to change
    ops: list[dict[str, Any]] = (
        [{"op": "add", "path": "/securityLabel/-", "value": visibility_label(term.MASQUE_PS)}]
        if masked
        else [{"op": "remove", "path": f"/securityLabel/{i}"} for i in reversed(at)]
    )
    return patch(
        session,
        principal,
        doc_id=doc_id,
        identifier=None,
        body=ops,
        content_type="application/json-patch+json",
        base=base,
    )


def _patch_actions(
    doc: Document, status: str, confidentiality: str, visibility: set[str], archived: bool
) -> list[str]:
    """What a metadata update *does*, as the policy's actions: each is decided on its own."""
    actions: list[str] = []
    flags = (
        (term.MASQUE_PS, doc.masque_ps, "mask", "unmask"),
        (term.INVISIBLE_PATIENT, doc.invisible_patient, "make-invisible", "make-visible"),
    )
    for code, before, on, off in flags:
        if (code in visibility) != before:
            actions.append(on if code in visibility else off)
    if archived != doc.archived:
        actions.append("archive")
    reps = term.INVISIBLE_REPRESENTANTS_LEGAUX in visibility
    if (
        status != doc.status
        or confidentiality != doc.confidentiality
        or reps != (doc.invisible_representants)
    ):
        actions.append("replace")  # the author's own metadata (R28)
    return actions or ["archive"]  # a no-op update is still the author's alone


def _labels(labels: list[Any]) -> tuple[str, set[str]]:
    confidentiality = None
    visibility: set[str] = set()
    for label in labels:
        for coding in (label or {}).get("coding") or []:
            system, code = coding.get("system"), coding.get("code")
            if system == term.CONFIDENTIALITY_SYSTEM and code in term.CONFIDENTIALITY_CODES:
                confidentiality = confidentiality or code
            elif system in (term.VISIBILITY_SYSTEM, term.VISIBILITY_OID) and code in (
                term.DMP_VISIBILITY_CODES
            ):
                visibility.add(code)
            else:
                raise FHIRError(422, "code-invalid", f"securityLabel non admis : {system}|{code}.")
    return confidentiality or "N", visibility


def _delete(session: Session, principal: Principal, doc: Document, now: datetime) -> None:
    _authorise(session, principal, doc, "delete")
    doc.deleted_at, doc.deleted_by = now, principal.actor_id
    session.flush()


def delete(session: Session, principal: Principal, doc_id: str) -> None:
    doc = _load_document(session, doc_id)
    _delete(session, principal, doc, utcnow())  # already deleted: 410 only to who may know


# --- ITI-105 simplified publish -------------------------------------------------------------


def simplified_publish(
    db: Database, store: DocumentStore, principal: Principal, resource: Any, base: str
) -> dict[str, Any]:
    """ITI-105: one DocumentReference with inline ``attachment.data``. The server computes hash
    and size and creates the SubmissionSet (MHD ITI-105), then publishes exactly as ITI-65."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "DocumentReference":
        raise BadRequest("Une DocumentReference (pdsm-simplified-publish) est attendue.")
    contents = resource.get("content") or []
    att = (contents[0] or {}).get("attachment") if contents else None
    if not isinstance(att, dict) or not isinstance(att.get("data"), str):
        raise BadRequest(
            "ITI-105 : content.attachment.data (document en base64) est obligatoire.",
            expression=["DocumentReference.content[0].attachment.data"],
        )
    if att.get("url"):
        raise BadRequest(
            "ITI-105 : content.attachment.url est interdit (0..0) ; le serveur le renseigne.",
            expression=["DocumentReference.content[0].attachment.url"],
        )
    try:
        data = base64.b64decode(att["data"], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "attachment.data n'est pas du base64 valide.",
            expression=["DocumentReference.content[0].attachment.data"],
        ) from None
    doc = copy.deepcopy(resource)
    doc.pop("id", None)
    new_att = doc["content"][0]["attachment"]
    binary_url, doc_url, list_url = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    new_att.pop("data")
    new_att.update(url=binary_url, size=len(data), hash=sha1_b64(data))
    doc.setdefault("masterIdentifier", {"system": RFC3986, "value": f"urn:uuid:{uuid.uuid4()}"})
    subject = doc.get("subject") or {}
    now = utcnow().isoformat()
    source = {
        "resourceType": "Device",
        "id": "emetteur",
        "deviceName": [
            {"name": f"parcours ITI-105 ({principal.actor_id})", "type": "user-friendly-name"}
        ],
    }
    submission = {
        "resourceType": "List",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-submissionset-comprehensive"
            ]
        },
        "contained": [source],
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"system": RFC3986, "value": f"urn:uuid:{uuid.uuid4()}"},
            },
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
                "valueCodeableConcept": (doc.get("type") or {}),
            },
        ],
        "identifier": [{"system": RFC3986, "value": f"urn:uuid:{uuid.uuid4()}"}],
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "subject": subject,
        "date": now,
        "source": {"reference": "#emetteur"},
        "entry": [{"item": {"reference": doc_url}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-provide-document-bundle"
            ]
        },
        "type": "transaction",
        "entry": [
            {
                "fullUrl": list_url,
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": doc_url,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": new_att.get("contentType"),
                    "data": att["data"],
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    try:
        result = publish(db, store, principal, bundle, simplified=True)
    except FHIRError as exc:
        exc.issues = _as_posted(exc.issues)
        raise
    with db.session() as session:
        return absolute(_load_document(session, result.document_ids[0]).resource, base)


# Where an issue about the bundle built around an ITI-105 DocumentReference lands in what the
# client actually sent: the document is entry 1, the List (entry 0) only restates its subject,
# the Binary (entry 2) holds its attachment.data and contentType.
_ITI105_PATHS = (
    ("Bundle.entry[1].resource", "DocumentReference"),
    ("Bundle.entry[0].resource.subject", "DocumentReference.subject"),
    ("Bundle.entry[2].resource.data", "DocumentReference.content[0].attachment.data"),
    ("Bundle.entry[2].resource.contentType", "DocumentReference.content[0].attachment.contentType"),
)


def _as_posted(issues: list[Issue]) -> list[Issue]:
    """Re-root issue expressions at the posted DocumentReference and drop those about parts of
    the synthetic bundle that the client cannot have got wrong (its List and their links)."""
    kept: list[Issue] = []
    for issue in issues:
        mapped: list[str] = []
        for expression in issue.expression:
            for prefix, replacement in _ITI105_PATHS:
                if expression == prefix or expression.startswith((prefix + ".", prefix + "[")):
                    mapped.append(replacement + expression[len(prefix) :])
                    break
        if mapped or not issue.expression:
            kept.append(dataclasses.replace(issue, expression=mapped))
    return kept or issues


def binary_resource(binary_id: str, got: Retrieved) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": got.content_type,
        "data": base64.b64encode(got.data).decode(),
    }


# --- key rotation ---------------------------------------------------------------------------


def rewrap_keys(db: Database, keys: KeyRing, batch: int = 500) -> int:
    """Re-wrap every document key not under the active KEK; bytes are not touched."""
    done = 0
    while True:
        with db.session() as session:
            docs = (
                session.execute(select(Document).where(Document.key_id != keys.active).limit(batch))
                .scalars()
                .all()
            )
            for doc in docs:
                doc.key_id, doc.wrapped_key = keys.rewrap(doc.key_id, doc.wrapped_key, doc.blob_key)
            done += len(docs)
        if len(docs) < batch:
            return done
