"""The channel and destination JSON Schemas, composed from the installed connectors' option specs.

`config/schema/channel.schema.json` and `destination.schema.json` hold the envelope (pipeline, output,
route, retry …); each connector installed in `wasla.inputs` / `wasla.outputs` adds its part, derived from
its `options_spec`, so a third-party connector's options are validated like the shipped ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from engine.connectors.fields import Spec, object_schema
from engine.connectors.registry import connectors

__all__ = ["channel_schema", "connector_schema", "destination_schema"]


def connector_schema(cls: Any) -> dict[str, Any]:
    """The JSON Schema of one connector's options (an object of exactly its declared keys)."""
    spec: Spec = tuple(getattr(cls, "options_spec", ()))
    return object_schema(spec, str(getattr(cls, "description", "")))


def channel_schema(envelope: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`envelope` with one `input.<name>` per input connector (all installed ones by default)."""
    found = connectors("inputs") if inputs is None else inputs
    out = copy.deepcopy(dict(envelope))
    out["properties"]["input"]["properties"] = {name: {"$ref": f"#/$defs/{name}"} for name in found}
    out["$defs"] = {**out.get("$defs", {}), **{name: connector_schema(cls) for name, cls in found.items()}}
    return out


def destination_schema(envelope: Mapping[str, Any], outputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`envelope` with one top-level key per output connector (all installed ones by default)."""
    found = connectors("outputs") if outputs is None else outputs
    out = copy.deepcopy(dict(envelope))
    clash = sorted(set(found) & set(out["properties"]))
    if clash:
        raise ValueError(f"output connector name(s) {', '.join(clash)} clash with destination keys")
    props = dict(out["properties"])
    first = next(iter(props), None)
    merged = {k: v for k, v in props.items() if k == first}  # description first, as the file orders it
    merged.update({name: {"$ref": f"#/$defs/{name}"} for name in found})
    merged.update({k: v for k, v in props.items() if k != first})
    out["properties"] = merged
    out["$defs"] = {**out.get("$defs", {}), **{name: connector_schema(cls) for name, cls in found.items()}}
    return out
