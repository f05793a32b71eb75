"""The server's CapabilityStatement, generated from the search-parameter registries."""

from __future__ import annotations

from typing import Any

from parcours import __version__
from parcours.fhir.search import SearchParam


def capability_statement(
    base_url: str, resources: dict[str, tuple[dict[str, SearchParam], frozenset[str]]]
) -> dict[str, Any]:
    rest_resources = []
    for rtype, (params, includes) in resources.items():
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [
                {"code": "read"},
                {"code": "vread"},
                {"code": "history-instance"},
                {"code": "search-type"},
            ],
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.description}
                for p in params.values()
            ],
        }
        if includes:
            entry["searchInclude"] = sorted(includes)
        rest_resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "parcours", "version": __version__},
        "implementation": {"description": "parcours", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Jeton Bearer (JWT) d'un émetteur OpenID Connect de confiance.",
                },
                "resource": rest_resources,
            }
        ],
    }
