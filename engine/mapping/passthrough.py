"""FHIR that arrives as FHIR (a REST channel's application/fhir+json) is routed as it is.

A transaction or batch Bundle goes through unchanged. Any other resource is wrapped in a
transaction Bundle of one entry: a PUT when the resource has an id (the sender owns it), else a
POST. No id is invented, so the same body gives the same bytes. Numbers are written as they were sent
(2^70 stays 1180591620717411303424, 1.10 stays 1.10: `fhirjson.loads_exact`), never through a float.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.mapping.fhirjson import loads_exact

__all__ = ["as_transaction"]


def as_transaction(raw: bytes) -> bytes:
    resource = loads_exact(raw)
    if not isinstance(resource, dict):
        raise TypeError("not a JSON object")
    if resource.get("resourceType") == "Bundle" and resource.get("type") in ("transaction", "batch"):
        return orjson.dumps(resource)
    rtype = str(resource["resourceType"])
    rid = resource.get("id")
    request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": rtype}
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if rid:
        entry["fullUrl"] = f"{rtype}/{rid}"
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
