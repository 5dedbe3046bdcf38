"""Segment groups (PATIENT_RESULT, ORDER_OBSERVATION, OBSERVATION …) from hl7apy's reference structures.

hl7apy's own grouping drops Z-segments and lets a Z-segment in the middle split the tree, so the
next OBX loses its OBR (see research/anchors-mapping.md §3.4). We only borrow its message
structures: each is compiled once per (version, structure) into a small tree, and segments are
placed greedily, the way HAPI does: a segment goes to the innermost open group that can still
take it, else to an enclosing one. A Z-segment, or a segment the structure does not expect, stays
in the innermost open group, so it is kept and never breaks the grouping of what follows.

Groups are contiguous spans of the message's segments; looking a segment up "in scope" is a
bisect in a per-name index, not a tree walk.
"""

from __future__ import annotations

import bisect
import csv
import importlib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

__all__ = ["Group", "GroupTree", "StructureNode", "build_tree", "structure"]

_STRUCTURES_CSV = Path(__file__).with_name("event_structures.csv")
_VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"]


@dataclass(frozen=True, slots=True)
class StructureNode:
    """One node of a compiled reference structure: a segment or a group, with its cardinality, its
    children and the segment ids that can open it. Immutable, compiled once per (version, structure).
    """

    name: str                        # segment id, or group name without the structure prefix
    is_group: bool
    min: int
    max: int                         # -1: unbounded
    children: tuple[StructureNode, ...] = ()
    first: frozenset[str] = frozenset()   # segment ids that can open this group


@dataclass(slots=True, eq=False)
class Group:
    """One occurrence of a segment group in a message: a contiguous span of segment indexes, its own
    segments, its subgroups and its parent.
    """

    name: str                        # "" for the message itself
    parent: Group | None
    start: int
    end: int
    repeats: bool = False            # the structure allows several: each occurrence is its own world
    segments: list[int] = field(default_factory=list)   # indexes of this group's own segments
    children: list[Group] = field(default_factory=list)

    def ancestors(self) -> list[Group]:
        out: list[Group] = []
        g: Group | None = self
        while g is not None:
            out.append(g)
            g = g.parent
        return out

    def contains(self, index: int) -> bool:
        return self.start <= index < self.end


@dataclass(slots=True)
class GroupTree:
    """A message's segments placed in groups: the root group, each segment's group, and per-name indexes
    so that finding a segment in scope is a bisect, not a tree walk. Memoises `nearest` per message.
    """

    structure: str                   # e.g. ORU_R01, or "" when no reference structure was found
    root: Group
    of_segment: list[Group]          # the group each segment belongs to
    positions: dict[str, list[int]]  # segment id → indexes, in message order
    by_name: dict[str, list[Group]]  # group name → instances, in message order
    names: tuple[str, ...]           # segment ids, in message order
    _near: dict[tuple[str, int], int | None] = field(default_factory=dict)

    def first_in(self, name: str, group: Group) -> int | None:
        """Index of the first `name` segment inside `group`'s span, or None."""
        pos = self.positions.get(name)
        if not pos:
            return None
        i = bisect.bisect_left(pos, group.start)
        return pos[i] if i < len(pos) and pos[i] < group.end else None

    def nearest(self, name: str, scope: Group) -> int | None:
        """The `name` segment closest in scope: in `scope`, else in each enclosing group in turn (memoised:
        every rule of a resource asks for its segments from the same scope)."""
        key = (name, id(scope))
        near = self._near
        if key in near:
            return near[key]
        g: Group | None = scope
        found = None
        while g is not None:
            found = self.first_in(name, g)
            if found is not None:
                break
            g = g.parent
        near[key] = found
        return found

    def own(self, name: str, group: Group) -> list[int]:
        """Every `name` segment of `group` itself or of a subgroup that cannot repeat (ORM^O01's ORDER_DETAIL
        holds the order's OBR and NTE), never of a repeating one (each OBSERVATION is its own world)."""
        names = self.names
        found = [i for i in group.segments if names[i] == name]
        for child in group.children:
            if not child.repeats:
                found.extend(self.own(name, child))
        return sorted(found) if len(found) > 1 else found


