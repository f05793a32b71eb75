"""FHIR errors: every refusal leaves the server as an ``OperationOutcome`` with a 4xx/5xx.

Diagnostics are written in French because the people who read them (LPS vendors' support,
regional e-health teams) work in French; issue codes are the FHIR ``IssueType`` codes so that a
client can branch on them without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    code: str
    diagnostics: str
    severity: str = "error"
    expression: list[str] = field(default_factory=list)

    def as_fhir(self) -> dict[str, object]:
        issue: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, object]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


class FHIRError(Exception):
    """A refusal with its HTTP status and the OperationOutcome issues that explain it."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = issues or [Issue(code, diagnostics, expression=expression or [])]
        self.headers = headers or {}

    def outcome(self) -> dict[str, object]:
        return operation_outcome(self.issues)


class NotFound(FHIRError):
    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(404, "not-found", f"{resource_type}/{resource_id} introuvable.")


class BadRequest(FHIRError):
    def __init__(
        self, diagnostics: str, *, code: str = "invalid", expression: list[str] | None = None
    ):
        super().__init__(400, code, diagnostics, expression=expression)
