"""One message → one FHIR R4 transaction Bundle.

Conditional create by identifier for shared resources (Patient…), PUT by deterministic id for
the rest, a Provenance naming the source message, and lineage in `meta.source`/`meta.tag`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from engine.errors import MappingError
from engine.hl7v2.er7 import Message
from engine.hl7v2.groups import Group
from engine.ids import resource_id
from engine.mapping.compiler import CompiledResource, MappingSpec, is_segment_id, key_part
from engine.mapping.context import Context, Instance
from engine.mapping.datatypes import slug, v2_instant

__all__ = ["build_bundle", "instant"]

ACTIVITY = {"system": "http://hl7.org/fhir/uv/v2mappings/CodeSystem/provenance-activity-type-v2-to-fhir",
            "code": "v2-fhir-transformation", "display": "V2 To FHIR Transformation"}
ASSEMBLER = {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
             "code": "assembler", "display": "Assembler"}


def instant(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sender(msg: Message) -> str:
    return msg.sending_facility or msg.sending_application or "unknown"


def _instances(res: CompiledResource, ctx: Context) -> list[tuple[Group | None, int | None]]:
    """Where each resource of this kind is made from: (scope, anchor segment index)."""
    tree = ctx.msg.tree
    if res.for_each:
        if is_segment_id(res.for_each):
            return [(tree.of_segment[i], i) for i in tree.positions.get(res.for_each, [])]
        return [(g, g.segments[0] if g.segments else g.start) for g in tree.by_name.get(res.for_each, [])]
    if res.segment:
        found = tree.positions.get(res.segment)
        return [(tree.of_segment[found[0]], found[0])] if found else []
    return [(None, None)]


def _resource_id(res: CompiledResource, ctx: Context, ordinal: int) -> tuple[str, list[str]]:
    parts = [key_part(p, ctx) for p in res.key]
    if all(parts):
        return resource_id(ctx.namespace, res.type, *parts), parts
    if res.id_fallback == "control_id" and ctx.msg.control_id:
        ctx.warn("BUSINESS_KEY_MISSING", res.name, ",".join("|".join(a.spec for a in p) for p in res.key),
                 "identified by sender and control id instead")
        return resource_id(ctx.namespace, res.type, "msg", _sender(ctx.msg), ctx.msg.control_id, res.name,
                           str(ordinal)), []
    missing = ", ".join("|".join(a.spec for a in p) for p, v in zip(res.key, parts, strict=True) if not v)
    raise MappingError(f"cannot identify the {res.type}: {missing} not valued", rule=res.name, field=missing)


def build_bundle(spec: MappingSpec, ctx: Context) -> dict[str, Any]:
    msg = ctx.msg
    if msg.message_type not in spec.accepts:
        raise MappingError(f"unsupported message type {msg.message_type or '(none)'}: mapping {spec.name} accepts "
                           f"{', '.join(spec.accepts)}", field="MSH-9")
    sender = _sender(msg)
    control_id = msg.control_id
    meta = {"source": f"{ctx.base}/hl7v2/{slug(sender)}#{control_id}",
            "tag": [{"system": f"{ctx.base}/CodeSystem/wasla-mapping", "version": spec.version,
                     "code": spec.name}]}
    ctx.meta = meta
    made: list[tuple[CompiledResource, Instance]] = []
    for res in spec.resources:  # every id first: a rule may reference any resource of the message
        seen: set[str] = set()
        for ordinal, (scope, anchor) in enumerate(_instances(res, ctx), start=1):
            ctx.scope, ctx.segment = scope, msg.segments[anchor] if anchor is not None else None
            if res.when is not None and not res.when(ctx):
                continue
            rid, key = _resource_id(res, ctx, ordinal)
            repeat = rid in seen
            if repeat and not res.merge_duplicates:  # one business key twice: keep both, tell the operator
                ctx.warn("DUPLICATE_BUSINESS_KEY", res.name, res.for_each or res.segment or "",
                         f"occurrence {ordinal} has the key of an earlier one")
                rid = resource_id(ctx.namespace, res.type, *key, f"occurrence-{ordinal}")
            seen.add(rid)
            inst = Instance(res.name, rid, scope, anchor, key)
            ctx.instances.setdefault(res.name, []).append(inst)
            if not repeat or not res.merge_duplicates:  # a merged repeat is referenced, not written twice
                made.append((res, inst))
    entries: list[dict[str, Any]] = []
    for res, inst in made:
        body: dict[str, Any] = {"resourceType": res.type}
        if res.request == "put":
            body["id"] = inst.rid
        body["meta"] = meta
        ctx.scope = inst.scope
        ctx.segment = msg.segments[inst.anchor] if inst.anchor is not None else None
        for rule in res.rules:
            rule.apply(ctx, body)
        entries.append({"fullUrl": f"urn:uuid:{inst.rid}", "resource": body, "request": _request(res, inst, body)})
    ctx.scope = ctx.segment = None
    entries.extend(ctx.emitted.values())
    if spec.provenance:
        entries.append(_provenance(spec, ctx, meta, entries, sender, control_id))
    timestamp = v2_instant(msg.msh.field(7).text, ctx.tz) or instant(ctx.now)
    return {
        "resourceType": "Bundle",
        "id": resource_id(ctx.namespace, "Bundle", sender, control_id),
        "meta": meta,
        "identifier": {"system": f"{ctx.base}/sid/hl7v2-control-id/{slug(sender)}", "value": control_id},
        "type": "transaction",
        "timestamp": timestamp,
        "entry": entries,
    }


def _request(res: CompiledResource, inst: Instance, body: dict[str, Any]) -> dict[str, str]:
    rid = inst.rid
    if res.request == "put":
        return {"method": "PUT", "url": f"{res.type}/{rid}"}
    key = next((k for k in inst.key if "|" in k), "")
    if not key:
        ident = (body.get("identifier") or [{}])[0]
        key = f"{ident.get('system', '')}|{ident.get('value', '')}" if ident.get("value") else ""
    if not key:
        body["id"] = rid
        return {"method": "PUT", "url": f"{res.type}/{rid}"}
    search = "identifier=" + quote(key, safe=":/|.-_~")
    if res.request == "conditional-update":  # the sender is the master of this resource: its latest wins
        return {"method": "PUT", "url": f"{res.type}?{search}"}
    return {"method": "POST", "url": res.type, "ifNoneExist": search}


def _provenance(spec: MappingSpec, ctx: Context, meta: dict[str, Any], entries: list[dict[str, Any]],
                sender: str, control_id: str) -> dict[str, Any]:
    pid = resource_id(ctx.namespace, "Provenance", sender, control_id, spec.name)
    resource = {
        "resourceType": "Provenance",
        "id": pid,
        "meta": meta,
        "target": [{"reference": e["fullUrl"]} for e in entries],
        "recorded": instant(ctx.now),
        "activity": {"coding": [ACTIVITY]},
        "agent": [{"type": {"coding": [ASSEMBLER]}, "who": {"display": f"Wasla mapping {spec.name} {spec.version}"}}],
        "entity": [{"role": "source", "what": {
            "identifier": {"system": f"{ctx.base}/sid/hl7v2-control-id/{slug(sender)}", "value": control_id},
            "display": f"HL7 v2 {ctx.msg.message_type} message"}}],
    }
    request = {"method": "PUT", "url": f"Provenance/{pid}"}
    return {"fullUrl": f"urn:uuid:{pid}", "resource": resource, "request": request}
