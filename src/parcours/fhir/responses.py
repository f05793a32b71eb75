"""Responses carrying FHIR JSON, serialised with orjson (no model round-trip on the way out)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

FHIR_JSON = "application/fhir+json"


class FHIRResponse(Response):
    media_type = f"{FHIR_JSON}; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
