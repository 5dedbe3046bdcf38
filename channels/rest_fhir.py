"""FHIR bodies POSTed to the REST channel, checked at the door before anything is claimed or journaled.

Read strictly (engine.mapping.fhirjson): concrete R4 resource types only, no duplicate keys, at most
100 levels of nesting, numbers kept exactly as sent; then validated against the R4 model of
fhir.resources. The same bytes always get the same refusal, so the check runs before an
Idempotency-Key is claimed.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from starlette.responses import Response

from channels.rest_http import problem
from engine.connectors.toolkit import FHIRJSONError, read_fhir

__all__ = ["check_fhir"]


def check_fhir(body: bytes) -> tuple[str, str] | Response:
    """(resourceType, Bundle identifier) of a valid FHIR R4 body, else a 400 problem naming the element.

    Read strictly (engine.mapping.fhirjson: concrete R4 resource types, no duplicate keys, bounded depth,
    exact numbers), then validated against the R4 model of fhir.resources (types, cardinality, unknown
    elements): this is input from outside, checked once at the door, not Wasla's own output on the hot path.
    """
    try:
        data = read_fhir(body)
    except FHIRJSONError as exc:
        where: dict[str, Any] = {"field": exc.field} if exc.field else {}
        return problem(400, "invalid-fhir", exc.title, exc.detail, **where)
    rtype = data.get("resourceType") if isinstance(data, dict) else None
    if not isinstance(rtype, str) or not rtype:
        return problem(400, "invalid-fhir", "Not a FHIR resource", "resourceType is missing", field="resourceType")
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        return problem(400, "invalid-fhir", "Not a FHIR R4 resource type",
                       f"unknown resourceType '{rtype}': an R4 resource type this channel cannot validate",
                       field="resourceType")
    try:
        model.model_validate(data)
    except RecursionError:  # cannot happen below fhirjson.MAX_DEPTH; never a 500 if it does
        return problem(400, "invalid-fhir", "Too deeply nested", "the resource nests too deep to validate")
    except ValidationError as exc:
        first = exc.errors()[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        return problem(400, "invalid-fhir", "Not a valid FHIR R4 resource", f"{path}: {first['msg']}",
                       field=path, errors=len(exc.errors()))
    ident = data.get("identifier") if rtype == "Bundle" else None
    return rtype, str(ident.get("value", "")) if isinstance(ident, dict) else ""
