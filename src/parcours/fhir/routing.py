"""Helpers shared by every domain's FHIR routes (query items, handling preference)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request

from parcours.fhir.errors import BadRequest, FHIRError


def query_items(request: Request) -> list[tuple[str, str]]:
    # parse_qsl keeps repetitions (AND semantics) and order, unlike request.query_params dict.
    return parse_qsl(request.url.query, keep_blank_values=True)


async def search_items(request: Request) -> list[tuple[str, str]]:
    """GET query items, plus the form body of ``POST [type]/_search``."""
    items = query_items(request)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", errors="replace")
        items += parse_qsl(body, keep_blank_values=True)
    return items


def lenient(request: Request) -> bool:
    return "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")


def fhir_base(request: Request) -> str:
    return str(request.app.state.settings.base_url).rstrip("/") + "/fhir"


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def check_id(resource_type: str, resource_id: str) -> str:
    """FHIR logical ids are ``[A-Za-z0-9-.]{1,64}`` (R4 §2.1.0 id); anything else is a 400."""
    if not _ID.fullmatch(resource_id):
        raise BadRequest(
            f"Identifiant logique invalide pour {resource_type} : 64 caractères au plus, "
            "lettres, chiffres, « - » et « . » seulement."
        )
    return resource_id


MAX_BODY_BYTES = 64 * 1024 * 1024


async def json_body(request: Request) -> Any:
    """The request's JSON body (FHIR JSON or JSON Patch), or a 4xx OperationOutcome."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and not (media.endswith("json") or media.endswith("+json")):
        raise FHIRError(
            415,
            "not-supported",
            f"Type de contenu non pris en charge : {media} (application/fhir+json attendu).",
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise FHIRError(413, "too-costly", "Corps de requête trop volumineux.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"JSON invalide : {exc}", code="structure") from None
