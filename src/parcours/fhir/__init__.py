"""Shared FHIR R4 plumbing: OperationOutcome errors, JSON responses, search parsing, Bundles."""
