"""Lineage: for each FHIR element a conversion wrote, the HL7 v2 fields it was read from.

Off the hot path. The message's segments are switched to a subclass that logs every field
read, and every rule of the mapping is wrapped to note which elements it added; the reads made
while a rule ran are that rule's sources. The same log gives the exact list of valued fields no
rule read. The conversion itself is the ordinary one: same closures, same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.hl7v2.er7 import Message, Segment
from engine.hl7v2.reference import field_info, set_id_fields
from engine.mapping.bundle import build_bundle
from engine.mapping.compiled import CompiledRule, MappingSpec
from engine.mapping.context import Context
from engine.mapping.coverage import ENGINE_READS

__all__ = ["Explanation", "Lineage", "explain"]

Read = tuple[int, str, int]   # (segment sequence, segment id, field)


@dataclass(frozen=True)
class Lineage:
    """One FHIR element a conversion wrote, with the v2 fields and segments it was read from and the rule
    that wrote it. Immutable.
    """

    resource: str        # resource type
    full_url: str
    element: str         # e.g. identifier[1], name[0], valueQuantity
    sources: tuple[str, ...]   # e.g. ("PID-3", "MSH-4"); () for a fixed value or a reference
    rule: str
    segments: tuple[int, ...]  # sequence numbers of the segments read (1 = MSH)


@dataclass(frozen=True)
class Explanation:
    """What `wasla convert --explain` reports for one message: the Bundle, each element's lineage, the
    valued fields no rule read, and the warnings. Immutable.
    """

    bundle: dict[str, Any]
    lineage: list[Lineage]
    not_read: list[str]              # valued fields (or whole segments) no rule read
    warnings: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"lineage": [dataclasses.asdict(x) for x in self.lineage], "not_read": self.not_read,
                "warnings": self.warnings}


class _Log:
    def __init__(self) -> None:
        self.reads: list[Read] = []


def _tracing(log: _Log) -> type[Segment]:
    class Traced(Segment):
        __slots__ = ()

        def repetitions(self, n: int) -> list[Any]:
            log.reads.append((self.sequence, self.name, n))
            return Segment.repetitions(self, n)

        def valued(self, n: int) -> list[Any]:
            log.reads.append((self.sequence, self.name, n))
            return Segment.valued(self, n)

        def field_raw(self, n: int) -> str:
            log.reads.append((self.sequence, self.name, n))
            return Segment.field_raw(self, n)

    return Traced


def _leaves(node: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, list):
                for i, item in enumerate(v):
                    out.update(_leaves(item, (*path, f"{k}[{i}]")))
            else:
                out.update(_leaves(v, (*path, k)))
    else:
        out[path] = node
    return out


def _label(read: Read) -> str:
    return f"{read[1]}-{read[2]}"


def explain(spec: MappingSpec, msg: Message, ctx: Context) -> Explanation:
    """Convert `msg` as usual, recording for each element written the fields read to write it."""
    log = _Log()
    traced = _tracing(log)
    for seg in msg.segments:
        seg.__class__ = traced
    lineage: list[Lineage] = []

    def wrap(res_name: str, res_type: str, rule: CompiledRule) -> CompiledRule:
        depth = rule.target.count(".") + 1

        def apply(c: Context, body: dict[str, Any]) -> bool:
            before, emitted = _leaves(body), set(c.emitted)
            mark = len(log.reads)
            wrote = rule.apply(c, body)
            reads = _unique(log.reads[mark:])
            url = _url_of(c, res_name)
            changed = [p for p, v in _leaves(body).items() if before.get(p, _MISSING) != v]
            for element in _unique([p[:depth] for p in changed]):
                lineage.append(_row(res_type, url, ".".join(element), reads, rule.label))
            for new in (u for u in c.emitted if u not in emitted):
                side = c.emitted[new]["resource"]
                lineage.append(_row(side["resourceType"], new, "(made from)", reads, rule.label))
            return wrote

        return CompiledRule(rule.label, rule.target, apply, rule.sourced)

    shadow = dataclasses.replace(spec, resources=tuple(
        dataclasses.replace(r, rules=tuple(wrap(r.name, r.type, rule) for rule in r.rules))
        for r in spec.resources))
    bundle = build_bundle(shadow, ctx)
    read = {(name, n) for _, name, n in log.reads}
    return Explanation(bundle, lineage, _not_read(msg, read), ctx.warnings)


def _url_of(c: Context, res_name: str) -> str:
    """The fullUrl of the resource being built: the instance of that name made at the current place."""
    for inst in c.instances.get(res_name, []):
        anchor = c.msg.segments[inst.anchor] if inst.anchor is not None else None
        if inst.scope is c.scope and anchor is c.segment:
            return f"urn:uuid:{inst.rid}"
    return ""


_MISSING = object()


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _row(res_type: str, url: str, element: str, reads: list[Read], rule: str) -> Lineage:
    return Lineage(res_type, url, element, tuple(_unique([_label(r) for r in reads])), rule,
                   tuple(_unique([r[0] for r in reads])))


def _not_read(msg: Message, read: set[tuple[str, int]]) -> list[str]:
    enc = msg.encoding
    blank = " " + enc.component + enc.repetition + enc.subcomponent
    structural = set_id_fields() | ENGINE_READS
    out: list[str] = []
    for seg in msg.segments:
        fields = Segment.raw_fields(seg)
        valued = [n for n, raw in enumerate(fields) if n and raw and raw != '""' and raw.strip(blank)
                  and (seg.name, n) not in structural]
        if not valued:
            continue
        if not any((seg.name, n) in read for n in range(1, len(fields))):
            if seg.name not in out:
                out.append(seg.name)
            continue
        out.extend(p for p in (f"{seg.name}-{n}" for n in valued if (seg.name, n) not in read) if p not in out)
    return out


def describe(path: str, version: str) -> str:
    """`PID-19` → `PID-19 (ssn number patient)`; a segment id stays as it is."""
    seg, _, n = path.partition("-")
    info = field_info(seg, int(n), version) if n.isdigit() else None
    return f"{path} ({info[1]})" if info and info[1] else path
