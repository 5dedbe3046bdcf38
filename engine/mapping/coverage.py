"""What a message carries that no rule reads: reported, never dropped in silence.

The compiler lists every (segment, field) a mapping can read — rule sources, business keys,
conditions, switches and converter options — plus what the mapping `ignore:`s on purpose, Set
IDs (SI: structure, not data) and the MSH fields the engine uses itself. After a conversion each
other valued field is named in one `FIELDS_NOT_MAPPED` warning: field paths only (`PID-19`, or
`GT1` for a segment nothing reads), never values. This is the static answer, cheap enough for
every message; `wasla convert --explain` gives the exact one (fields read by rules that ran).

A field read in one place is not read everywhere: `NTE-3` read after SCH says nothing of the NTEs
of an appointment's resource groups. So each occurrence of a segment whose fields rules read must
have been read by one (the conversion records the segments it touched): an occurrence none read,
with a valued field that rules read elsewhere, is named `SEGMENT_NOT_MAPPED` with its position and
group (`NTE[3]`, "segment 9 in LOCATION_RESOURCE"). A mapping that leaves a group's segments out on
purpose says so: `ignore: {LOCATION_RESOURCE/NTE: reason}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

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
    read: dict[str, frozenset[int]] = dataclass_field(default_factory=dict)   # segment → fields rules read
    ignored_in: frozenset[tuple[str, str]] = frozenset()   # (group, segment) left out on purpose

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

    def unread(self, msg: Message, touched: set[int]) -> list[tuple[int, str, str]]:
        """(index, path, detail) for each occurrence of a segment rules read fields of that no rule read, where a
        field rules read is valued: `("NTE[3]", "segment 9 in LOCATION_RESOURCE")`. Positions, never values."""
        read = self.read
        enc = msg.encoding
        blank = " " + enc.component + enc.repetition + enc.subcomponent
        tree = None
        counts: dict[str, int] = {}
        out: list[tuple[int, str, str]] = []
        for i, seg in enumerate(msg.segments):
            name = seg.name
            counts[name] = n = counts.get(name, 0) + 1
            fields = read.get(name)
            if fields is None or i in touched or name == "MSH":
                continue
            raws = seg.raw_fields()
            if not any(f < len(raws) and (r := raws[f]) and r != '""' and r.strip(blank) for f in fields):
                continue
            tree = tree or msg.tree
            group = tree.of_segment[i].name
            if (group, name) in self.ignored_in:
                continue
            out.append((i, f"{name}[{n}]", f"segment {i + 1}{' in ' + group if group else ''}: no rule reads this "
                                        f"occurrence"))
        return out


def coverage(reads: set[tuple[str, int]], ignore: list[str]) -> Coverage:
    ignored_in = frozenset((g, s) for g, _, s in (i.partition("/") for i in ignore if "/" in i))
    ignore = [i for i in ignore if "/" not in i]
    ignored_segments = frozenset(i for i in ignore if "-" not in i)
    accounted = set(reads) | ENGINE_READS
    accounted |= {(s, f) for s, f in set_id_fields() if s in {r[0] for r in reads}}
    accounted |= {(i[:3], int(i[4:])) for i in ignore if "-" in i}
    fields: dict[str, set[int]] = {}
    for seg, n in accounted:
        if seg not in ignored_segments:
            fields.setdefault(seg, set()).add(n)
    read: dict[str, set[int]] = {}
    for seg, n in reads:
        if seg not in ignored_segments and seg != "MSH":
            read.setdefault(seg, set()).add(n)
    return Coverage({s: frozenset(v) for s, v in fields.items()}, ignored_segments,
                    {s: frozenset(v) for s, v in read.items()}, ignored_in)
