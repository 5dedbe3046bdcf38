"""What a message carries that no rule reads: reported, never dropped in silence.

The compiler lists every (segment, field) a mapping can read — rule sources, business keys,
conditions, switches and converter options — plus what the mapping `ignore:`s on purpose, Set
IDs (SI: structure, not data) and the MSH fields the engine uses itself. After a conversion each
other valued field is named in one `FIELDS_NOT_MAPPED` warning: field paths only (`PID-19`, or
`GT1` for a segment nothing reads), never values. This is the static answer, cheap enough for
every message; `wasla convert --explain` gives the exact one (fields read by rules that ran).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.hl7v2.er7 import Message
from engine.hl7v2.reference import set_id_fields

__all__ = ["ENGINE_READS", "Coverage", "coverage"]

# MSH fields the engine itself uses: separators, charset, version and structure, identity of
# the message and sender, and what the ACK needs (MSH-5/6 swapped, MSH-11, MSH-15/16).
ENGINE_READS = frozenset(("MSH", n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 18))


@dataclass(frozen=True)
class Coverage:
    """Which fields of each segment a mapping accounts for (read, ignored, Set IDs, the engine's own),
    and the segments it ignores; `not_mapped` names the rest of a message. Immutable, built once per
    mapping.
    """

    fields: dict[str, frozenset[int]]   # segment → fields accounted for (read, ignored, Set ID, engine)
    ignored_segments: frozenset[str]

    def not_mapped(self, msg: Message) -> list[str]:
        """Valued fields of `msg` nobody accounts for; a segment none of whose fields is read is
        named once (`GT1`), not field by field."""
        enc = msg.encoding
        blank = " " + enc.component + enc.repetition + enc.subcomponent
        out: list[str] = []
        for seg in msg.segments:
            name = seg.name
            known = self.fields.get(name)
            if known is None:
                if name not in self.ignored_segments and name not in out and seg.raw[4:].strip(blank + enc.field):
                    out.append(name)
                continue
            for n, raw in enumerate(seg.raw_fields()):
                if n and raw and n not in known and raw != '""' and raw.strip(blank):
                    path = f"{name}-{n}"
                    if path not in out:
                        out.append(path)
        return out


def coverage(reads: set[tuple[str, int]], ignore: list[str]) -> Coverage:
    ignored_segments = frozenset(i for i in ignore if "-" not in i)
    accounted = set(reads) | ENGINE_READS
    accounted |= {(s, f) for s, f in set_id_fields() if s in {r[0] for r in reads}}
    accounted |= {(i[:3], int(i[4:])) for i in ignore if "-" in i}
    fields: dict[str, set[int]] = {}
    for seg, n in accounted:
        if seg not in ignored_segments:
            fields.setdefault(seg, set()).add(n)
    return Coverage({s: frozenset(v) for s, v in fields.items()}, ignored_segments)