@cache
def _event_structures() -> dict[str, str]:
    with _STRUCTURES_CSV.open(encoding="utf-8", newline="") as fh:
        return {row["event"]: row["structure"] for row in csv.DictReader(fh)}


def structure_name(msh9_1: str, msh9_2: str, msh9_3: str) -> str:
    """MSH-9.3, else the structure HL7 table 0354 gives the event (A04 → ADT_A01), else CODE_EVENT.

    A sender writing the event in MSH-9.3 (`ADT_A40`, which is no structure) gets the event's structure
    (ADT_A39): read flat, an A40's two merges would not be told apart."""
    key = (msh9_3 or f"{msh9_1}_{msh9_2}").upper()
    return _event_structures().get(key, key)


def _compile(node: Any, prefix: str) -> StructureNode:
    name, struct, (lo, hi), kind = node[0], node[1], node[2], node[3]
    if kind == "SEG":
        return StructureNode(name, False, lo, hi)
    children = tuple(_compile(c, prefix) for c in struct[1])
    return StructureNode(name.removeprefix(prefix), True, lo, hi, children, _first(children))


def _first(children: tuple[StructureNode, ...]) -> frozenset[str]:
    out: set[str] = set()
    for c in children:
        out |= {c.name} if not c.is_group else c.first
        if c.min > 0:
            break
    return frozenset(out)


def _seg(name: str, lo: int = 0, hi: int = 1) -> StructureNode:
    return StructureNode(name, False, lo, hi)


def _local(name: str, head: tuple[StructureNode, ...], group: str, body: tuple[StructureNode, ...],
           repeat: int) -> StructureNode:
    """A structure whose patients hl7apy lays out flat, each patient's segments made into a repeating group."""
    inner = StructureNode(group, True, 1, repeat, body, _first(body))
    children = (*head, inner)
    return StructureNode(name, True, 1, 1, children, _first(children))


_HEAD = (_seg("MSH", 1), _seg("SFT", 0, -1), _seg("UAC"), _seg("EVN", 1))
# Structures whose patients follow one another without a group in the standard (HL7 v2.5 ch. 3): read flat,
# every PV1 (or MRG) would see every PID, and a swap's Encounter would name both patients. Each PID opens
# its own PATIENT group here, the way ADT_A39 groups a merge's PID, PD1, MRG and PV1.
_LOCAL_STRUCTURES = {
    # A17 swap patients: PID PD1 PV1 PV2 DB1 OBX, twice (each patient with the visit they now hold)
    "ADT_A17": _local("ADT_A17", _HEAD, "PATIENT", (_seg("PID", 1), _seg("PD1"), _seg("ARV", 0, -1),
                      _seg("PV1", 1), _seg("PV2"), _seg("DB1", 0, -1), _seg("OBX", 0, -1)), 2),
    # A24 link / A37 unlink patient information: PID PD1 PV1 DB1, twice (the two records linked or unlinked);
    # read flat, each PV1 would see both patients
    "ADT_A24": _local("ADT_A24", _HEAD, "PATIENT", (_seg("PID", 1), _seg("PD1"), _seg("PV1"), _seg("DB1", 0, -1)), 2),
    "ADT_A37": _local("ADT_A37", _HEAD, "PATIENT", (_seg("PID", 1), _seg("PD1"), _seg("PV1"), _seg("DB1", 0, -1)), 2),
    # A30/A47: PID PD1 MRG; senders repeat the pair for several identifier changes, as an A40 does its merges
    "ADT_A30": _local("ADT_A30", _HEAD, "PATIENT", (_seg("PID", 1), _seg("PD1"), _seg("ARV", 0, -1),
                      _seg("MRG", 1)), -1),
}


