"""FHIR routes of the DMP (PDSm / IHE MHD): thin over ``records``, ``documents`` and
``lists``. Every handler resolves the caller, calls one service function, renders."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from parcours.auth.dependencies import current_principal
from parcours.auth.principal import Principal
from parcours.dossier import documents, heirs, lists, records, rights
from parcours.dossier.store import DocumentStore
from parcours.fhir.errors import BadRequest, FHIRError
from parcours.fhir.responses import FHIRResponse
from parcours.fhir.routing import check_id, fhir_base, json_body, lenient, search_items
from parcours.fhir.search import match_bundle, page, parse_search, searchset
from parcours.storage.deps import db_session

SessionDep = Annotated[Session, Depends(db_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
BodyDep = Annotated[Any, Depends(json_body)]


def _store(request: Request) -> DocumentStore:
    return request.app.state.documents  # type: ignore[no-any-return]


def _created(resource: dict[str, Any], base: str) -> FHIRResponse:
    location = f"{base}/{resource['resourceType']}/{resource['id']}"
    version = (resource.get("meta") or {}).get("versionId", "1")
    return FHIRResponse(
        resource,
        status_code=201,
        headers={"Location": f"{location}/_history/{version}", "ETag": f'W/"{version}"'},
    )


def _versioned(resource: dict[str, Any]) -> FHIRResponse:
    version = (resource.get("meta") or {}).get("versionId")
    return FHIRResponse(resource, headers={"ETag": f'W/"{version}"'} if version else None)


def router() -> APIRouter:
    api = APIRouter(prefix="/fhir", tags=["DMP (PDSm / MHD)"])

    @api.post("", summary="ITI-65 Provide Document Bundle (transaction)")
    def provide_bundle(request: Request, body: BodyDep, principal: PrincipalDep) -> FHIRResponse:
        result = documents.publish(request.app.state.db, _store(request), principal, body)
        return FHIRResponse(result.response)

    # Some clients (fhirpy's execute("")) post the transaction to "[base]/".
    api.add_api_route("/", provide_bundle, methods=["POST"], include_in_schema=False)

    # --- Patient and record ---------------------------------------------------------------
    @api.post("/Patient", summary="Déclarer un patient (INS)")
    def create_patient(
        request: Request, body: BodyDep, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        patient, created = records.create_patient(session, principal, body)
        resource = records.render_patient(patient, records.load(session, patient).record)
        if created:
            return _created(resource, fhir_base(request))
        return FHIRResponse(resource, status_code=200)

    @api.get("/Patient", summary="Retrouver un patient par INS")
    def search_patient(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        identifier = None
        for name, value in items:
            if name == "identifier":
                identifier = value
            elif not name.startswith("_") and not lenient(request):
                raise BadRequest(
                    f"Paramètre inconnu pour Patient : « {name} » (identifier seulement).",
                    expression=[name],
                )
        found = records.search_patients(session, principal, identifier)
        return FHIRResponse(match_bundle(fhir_base(request), found, len(found)))

    @api.get("/Patient/{patient_id}", summary="Lire un patient (statut du DMP)")
    def read_patient(patient_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return _versioned(records.read_patient(session, principal, check_id("Patient", patient_id)))

    @api.post("/Patient/{patient_id}/$close-dmp", summary="Fermer le DMP du patient")
    def close_dmp(
        patient_id: str, body: BodyDep, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        reason = ""
        if isinstance(body, dict):
            for param in body.get("parameter") or []:
                if param.get("name") == "reason":
                    reason = str(param.get("valueString") or "")
        records.close_record(session, principal, check_id("Patient", patient_id), reason)
        return FHIRResponse(records.read_patient(session, principal, patient_id))

    @api.get("/Patient/{patient_id}/$dmp-droits", summary="Réglages d'accès du DMP (titulaire)")
    def read_rights(patient_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return FHIRResponse(rights.settings(session, principal, check_id("Patient", patient_id)))

    @api.post(
        "/Patient/{patient_id}/$dmp-droits",
        summary="Exercer un droit sur le DMP (médecin traitant, blocage, oppositions, "
        "autorisations, équipe de soins, masquage global)",
    )
    def apply_right(
        patient_id: str, body: BodyDep, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        return FHIRResponse(rights.apply(session, principal, check_id("Patient", patient_id), body))

    # --- after death: R43 ------------------------------------------------------------------
    @api.post("/Patient/{patient_id}/$deces", summary="Décès du titulaire (flux Assurance Maladie)")
    def record_death(
        patient_id: str, body: BodyDep, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        heirs.record_death(session, principal, check_id("Patient", patient_id), body)
        return FHIRResponse(records.read_patient(session, principal, patient_id))

    @api.post(
        "/Patient/{patient_id}/$demande-ayant-droit",
        summary="Demande d'accès d'un ayant droit (après décès, instruite hors ligne)",
    )
    def heir_request(
        request: Request,
        patient_id: str,
        body: BodyDep,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        task = heirs.file_request(session, principal, check_id("Patient", patient_id), body)
        return _created(task, fhir_base(request))

    @api.get("/Task", summary="Demandes d'ayants droit (les siennes ; toutes pour l'instructeur)")
    def heir_requests(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        params = dict(items)
        if set(params) - {"status"}:
            raise BadRequest("Task : recherche par status seulement.")
        tasks = heirs.search(session, principal, params.get("status"))
        return FHIRResponse(match_bundle(fhir_base(request), tasks, len(tasks)))

    @api.get("/Task/{task_id}", summary="Lire une demande d'ayant droit")
    def read_task(task_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return FHIRResponse(heirs.read(session, principal, check_id("Task", task_id)))

    @api.post("/Task/{task_id}/$instruire", summary="Accepter ou rejeter une demande (agent)")
    def decide_task(
        request: Request,
        task_id: str,
        body: BodyDep,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        return FHIRResponse(
            heirs.decide_request(
                session,
                principal,
                check_id("Task", task_id),
                body,
                request.state.request_id,
            )
        )

    @api.post("/Consent", summary="Consentement du patient : crée (ou rouvre) son DMP")
    def create_consent(
        request: Request, body: BodyDep, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        consent = records.record_consent(session, principal, body)
        return _created(consent.resource, fhir_base(request))

    @api.get("/Consent/{consent_id}", summary="Lire un consentement")
    def read_consent(consent_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return _versioned(records.read_consent(session, principal, check_id("Consent", consent_id)))

    # --- DocumentReference ----------------------------------------------------------------
    def find_documents(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        params = documents.document_params(lambda: _store(request).keys.index_key)
        query = parse_search("DocumentReference", items, params, lenient=lenient(request))
        base = fhir_base(request)
        result = documents.search(session, principal, query, base)
        return FHIRResponse(
            searchset(
                base_url=base,
                query=query,
                matches=result.matches,
                included=[],
                total=result.total,
                has_more=result.has_more,
            )
        )

    api.add_api_route(
        "/DocumentReference",
        find_documents,
        methods=["GET"],
        summary="ITI-67 Find Document References",
    )
    api.add_api_route(
        "/DocumentReference/_search",
        find_documents,
        methods=["POST"],
        summary="ITI-67 Find Document References (POST)",
    )

    @api.post("/DocumentReference", summary="ITI-105 Simplified Publish")
    def simplified_publish(
        request: Request, body: BodyDep, principal: PrincipalDep
    ) -> FHIRResponse:
        base = fhir_base(request)
        resource = documents.simplified_publish(
            request.app.state.db, _store(request), principal, body, base
        )
        return _created(resource, base)

    @api.get("/DocumentReference/{doc_id}", summary="Lire une DocumentReference")
    def read_document(
        request: Request, doc_id: str, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        doc_id = check_id("DocumentReference", doc_id)
        return _versioned(documents.read(session, principal, doc_id, fhir_base(request)))

    @api.get("/DocumentReference/{doc_id}/_history", summary="Historique d'une DocumentReference")
    def document_history(
        request: Request, doc_id: str, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        base = fhir_base(request)
        versions = documents.history(
            session, principal, check_id("DocumentReference", doc_id), base
        )
        return FHIRResponse(
            {
                "resourceType": "Bundle",
                "type": "history",
                "total": len(versions),
                "entry": [
                    {"fullUrl": f"{base}/DocumentReference/{r['id']}", "resource": r}
                    for r in versions
                ],
            }
        )

    @api.get(
        "/DocumentReference/{doc_id}/_history/{version}",
        summary="Lire une version d'une DocumentReference",
    )
    def document_vread(
        request: Request, doc_id: str, version: str, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        doc_id = check_id("DocumentReference", doc_id)
        return _versioned(documents.vread(session, principal, doc_id, version, fhir_base(request)))

    def patch_document(
        request: Request,
        body: BodyDep,
        principal: PrincipalDep,
        session: SessionDep,
        doc_id: str | None = None,
    ) -> FHIRResponse:
        identifier = request.query_params.get("identifier")
        resource = documents.patch(
            session,
            principal,
            doc_id=check_id("DocumentReference", doc_id) if doc_id else None,
            identifier=identifier,
            body=body,
            content_type=request.headers.get("content-type", ""),
            base=fhir_base(request),
        )
        return _versioned(resource)

    api.add_api_route(
        "/DocumentReference/{doc_id}",
        patch_document,
        methods=["PATCH"],
        summary="Mise à jour des métadonnées (status, securityLabel, isArchived)",
    )
    api.add_api_route(
        "/DocumentReference",
        patch_document,
        methods=["PATCH"],
        summary="Mise à jour conditionnelle (?identifier=)",
    )

    @api.delete("/DocumentReference/{doc_id}", summary="Suppression logique (auteur seulement)")
    def delete_document(doc_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
        documents.delete(session, principal, check_id("DocumentReference", doc_id))
        return Response(status_code=204)

    # --- Binary (ITI-68) -------------------------------------------------------------------
    @api.get("/Binary/{binary_id}", summary="ITI-68 Retrieve Document")
    def retrieve(
        request: Request, binary_id: str, principal: PrincipalDep, session: SessionDep
    ) -> Response:
        got = documents.retrieve(session, _store(request), principal, check_id("Binary", binary_id))
        accept = request.headers.get("accept", "*/*")
        wanted = [a.split(";")[0].strip().lower() for a in accept.split(",") if a.strip()]
        if any(w in ("application/fhir+json", "application/json+fhir") for w in wanted) and (
            got.content_type not in wanted
        ):
            return FHIRResponse(documents.binary_resource(binary_id, got))
        if not any(
            w in ("*/*", got.content_type, got.content_type.split("/")[0] + "/*") for w in wanted
        ):
            raise FHIRError(
                406,
                "not-supported",
                f"Ce document n'est disponible qu'en {got.content_type} "
                "(ou application/fhir+json pour la ressource Binary).",
            )
        return Response(
            got.data,
            media_type=got.content_type,
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    # --- List (ITI-66) ---------------------------------------------------------------------
    def find_lists(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        query = parse_search("List", items, lists.PARAMS, lenient=lenient(request))
        base = fhir_base(request)
        result = lists.search(session, principal, query)
        return FHIRResponse(
            searchset(
                base_url=base,
                query=query,
                matches=result.matches,
                included=[],
                total=result.total,
                has_more=result.has_more,
            )
        )

    api.add_api_route("/List", find_lists, methods=["GET"], summary="ITI-66 Find Document Lists")
    api.add_api_route(
        "/List/_search", find_lists, methods=["POST"], summary="ITI-66 Find Document Lists (POST)"
    )

    @api.get("/List/{list_id}", summary="Lire un lot de soumission")
    def read_list(list_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return _versioned(lists.read(session, principal, check_id("List", list_id)))

    @api.get("/AuditEvent", summary="Traces d'accès à un DMP (titulaire)")
    def audit_events(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        params = dict(items)
        count, offset = page(params)
        if "entity-name" in params and "patient" not in params:
            # The message events of an MSSanté mailbox, for whoever may open it.
            if set(params) - {"entity-name", "_count", "_offset"}:
                raise BadRequest("AuditEvent : entity-name ne se combine qu'avec _count/_offset.")
            from parcours.messagerie import service as messagerie

            try:
                events = messagerie.traces_for(
                    session, principal, params["entity-name"], count, offset
                )
            except messagerie.AccessDenied as exc:
                raise FHIRError(403, "forbidden", str(exc)) from None
            return FHIRResponse(match_bundle(fhir_base(request), events))
        unknown = set(params) - {"patient", "_count", "_offset"}
        if unknown or "patient" not in params:
            raise BadRequest(
                "AuditEvent : recherche par patient (patient=<id>) ou par BAL MSSanté "
                "(entity-name=<adresse>) seulement."
            )
        patient_id = check_id("Patient", params["patient"].rsplit("/", 1)[-1])
        events = records.traces(session, principal, patient_id, count, offset)
        return FHIRResponse(match_bundle(fhir_base(request), events))

    return api
