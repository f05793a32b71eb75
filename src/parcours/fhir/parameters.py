"""The ``Parameters`` body of a FHIR operation, as a name → value map."""

from __future__ import annotations

from typing import Any

from parcours.fhir.errors import BadRequest


def parameter_values(body: Any) -> dict[str, Any]:
    """One value per named parameter (``value[x]`` whatever its type); anything else is a 400
    naming the faulty parameter, so an operation never acts on a half-understood request."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("Une ressource Parameters est attendue.")
    values: dict[str, Any] = {}
    for i, param in enumerate(body.get("parameter") or []):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise BadRequest("Paramètre sans nom.", expression=[f"Parameters.parameter[{i}]"])
        value = [v for k, v in param.items() if k.startswith("value")]
        if len(value) != 1:
            raise BadRequest(
                f"Le paramètre « {param['name']} » doit porter exactement une valeur.",
                expression=[f"Parameters.parameter[{i}]"],
            )
        values[param["name"]] = value[0]
    return values