# Structures whose older versions have no group for what senders of those versions send anyway: read with
# the older shape, an ADT^A60 v2.5.1 (IAM only) has every allergy's NTE at the root, each IAM's notes seen by
# every allergy; an MDM v2.3 (TXA, OBX) has its ORC/OBR/NTE at the root, the second order reading the first's
# OBR. The newer shape is a superset of the older one: the version from which the standard groups them.
_GROUPED_FROM = {"ADT_A60": "2.8", "MDM_T01": "2.7", "MDM_T02": "2.7"}


@cache
def structure(version: str, name: str) -> StructureNode | None:
    """The compiled reference structure, from the message's version or the nearest one hl7apy has (the
    few that hl7apy lays out flat although they carry several patients: `_LOCAL_STRUCTURES`; those whose
    older versions lack the groups: `_GROUPED_FROM`)."""
    if name in _LOCAL_STRUCTURES:
        return _LOCAL_STRUCTURES[name]
    grouped = _GROUPED_FROM.get(name)
    if grouped is not None and (version not in _VERSIONS or _VERSIONS.index(version) < _VERSIONS.index(grouped)):
        version = grouped
    order = _VERSIONS.index(version) if version in _VERSIONS else _VERSIONS.index("2.5.1")
    candidates = [_VERSIONS[order], *reversed(_VERSIONS[:order]), *_VERSIONS[order + 1:]]
    for v in candidates:
        try:
            messages = importlib.import_module(f"hl7apy.v{v.replace('.', '_')}.messages").MESSAGES
        except ImportError:
            continue
        ref = messages.get(name)
        if ref is not None:
            children = tuple(_compile(c, name + "_") for c in ref[1])
            node = StructureNode(name, True, 1, 1, children, _first(children))
            return _standard_names(node, name) if v == "2.5.1" else node
    return None


def _standard_names(node: StructureNode, name: str) -> StructureNode:
    """hl7apy's v2.5.1 names some groups after their segments (OUL_R22's RESULT is `OBXTCDSIDNTE_SUPPGRP`,
    MDM_T02's OBSERVATION `OBXNTE_SUPPGRP`, ORM_O01's ORDER_DETAIL `OBRRQDRQ1RXOODSODT_SUPPGRP`): a mapping's
    `for_each: RESULT` would find nothing in a 2.5.1 message. Such a group takes the standard's name, read from
    hl7apy's v2.5 structure of the same message where the two have the same shape."""
    if not _has_suppgrp(node):
        return node
    try:
        ref = importlib.import_module("hl7apy.v2_5.messages").MESSAGES.get(name)
    except ImportError:
        return node
    if ref is None:
        return node
    children = tuple(_compile(c, name + "_") for c in ref[1])
    return _rename(node, StructureNode(name, True, 1, 1, children, _first(children)))


def _has_suppgrp(node: StructureNode) -> bool:
    return "SUPPGRP" in node.name or any(_has_suppgrp(c) for c in node.children)


def _shape(node: StructureNode) -> tuple[Any, ...]:
    return (node.is_group or node.name, node.min, node.max, tuple(_shape(c) for c in node.children))


def _rename(node: StructureNode, standard: StructureNode) -> StructureNode:
    if _shape(node) != _shape(standard):
        return node
    children = tuple(_rename(c, s) for c, s in zip(node.children, standard.children, strict=True))
    name = standard.name if node.is_group and "SUPPGRP" in node.name else node.name
    return StructureNode(name, node.is_group, node.min, node.max, children, node.first)


