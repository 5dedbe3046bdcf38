"""What the REST channel says over HTTP: the media types it takes and its JSON and problem answers.

Every error is an RFC 9457 problem+json body that names what was wrong, never a stack trace.
Shared by the input (`channels.rest`), its idempotency keys, its FHIR check and its OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["CSV_TYPES", "FHIR_TYPES", "HL7_TYPES", "json_response", "problem"]

HL7_TYPES = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain", "application/edi-hl7")
FHIR_TYPES = ("application/fhir+json", "application/json+fhir")
CSV_TYPES = ("text/csv",)
_PROBLEM = "https://wasla.ma/problems/"


def problem(status: int, kind: str, title: str, detail: str = "", headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    """RFC 9457 problem details; `kind` is the problem type's last path segment."""
    body = {"type": _PROBLEM + kind, "title": title, "status": status, **({"detail": detail} if detail else {}),
            **extra}
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/problem+json")


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (application/json)."""
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")
