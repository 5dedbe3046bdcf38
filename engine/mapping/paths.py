"""HL7 v2 paths as the standard writes them: `PID-3`, `PID-3[2].4.1`, `PID-3[*]`, `MSH-9.2`.

Compiled once at mapping load; reading one costs a few list lookups. A path names a segment, not
where it sits: it is read from the segment being mapped when the names match, else from the
nearest such segment in the resource's scope (its segment group, then each enclosing group), so
`OBR-7` read for an Observation is its own order's OBR, never the first one of the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.hl7v2.er7 import Field, Segment

if TYPE_CHECKING:
    from engine.mapping.context import Context

__all__ = ["V2Path", "compile_path"]

_PATH = re.compile(r"^(?P<seg>[A-Z][A-Z0-9]{2})-(?P<field>\d+)(?:\[(?P<rep>\d+|\*)\])?"
                   r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?$")


@dataclass(frozen=True, slots=True)
class V2Path:
    """A compiled HL7 v2 path (`PID-3[2].4.1`): segment, field, repetition, component, subcomponent.
    Reads from the segment being mapped, else the nearest one in the resource's scope. Immutable.
    """

    spec: str
    segment: str
    field: int
    rep: int | None  # None = every repetition
    component: int | None
    subcomponent: int | None

    def segment_of(self, ctx: Context) -> Segment | None:
        current = ctx.segment
        if current is not None and current.name == self.segment:
            return current
        msg = ctx.msg
        tree = msg.tree
        if ctx.following and self.segment in ctx.following and ctx.anchor is not None:
            index = _around_anchor(self.segment, ctx.anchor, ctx)
        else:
            index = tree.nearest(self.segment, ctx.scope or tree.root)
        if index is None:
            return None
        ctx.touched.add(index)
        return msg.segments[index]

    def fields(self, ctx: Context) -> list[Field]:
        """The valued field repetitions this path selects (whole repetitions; components are read by `text`).

        The hot path of every rule: written flat, without helper calls.
        """
        seg = ctx.segment
        if seg is None or seg.name != self.segment:
            msg = ctx.msg
            tree = msg.tree
            if ctx.following and self.segment in ctx.following and ctx.anchor is not None:
                index = _around_anchor(self.segment, ctx.anchor, ctx)
            else:
                index = tree.nearest(self.segment, ctx.scope or tree.root)
            if index is None:
                return []
            ctx.touched.add(index)
            seg = msg.segments[index]
        if self.rep is None:
            return seg.valued(self.field)
        reps = seg.repetitions(self.field)
        if self.rep <= len(reps):
            found = reps[self.rep - 1]
            if found:
                return [found]
        return []

    def text(self, ctx: Context) -> str:
        """Unescaped text at this path (first repetition unless one is named); '' when not valued."""
        found = self.fields(ctx)
        if not found:
            return ""
        value = found[0].component(self.component or 1, self.subcomponent or 1)
        return "" if value == '""' else value


def _around_anchor(name: str, anchor: Segment, ctx: Context) -> int | None:
    """A resource's `following:` segment: the first `name` after the segment the resource is made from, up to the
    next segment of that kind (the RXR of an RXE, not of the RXO before it, nor of the next RXD); when the anchor
    has none of its own, the nearest in scope when it comes before the anchor (an RXE without TIMING_ENCODED reads
    the order's TIMING TQ1); else None."""
    msg = ctx.msg
    segments = msg.segments
    scope = ctx.scope or msg.tree.root
    for i in range(anchor.sequence, scope.end):  # sequence is 1-based: this starts after the anchor
        seg = segments[i]
        if seg.name == name:
            return i
        if seg.name == anchor.name:
            break
    nearest = msg.tree.nearest(name, scope)
    return nearest if nearest is not None and nearest < anchor.sequence - 1 else None


def compile_path(text: str) -> V2Path:
    m = _PATH.match(text.strip())
    if not m:
        raise ValueError(f"expected an HL7 v2 path like PID-3, PID-3[1].4.1 or PID-3[*], got '{text}'")
    rep = m.group("rep")
    return V2Path(
        spec=text.strip(),
        segment=m.group("seg"),
        field=int(m.group("field")),
        rep=None if rep == "*" else int(rep or 1),
        component=int(m.group("comp")) if m.group("comp") else None,
        subcomponent=int(m.group("sub")) if m.group("sub") else None,
    )