# A group some segment may open by the structure, but which reads better as a new occurrence of an enclosing
# group: OMG_O19's and OML_O21's PRIOR_RESULT (earlier results sent with an order) may begin with its ORDER_PRIOR's
# ORC, so a second order's ORC would be taken for a prior result of the first. Only a PID or PV1 (PATIENT_PRIOR,
# PATIENT_VISIT_PRIOR) opens a PRIOR_RESULT; once it is open, its ORC opens ORDER_PRIOR as the standard says.
# FHIR-Converter's OMG_O19.liquid and OML_O21.liquid likewise take every ORC for an order.
_NOT_OPENED_BY = frozenset({("PRIOR_RESULT", "ORC")})
# A group whose opener is also another group's, told apart by a segment it requires: OUL_R22's (v2.7+)
# COMMON_ORDER.ORDER_DOCUMENT is OBX [PRT] TXA, so an OBX right after the ORC would be taken for a document and the
# order's first result lost; it opens ORDER_DOCUMENT only when its TXA follows (after PRT or Z-segments).
_OPENS_ONLY_BEFORE = {"ORDER_DOCUMENT": "TXA"}


@dataclass(slots=True)
class _Frame:
    node: StructureNode
    group: Group
    idx: int = 0
    count: int = 0

    def find(self, seg: str, follows: str = "") -> int | None:
        children = self.node.children
        for j in range(self.idx, len(children)):
            c = children[j]
            used = self.count if j == self.idx else 0
            if c.max != -1 and used >= c.max:
                continue
            if not c.is_group:
                if c.name == seg:
                    return j
            elif (seg in c.first and (c.name, seg) not in _NOT_OPENED_BY
                  and _OPENS_ONLY_BEFORE.get(c.name, follows) == follows):
                return j
        return None


@lru_cache(maxsize=2048)
def build_tree(names: tuple[str, ...], version: str, structure_id: str) -> GroupTree:
    """Group a message's segment ids by its reference structure; every segment is placed somewhere.

    A sender's messages repeat a handful of segment layouts, so trees are cached by layout:
    nothing changes a tree once built, and every message with that layout shares it.
    """
    root = Group("", None, 0, len(names))
    of_segment: list[Group] = []
    ref = structure(version, structure_id)
    stack = [_Frame(ref, root)] if ref else []
    by_name: dict[str, list[Group]] = {}
    ahead = _next_significant(names)
    for i, seg in enumerate(names):
        target = _place(stack, seg, i, by_name, ahead[i]) if stack and not seg.startswith("Z") else None
        group = target or (stack[-1].group if stack else root)
        group.segments.append(i)
        g: Group | None = group
        while g is not None and g.end <= i:
            g.end = i + 1
            g = g.parent
        of_segment.append(group)
    positions: dict[str, list[int]] = {}
    for i, seg in enumerate(names):
        positions.setdefault(seg, []).append(i)
    return GroupTree(structure_id if ref else "", root, of_segment, positions, by_name, names)


def _next_significant(names: tuple[str, ...]) -> list[str]:
    """For each segment, the next one that is not a PRT or a Z-segment ("" at the end): one pass from the end."""
    out = [""] * len(names)
    nxt = ""
    for i in range(len(names) - 1, -1, -1):
        out[i] = nxt
        if names[i] != "PRT" and not names[i].startswith("Z"):
            nxt = names[i]
    return out


def _place(stack: list[_Frame], seg: str, index: int, by_name: dict[str, list[Group]],
           follows: str = "") -> Group | None:
    """Find the open group (innermost first) that can take `seg`, open subgroups down to it."""
    for depth in range(len(stack) - 1, -1, -1):
        j = stack[depth].find(seg, follows)
        if j is None:
            continue
        del stack[depth + 1:]
        frame = stack[depth]
        while True:
            frame.count = frame.count + 1 if j == frame.idx else 1
            frame.idx = j
            child = frame.node.children[j]
            if not child.is_group:
                return frame.group
            inst = Group(child.name, frame.group, index, index, child.max != 1)
            frame.group.children.append(inst)
            by_name.setdefault(child.name, []).append(inst)
            frame = _Frame(child, inst)
            stack.append(frame)
            found = frame.find(seg, follows)
            assert found is not None  # seg is in child.first
            j = found
    return None
