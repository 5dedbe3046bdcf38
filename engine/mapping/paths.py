"""HL7 v2 paths as the standard writes them: `PID-3`, `PID-3[2].4.1`, `PID-3[*]`, `MSH-9.2`.

Compiled once at mapping load; reading one costs a few list lookups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.hl7v2.er7 import Field, Message, Segment

__all__ = ["V2Path", "compile_path"]

_PATH = re.compile(r"^(?P<seg>[A-Z][A-Z0-9]{2})-(?P<field>\d+)(?:\[(?P<rep>\d+|\*)\])?"
                   r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?$")


@dataclass(frozen=True, slots=True)
class V2Path:
    spec: str
    segment: str
    field: int
    rep: int | None  # None = every repetition
    component: int | None
    subcomponent: int | None

    def segment_of(self, msg: Message, current: Segment | None) -> Segment | None:
        if current is not None and current.name == self.segment:
            return current
        return msg.first(self.segment)

    def fields(self, msg: Message, current: Segment | None = None) -> list[Field]:
        """The field repetitions this path selects (whole repetitions; components are read by `text`)."""
        seg = self.segment_of(msg, current)
        if seg is None:
            return []
        reps = seg.repetitions(self.field)
        if self.rep is None:
            return [r for r in reps if r]
        return [reps[self.rep - 1]] if self.rep <= len(reps) and reps[self.rep - 1] else []

    def text(self, msg: Message, current: Segment | None = None) -> str:
        """Unescaped text at this path (first repetition unless one is named); '' when not valued."""
        found = self.fields(msg, current)
        if not found:
            return ""
        value = found[0].component(self.component or 1, self.subcomponent or 1)
        return "" if value == '""' else value


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
