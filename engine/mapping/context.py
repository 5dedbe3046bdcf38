"""What a conversion may read besides the message: settings, clock, vocabularies, its scope, and where
warnings and side resources go."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from engine.hl7v2.er7 import Message, Segment
from engine.hl7v2.groups import Group
from engine.ids import resource_id
from engine.nomenclature import Registry
from engine.nomenclature.vocab import VocabMap

__all__ = ["Context", "Instance"]


@dataclass(slots=True)
class Instance:
    """One resource the message makes: its id, and where in the message it was made from."""

    name: str
    rid: str
    scope: Group | None            # None: the whole message
    anchor: int | None             # index of the segment it was made from
    key: list[str]


@dataclass
class Context:
    """Everything one conversion reads besides the message (settings, clock, vocabularies, the channel's
    policy, earlier resources) and everything it collects (warnings, instances, emitted resources,
    per-message memos). One per message, used by one thread.
    """

    msg: Message
    base: str
    namespace: uuid.UUID
    tz: ZoneInfo
    now: datetime
    vocab: Callable[[str], VocabMap]
    registry: Registry | None = None
    policy: dict[str, str] = field(default_factory=dict)   # the channel's data-quality choices
    # what this engine last wrote of a resource ("Encounter/<id>") for this patient before this message:
    # given by the transform (the journal), None where a conversion stands alone (`wasla convert`)
    earlier: Callable[[str], dict[str, Any] | None] | None = None
    requests: dict[str, str] = field(default_factory=dict)  # resource name → request kind, a CSV map's choice
    source: str = ""
    rule: str = ""                   # the rule and field being converted, for converters' warnings
    field_spec: str = ""
    segment: Segment | None = None
    scope: Group | None = None
    touched: set[int] = field(default_factory=set)   # indexes of the segments some rule read (coverage)
    # the resource's `following:` segments and the segment it is made from: those are read after it first
    following: frozenset[str] = frozenset()
    anchor: Segment | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[str, list[Instance]] = field(default_factory=dict)
    emitted: dict[str, dict[str, Any]] = field(default_factory=dict)
    emitted_urls: dict[tuple[str, ...], str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    cx_keys: dict[int, str] = field(default_factory=dict)   # id(Field) → "system|value", per message
    refs_seen: dict[tuple[str, int, int, str], list[Instance]] = field(default_factory=dict)
    # per-message values converters work out once: MSH-7's zone ("zone"), OBX-6 fields already warned
    memo: dict[str, Any] = field(default_factory=dict)

    def warn(self, code: str, rule: str, field_path: str, detail: str = "", **extra: str) -> None:
        """Record what the mapping could not honour. Field paths and codes only: no values, no PHI."""
        item = {"code": code, "rule": rule, "field": field_path}
        if detail:
            item["detail"] = detail
        item.update(extra)
        self.warnings.append(item)

    def refs(self, name: str) -> list[Instance]:
        """Instances of resource `name` this scope can see.

        Those made inside the scope (a report's observations), else those reachable without
        entering another occurrence of a repeating group: an Observation sees its message's
        Patient, but never the Specimen of the next ORDER_OBSERVATION.
        """
        found = self.instances.get(name)
        if not found:
            return []
        tree = self.msg.tree
        scope = self.scope or tree.root
        memo_key = (name, scope.start, scope.end, scope.name)
        known = self.refs_seen.get(memo_key)
        if known is not None:
            return known
        self.refs_seen[memo_key] = visible = self._visible(found, tree, scope)
        return visible

    def _visible(self, found: list[Instance], tree: Any, scope: Group) -> list[Instance]:
        inside = [i for i in found if i.anchor is not None and scope.contains(i.anchor)]
        if inside:
            return inside
        visible = [i for i in found if i.anchor is not None and _reachable(tree.of_segment[i.anchor], scope)]
        return visible or [i for i in found if i.anchor is None]

    def emit(self, rtype: str, key: list[str], body: dict[str, Any], identifier: str | None) -> dict[str, str]:
        """Add a shared resource (a Practitioner from an XCN …) once; return a reference to it.

        The same key anywhere in the message is the same resource: PV1-7, ORC-12 and OBR-16
        naming one doctor make one Practitioner.
        """
        memo = (rtype, *key)
        url = self.emitted_urls.get(memo)
        if url is not None:
            return {"reference": url}
        rid = resource_id(self.namespace, rtype, *key)
        url = self.emitted_urls[memo] = f"urn:uuid:{rid}"
        if url not in self.emitted:
            resource = {"resourceType": rtype, **({"id": rid} if identifier is None else {}), "meta": self.meta,
                        **body}
            if identifier:
                request = {"method": "POST", "url": rtype,
                           "ifNoneExist": "identifier=" + quote(identifier, safe=":/|.-_~")}
            else:
                request = {"method": "PUT", "url": f"{rtype}/{rid}"}
            self.emitted[url] = {"fullUrl": url, "resource": resource, "request": request}
        return {"reference": url}


def _reachable(target: Group, scope: Group) -> bool:
    """True when the way from `scope`'s nearest common ancestor down to `target` crosses no repeating group."""
    g: Group | None = target
    while g is not None and not g.contains(scope.start):
        if g.repeats:
            return False
        g = g.parent
    return True
