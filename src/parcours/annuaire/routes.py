"""FHIR routes of the directory: read and search, thin over ``annuaire.service``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from parcours.annuaire import service
from parcours.auth.dependencies import current_principal
from parcours.auth.principal import Principal
from parcours.fhir.responses import FHIRResponse
from parcours.fhir.routing import check_id, fhir_base, lenient, search_items
from parcours.fhir.search import parse_search, searchset
from parcours.storage.deps import db_session

SessionDep = Annotated[Session, Depends(db_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def router() -> APIRouter:
    api = APIRouter(prefix="/fhir", tags=["Annuaire santé"])
    for rtype in service.KINDS:
        _add_routes(api, rtype)
    return api


def _add_routes(api: APIRouter, rtype: str) -> None:
    kind = service.KINDS[rtype]

    def do_search(
        request: Request,
        items: Annotated[list[tuple[str, str]], Depends(search_items)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> FHIRResponse:
        query = parse_search(
            rtype,
            items,
            kind.params,
            includes=kind.includes,
            lenient=lenient(request),
        )
        result = service.search(session, query)
        return FHIRResponse(
            searchset(
                base_url=fhir_base(request),
                query=query,
                matches=result.matches,
                included=result.included,
                total=result.total,
                has_more=result.has_more,
            )
        )

    def do_read(resource_id: str, principal: PrincipalDep, session: SessionDep) -> FHIRResponse:
        return FHIRResponse(service.read(session, rtype, check_id(rtype, resource_id)))

    def do_history(
        resource_id: str, request: Request, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        base = fhir_base(request)
        entries = [
            {"fullUrl": f"{base}/{rtype}/{r['id']}", "resource": r}
            for r in service.versions(session, rtype, check_id(rtype, resource_id))
        ]
        return FHIRResponse(
            {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
        )

    def do_vread(
        resource_id: str, version_id: str, principal: PrincipalDep, session: SessionDep
    ) -> FHIRResponse:
        resource = service.version(session, rtype, check_id(rtype, resource_id), version_id)
        return FHIRResponse(resource, headers={"ETag": f'W/"{version_id}"'})

    do_history.__name__ = f"history_{rtype}"
    do_vread.__name__ = f"vread_{rtype}"
    do_search.__name__ = f"search_{rtype}"
    do_read.__name__ = f"read_{rtype}"
    api.add_api_route(f"/{rtype}", do_search, methods=["GET"], summary=f"Rechercher {rtype}")
    api.add_api_route(
        f"/{rtype}/_search", do_search, methods=["POST"], summary=f"Rechercher {rtype} (POST)"
    )
    api.add_api_route(
        f"/{rtype}/{{resource_id}}", do_read, methods=["GET"], summary=f"Lire {rtype}"
    )
    api.add_api_route(
        f"/{rtype}/{{resource_id}}/_history",
        do_history,
        methods=["GET"],
        summary=f"Historique {rtype}",
    )
    api.add_api_route(
        f"/{rtype}/{{resource_id}}/_history/{{version_id}}",
        do_vread,
        methods=["GET"],
        summary=f"Lire une version de {rtype}",
    )
