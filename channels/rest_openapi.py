"""The OpenAPI 3.1 document of a REST channel, served at GET /openapi.json.

It describes what `channels.rest` answers: the media types it takes (HL7 v2, FHIR, CSV when the
channel has a CSV map), the Idempotency-Key header, the 202 answer and every problem status.
"""

from __future__ import annotations

from typing import Any

from channels.rest_http import HL7_TYPES
from channels.rest_idempotency import KEY_MAX

__all__ = ["openapi_document"]


def openapi_document(channel: str, max_body: int, csv_bodies: bool = False) -> dict[str, Any]:
    """The API of the REST channel `channel`: bodies up to `max_body` bytes, text/csv too when `csv_bodies`."""
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    errors = {str(s): {"description": d, "content": {"application/problem+json": {"schema": problem_ref}}}
              for s, d in ((400, "not a readable HL7 v2 message (segment, field), not valid FHIR (field), or an"
                                 " Idempotency-Key too long"),
                           (401, "no or unknown token"),
                           (403, "token without the scope"),
                           (409, "a request with this Idempotency-Key is still in progress (Retry-After)"),
                           (413, "body too large"), (415, "not HL7 v2"),
                           (422, "Idempotency-Key reused with another body"), (429, "rate limited (Retry-After)"),
                           (503, "pipeline unavailable (Retry-After)"))}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Wasla REST channel '{channel}'", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "segment": {"type": "string"},
                "field": {"type": ["integer", "string"], "description": "HL7 v2 field number, or FHIR element path"},
                "message_id": {"type": "string"}}}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/messages": {"post": {
                "summary": "Submit one HL7 v2 message",
                "parameters": [{"name": "Idempotency-Key", "in": "header",
                                "schema": {"type": "string", "maxLength": KEY_MAX}}],
                "requestBody": {"required": True, "content": {
                    **{t: {"schema": {"type": "string", "maxLength": max_body}} for t in HL7_TYPES},
                    "application/fhir+json": {"schema": {"type": "object", "required": ["resourceType"]}},
                    **({"text/csv": {"schema": {"type": "string", "maxLength": max_body}}} if csv_bodies else {})}},
                "responses": {"202": {"description": "durable: journaled and queued", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "id": {"type": "string"}, "status_url": {"type": "string"},
                        "duplicate": {"type": "boolean"}, "rows": {"type": "integer"},
                        "messages": {"type": "integer"}, "rejected": {"type": "array"}}}}}},
                    **({"200": {"description": "this CSV body was taken in before (duplicate)", "content": {
                        "application/json": {"schema": {"type": "object"}}}}} if csv_bodies else {}),
                    **errors}}},
            "/messages/{message_id}": {"get": {
                "summary": "Where a message is",
                "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "its status"}, "404": errors["403"] | {"description": "unknown"},
                              "401": errors["401"], "403": errors["403"], "429": errors["429"]}}},
        },
    }
