"""One message → one FHIR R4 transaction Bundle.

Conditional create by identifier for shared resources (Patient…), PUT by deterministic id for
the rest, a Provenance naming the source message, and lineage in `meta.source`/`meta.tag`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from engine.errors import MappingError
from engine.hl7v2.er7 import Message
from engine.hl7v2.groups import Group
from engine.ids import resource_id
from engine.mapping.compiled import CompiledResource, MappingSpec, is_segment_id
from engine.mapping.context import Context, Instance
from engine.mapping.keys import key_part, sender_namespace
from engine.mapping.systems import slug
from engine.mapping.timestamps import v2_instant

__all__ = ["build_bundle", "instant"]

ACTIVITY = {"system": "http://hl7.org/fhir/uv/v2mappings/CodeSystem/provenance-activity-type-v2-to-fhir",
            "code": "v2-fhir-transformation", "display": "V2 To FHIR Transformation"}
ASSEMBLER = {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
             "code": "assembler", "display": "Assembler"}


def instant(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sender(msg: Message) -> str:
    return msg.sending_facility or msg.sending_application or "unknown"


def _message_key(msg: Message) -> str:
    """What names this message among its sender's: MSH-10, else (no control id) a hash of its text,
    so two messages without MSH-10 never share a Bundle or a Provenance id."""
    return msg.control_id or "sha1:" + hashlib.sha1(msg.text.encode()).hexdigest()


def _instances(res: CompiledResource, ctx: Context) -> list[tuple[Group | None, int | None]]:
    """Where each resource of this kind is made from: (scope, anchor segment index)."""
    tree = ctx.msg.tree
    if res.for_each:
        group, slash, seg = res.for_each.partition("/")
        if slash:  # GROUP/SEG: the SEG segments that belong to a GROUP itself (an OBX under its SPM)
            return [(tree.of_segment[i], i) for i in tree.positions.get(seg, []) if tree.of_segment[i].name == group]
        if is_segment_id(res.for_each):
            return [(tree.of_segment[i], i) for i in tree.positions.get(res.for_each, [])]
        return [(g, g.segments[0] if g.segments else g.start) for g in tree.by_name.get(res.for_each, [])]
    if res.segment:
        found = tree.positions.get(res.segment)
        return [(tree.of_segment[found[0]], found[0])] if found else []
    return [(None, None)]


def _resource_id(res: CompiledResource, ctx: Context, ordinal: int) -> tuple[str, list[str]]:
    parts = [key_part(p, ctx) for p in res.key]
    if all(v or p.optional for p, v in zip(res.key, parts, strict=True)):
        return resource_id(ctx.namespace, res.type, *parts), parts
    if res.id_fallback == "control_id":
        ctx.warn("BUSINESS_KEY_MISSING", res.name, ",".join(p.spec for p in res.key),
                 "identified by sender and control id instead" if ctx.msg.control_id
                 else "no control id either: identified by sender and the message's hash")
        return resource_id(ctx.namespace, res.type, "msg", sender_namespace(ctx), _message_key(ctx.msg), res.name,
                           str(ordinal)), []
    missing = ", ".join(p.spec for p, v in zip(res.key, parts, strict=True) if not v and not p.optional)
    raise MappingError(f"cannot identify the {res.type}: {missing} not valued", rule=res.name, field=missing)


def build_bundle(spec: MappingSpec, ctx: Context) -> dict[str, Any]:
    msg = ctx.msg
    if msg.message_type not in spec.accepts:
        raise MappingError(f"unsupported message type {msg.message_type or '(none)'}: mapping {spec.name} accepts "
                           f"{', '.join(spec.accepts)}", field="MSH-9")
    sender = _sender(msg)
    control_id = msg.control_id
    meta = {"source": f"{ctx.base}/hl7v2/{slug(sender)}" + (f"#{control_id}" if control_id else ""),
            "tag": [{"system": f"{ctx.base}/CodeSystem/wasla-mapping", "version": spec.version,
                     "code": spec.name}]}
    ctx.meta = meta
    made: list[tuple[CompiledResource, Instance]] = []
    covered: set[int] = set()   # segment indexes some resource was made from (or deliberately not: `when`)
    anchors: set[str] = set()   # names of the segments resources are made from
    for res in spec.resources:  # every id first: a rule may reference any resource of the message
        seen: dict[str, int] = {}
        for ordinal, (scope, anchor) in enumerate(_instances(res, ctx), start=1):
            ctx.scope, ctx.segment = scope, msg.segments[anchor] if anchor is not None else None
            ctx.following, ctx.anchor = res.following, ctx.segment
            if anchor is not None:
                ctx.touched.add(anchor)
                grouped = res.for_each and not is_segment_id(res.for_each) and "/" not in res.for_each
                covered.update(scope.segments if grouped and scope is not None else (anchor,))
                anchors.add(msg.segments[anchor].name)
            if res.when is not None and not res.when(ctx):
                continue
            rid, key = _resource_id(res, ctx, ordinal)
            repeat = rid in seen
            if repeat and not res.merge_duplicates:  # one business key twice: keep both, tell the operator
                seen[rid] += 1  # numbered among the occurrences of this key, not of the message: stable
                ctx.warn("DUPLICATE_BUSINESS_KEY", res.name, res.for_each or res.segment or "",
                         f"occurrence {ordinal} has the key of an earlier one")
                rid = resource_id(ctx.namespace, res.type, *key, f"occurrence-{seen[rid]}")
            seen.setdefault(rid, 1)
            inst = Instance(res.name, rid, scope, anchor, key)
            ctx.instances.setdefault(res.name, []).append(inst)
            if not repeat or not res.merge_duplicates:  # a merged repeat is referenced, not written twice
                made.append((res, inst))
    kinds = anchors | _segment_kinds(spec)
    unmade = _report_unmade(ctx, covered, kinds)
    if not made:
        sources = sorted({r.for_each or r.segment or r.name for r in spec.resources})
        raise MappingError(f"nothing to convert: {msg.message_type} carries none of {', '.join(sources)}",
                           field="message")
    entries: list[dict[str, Any]] = []
    searched: set[str] = set()
    for res, inst in made:
        kind = ctx.requests.get(res.name, res.request)
        body: dict[str, Any] = {"resourceType": res.type}
        if kind == "put":
            body["id"] = inst.rid
        body["meta"] = meta
        ctx.scope = inst.scope
        ctx.segment = msg.segments[inst.anchor] if inst.anchor is not None else None
        ctx.following, ctx.anchor = res.following, ctx.segment
        for rule in res.rules:
            rule.apply(ctx, body)
        if res.merge_duplicates:
            _merge_references(res, inst, body, ctx)
        if res.keep_earlier and kind == "put":
            _keep_earlier(res, inst.rid, body, ctx)
        request = _request(res, kind, inst, body)
        search = request["url"] + request.get("ifNoneExist", "") if request["method"] == "POST" or "?" in request[
            "url"] else ""
        if search and search in searched:  # the same identifier twice in one message (numbered duplicates): by id
            body["id"] = inst.rid
            request = {"method": "PUT", "url": f"{res.type}/{inst.rid}"}
        elif search:
            searched.add(search)
        entries.append({"fullUrl": f"urn:uuid:{inst.rid}", "resource": body, "request": request})
    ctx.scope = ctx.segment = ctx.anchor = None
    ctx.following = frozenset()
    if spec.coverage is not None:
        for index, path, detail in spec.coverage.unread(msg, ctx.touched):
            if index not in unmade:  # those _report_unmade named already
                ctx.warn("SEGMENT_NOT_MAPPED", "", path, detail)
    entries.extend(ctx.emitted.values())
    if spec.provenance:
        entries.append(_provenance(spec, ctx, meta, entries, sender, control_id))
    try:
        timestamp = v2_instant(msg.msh.field(7).text, ctx.tz) or instant(ctx.now)
    except MappingError as exc:  # the message's own time: the Bundle needs it, so it fails, naming MSH-7
        raise MappingError(exc.message, field="MSH-7") from exc
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": resource_id(ctx.namespace, "Bundle", sender, _message_key(msg)),
        "meta": meta,
    }
    if control_id:
        bundle["identifier"] = {"system": f"{ctx.base}/sid/hl7v2-control-id/{slug(sender)}", "value": control_id}
    bundle.update(type="transaction", timestamp=timestamp, entry=entries)
    return bundle


def _merge_references(res: CompiledResource, inst: Instance, body: dict[str, Any], ctx: Context) -> None:
    """A resource made again under the same key (`duplicates: merge`: one order on two specimens in an OUL^R22)
    is written once; the lists of references its other occurrences make (the second tube in `specimen`, the second
    tube's result in `result`) are added to it, so merging never drops what only the repeat points to."""
    segments = ctx.msg.segments
    for other in ctx.instances.get(res.name, []):
        if other is inst or other.rid != inst.rid:
            continue
        ctx.scope = other.scope
        ctx.segment = ctx.anchor = segments[other.anchor] if other.anchor is not None else None
        extra: dict[str, Any] = {}
        for rule in res.rules:
            if not rule.sourced and rule.target.endswith("[]"):
                rule.apply(ctx, extra)
        for element, items in extra.items():
            have = body.setdefault(element, [])
            have.extend(item for item in items if item not in have)
    ctx.scope = inst.scope
    ctx.segment = ctx.anchor = segments[inst.anchor] if inst.anchor is not None else None


def _segment_kinds(spec: MappingSpec) -> set[str]:
    """The segments the mapping makes resources from, whether or not this message made any: an OBX in a group
    the mapping does not read (OMG's PRIOR_RESULT) is named even when no OBSERVATION made an Observation, since
    by path its fields count as read by the Observation rules."""
    kinds: set[str] = set()
    for res in spec.resources:
        if res.segment:
            kinds.add(res.segment)
        elif res.for_each and "/" in res.for_each:
            kinds.add(res.for_each.partition("/")[2])
        elif res.for_each and is_segment_id(res.for_each):
            kinds.add(res.for_each)
    return kinds


def _report_unmade(ctx: Context, covered: set[int], kinds: set[str]) -> set[int]:
    """An occurrence of a segment that makes resources, from which none was made (a second PID where the
    mapping takes one, an OBX outside any group the mapping knows) is named, never dropped in silence.
    Returns the indexes named, so that the per-occurrence coverage does not name them twice."""
    segments = ctx.msg.segments
    seen: dict[str, int] = {}
    named: set[int] = set()
    for i, seg in enumerate(segments):
        name = seg.name
        if name not in kinds:
            continue
        seen[name] = n = seen.get(name, 0) + 1
        if i not in covered:
            prior = ctx.msg.tree.of_segment[i].name == "PATIENT_PRIOR"  # OMG/OML PRIOR_RESULT: mapped to nothing
            if name == "PID" and not prior:  # what follows it belongs to that patient: filed under the first one
                raise MappingError(f"PID[{n}] (segment {i + 1}) is a second patient where {ctx.msg.message_type} "
                                   "holds one: its orders or results would be filed under the first patient; "
                                   "the sender must send one message per patient", field=f"PID[{n}]")
            ctx.warn("SEGMENT_NOT_MAPPED", "", f"{name}[{n}]", f"segment {i + 1}: no resource made from it")
            named.add(i)
    return named


def _keep_earlier(res: CompiledResource, rid: str, body: dict[str, Any], ctx: Context) -> None:
    """An element the message leaves unstated (Encounter status `unknown` on an A08 without PV1-2) keeps
    what this engine last wrote for this resource, so a PUT that replaces the resource never regresses it."""
    for element, unstated in res.keep_earlier:
        if body.get(element) != unstated:
            continue
        before = ctx.earlier(f"{res.type}/{rid}") if ctx.earlier is not None else None
        value = before.get(element) if before else None
        if value is None or value == unstated:
            ctx.warn("NOT_STATED", res.name, element, f"the message does not state it and nothing earlier is known: "
                     f"{unstated}")
            continue
        body[element] = value
        ctx.warn("KEPT_FROM_EARLIER", res.name, element,
                 "the message does not state it: the value this engine last wrote for this resource is kept")


def _search_key(inst: Instance, body: dict[str, Any]) -> str:
    """The `system|value` a conditional request searches on: the identifier the business key names (a CX key
    is already system|value; an EI key is namespace|value, matched by its value), else the first identifier."""
    found = body.get("identifier")
    idents = [f"{i['system']}|{i['value']}" for i in (found if isinstance(found, list) else [found] if found else [])
              if i.get("system") and i.get("value")]
    for k in inst.key:
        if k in idents:
            return k
        value = k.rpartition("|")[2]
        match = next((i for i in idents if value and i.rpartition("|")[2] == value), None)
        if match:
            return match
    return idents[0] if idents else ""


def _request(res: CompiledResource, kind: str, inst: Instance, body: dict[str, Any]) -> dict[str, str]:
    rid = inst.rid
    if kind == "put":
        return {"method": "PUT", "url": f"{res.type}/{rid}"}
    key = _search_key(inst, body)
    if not key:
        body["id"] = rid
        return {"method": "PUT", "url": f"{res.type}/{rid}"}
    search = "identifier=" + quote(key, safe=":/|.-_~")
    if kind == "conditional-update":  # the sender is the master of this resource: its latest wins
        return {"method": "PUT", "url": f"{res.type}?{search}"}
    return {"method": "POST", "url": res.type, "ifNoneExist": search}


def _provenance(spec: MappingSpec, ctx: Context, meta: dict[str, Any], entries: list[dict[str, Any]],
                sender: str, control_id: str) -> dict[str, Any]:
    pid = resource_id(ctx.namespace, "Provenance", sender, _message_key(ctx.msg), spec.name)
    what: dict[str, Any] = {"display": f"HL7 v2 {ctx.msg.message_type} message"}
    if control_id:
        what = {"identifier": {"system": f"{ctx.base}/sid/hl7v2-control-id/{slug(sender)}", "value": control_id},
                **what}
    resource = {
        "resourceType": "Provenance",
        "id": pid,
        "meta": meta,
        "target": [{"reference": e["fullUrl"]} for e in entries],
        "recorded": instant(ctx.now),
        "activity": {"coding": [ACTIVITY]},
        "agent": [{"type": {"coding": [ASSEMBLER]}, "who": {"display": f"Wasla mapping {spec.name} {spec.version}"}}],
        "entity": [{"role": "source", "what": what}],
    }
    request = {"method": "PUT", "url": f"Provenance/{pid}"}
    return {"fullUrl": f"urn:uuid:{pid}", "resource": resource, "request": request}
