"""Adapt an official PDSm/PDSm4DMP example bundle to this instance: the examples carry
placeholder patients (INS with a wrong key), authors and identifiers (conformance README, "How
to use"). Everything else is kept as published, so the server's verdict on the example itself
(accepted, warnings on its documented defects) is what the user sees."""

from __future__ import annotations

import uuid
from typing import Any

IDNPS_SYSTEMS = ("urn:oid:1.2.250.1.71.4.2.1", "https://rpps.esante.gouv.fr")
INS_SYSTEMS = tuple(f"urn:oid:1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11))


def adapt_example(
    bundle: dict[str, Any], *, ins: str, ins_system: str, idnps: str, replaces: str | None = None
) -> dict[str, Any]:
    subject = {"reference": f"Patient?identifier={ins_system}|{ins}"}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rtype = node.get("resourceType")
            if "subject" in node and "Patient" in str(node["subject"].get("reference", "")):
                node["subject"] = dict(subject)
            if rtype == "Patient":
                node["identifier"] = [{"system": ins_system, "value": ins}]
            if rtype in ("Practitioner", "PractitionerRole"):
                for ident in node.get("identifier") or []:
                    if ident.get("system") in IDNPS_SYSTEMS:
                        ident["system"], ident["value"] = IDNPS_SYSTEMS[0], idnps
            if rtype in ("DocumentReference", "List"):
                node.pop("id", None)
                master = node.get("masterIdentifier")
                if isinstance(master, dict):
                    master["value"] = f"urn:uuid:{uuid.uuid4()}"
                if rtype == "List":
                    idents = node.setdefault("identifier", [])
                    for ident in idents:
                        ident["value"] = f"urn:uuid:{uuid.uuid4()}"
                    if not idents:  # e.g. the PDSm4DMP TD2 example has no uniqueId at all
                        idents.append(
                            {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}
                        )
                for rel in node.get("relatesTo") or []:
                    if replaces:
                        rel["target"] = {"reference": f"DocumentReference/{replaces}"}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    adapted = dict(bundle)
    walk(adapted)
    for entry in adapted.get("entry") or []:
        request = entry.get("request") or {}
        if request.get("method") == "PATCH" and replaces:
            request["url"] = f"DocumentReference/{replaces}"
    return adapted
