"""A new mapping scaffolded from a sample message (`wasla mapping new NAME --from FILE.hl7`).

The sample is read with the engine's own parser and grouped by its reference structure (hl7apy's, at
scaffold time only). Every segment that has a shared segment map in `mappings/segments/` (PID, PV1,
ORC/OBR, OBX, SPM, RXA) becomes a resource skeleton that includes it, keyed and referenced the way the
shipped mappings are; every other valued field of the sample, and every field of those segments their
segment map does not read, is written as a commented TODO, so the scaffold loads at once and
`wasla mapping test` names what is left to map (FIELDS_NOT_MAPPED). The sample is copied to the
mapping's fixtures without an expected Bundle: that one is written by hand, checked against the IG.

Nothing of the sample's content is written into the mapping or printed: segment ids, field paths and
the reference field names only.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import ConfigError, ConfigErrors, MappingError, ParseError, WaslaError
from engine.hl7v2.er7 import Message, decode, parse
from engine.hl7v2.groups import Group
from engine.hl7v2.reference import field_info, set_id_fields
from engine.mapping.fixtures import FIXTURE_NOW, fixture_converter

__all__ = ["Scaffold", "read_sample", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TYPE = re.compile(r"^[A-Z0-9]{3}$")

# datatype → the converter a rule reading such a field most likely wants (a hint in the TODO comment)
_CONVERTERS = {
    "CX": "CX.Identifier", "XPN": "XPN.HumanName", "XAD": "XAD.Address", "XTN": "XTN.ContactPoint",
    "CWE": "CWE.CodeableConcept", "CE": "CWE.CodeableConcept", "CNE": "CWE.CodeableConcept",
    "EI": "EI.Identifier", "EIP": "EI.Identifier", "XCN": "XCN.Practitioner", "XON": "XON.Organization",
    "PL": "PL.Location", "NM": "NM.Quantity", "DTM": "DTM.dateTime", "TS": "DTM.dateTime", "DT": "DTM.date",
    "DR": "DR.start", "TX": "TX.string", "FT": "FT.Attachment", "ED": "ED.Attachment",
}


@dataclass(frozen=True)
class _Skeleton:
    """A resource made from a segment that has a shared segment map, as the shipped mappings make it."""

    name: str
    type: str
    segments: tuple[str, ...]        # any of them present in the sample makes the resource
    include: str
    ig: str
    key: tuple[str, ...]
    request: str
    refs: tuple[tuple[str, str], ...] = ()   # (element, resource): written when that resource is made too


_SKELETONS = (
    _Skeleton("patient", "Patient", ("PID",), "pid_patient", "PID[Patient]", ("PID-3[1]",), "conditional-create"),
    _Skeleton("encounter", "Encounter", ("PV1",), "pv1_encounter", "PV1[Encounter]", ("PV1-19",), "put",
              (("subject", "patient"),)),
    _Skeleton("service_request", "ServiceRequest", ("ORC", "OBR"), "orc_obr_servicerequest",
              "ORC[ServiceRequest], OBR[ServiceRequest]", ("ORC-2.1|OBR-2.1|ORC-3.1|OBR-3.1",), "put",
              (("subject", "patient"), ("encounter", "encounter"))),
    _Skeleton("specimen", "Specimen", ("SPM",), "spm_specimen", "SPM[Specimen]",
              ("SPM-2.2.1|SPM-2.1.1|ORC-2.1|OBR-2.1", "SPM-1"), "put",
              (("subject", "patient"), ("request[]", "service_request"))),
    _Skeleton("observation", "Observation", ("OBX",), "obx_observation", "OBX[Observation]",
              ("OBX-3.1|OBX-3.2", "OBX-4?"), "put",
              (("subject", "patient"), ("encounter", "encounter"), ("basedOn[]", "service_request"))),
    _Skeleton("immunization", "Immunization", ("RXA",), "rxa_immunization", "RXA[Immunization]",
              ("RXA-5.1|RXA-5.2", "RXA-3"), "put",
              (("patient", "patient"), ("encounter", "encounter"))),
)


@dataclass
class Scaffold:
    """What `scaffold` wrote: the mapping folder, its files, the resources and the fields left to map."""

    name: str
    message_type: str
    folder: Path
    mapping: Path
    fixture: Path
    resources: list[str] = field(default_factory=list)   # "patient (Patient ← PID, pid_patient)"
    todo: list[str] = field(default_factory=list)        # field paths no rule reads yet
    converts: str = ""                                   # "" when the sample converts, else why not


def read_sample(path: Path) -> Message:
    """The sample parsed, or a WaslaError naming the file and the line that is not HL7 v2 (never its text)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WaslaError(f"{path}: cannot read: {exc.strerror}") from exc
    text = decode(raw)
    try:
        msg = parse(text)
    except ParseError as exc:
        raise WaslaError(f"{path}:{_line_of(text, exc.sequence)}: not an HL7 v2 message: {exc.message}") from exc
    if not msg.msh.field(9).component(1):
        raise WaslaError(f"{path}:{_line_of(text, 1)}: MSH-9 (message type) is empty")
    return msg


def _line_of(text: str, sequence: int | None) -> int:
    """The file line of the `sequence`-th segment (the parser skips blank lines and a leading BOM)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    seen = 0
    for number, line in enumerate(lines, start=1):
        if line.strip("\ufeff \t\x0b"):
            seen += 1
            if seen == (sequence or 1):
                return number
    return 1


def scaffold(mappings_dir: Path, schema_dir: Path, vocab_dir: Path, name: str, sample: Path) -> Scaffold:
    """Write `mappings/<name>/` from `sample`: mapping.yaml and fixtures/<sample>.hl7; refuse to overwrite.

    The mapping is compiled and the sample converted before this returns: a scaffold that would not
    load is removed, never left behind.
    """
    if not NAME.match(name) or name == "segments":
        raise WaslaError(f"mapping name '{name}': use lowercase letters, digits and _, starting with a letter "
                         "(it is the folder name and the `name:` of the mapping)")
    msg = read_sample(sample)
    msh9 = msg.msh.field(9)
    kind, trigger = msh9.component(1), msh9.component(2)
    if not (_TYPE.match(kind) and _TYPE.match(trigger)):
        raise WaslaError(f"{sample}: MSH-9 must be a message type and a trigger event, like ORU^R01 "
                         f"(got {kind or '(none)'}^{trigger or '(none)'})")
    message_type = f"{kind}^{trigger}"
    folder = mappings_dir / name
    exists = WaslaError(f"mappings/{name} already exists: choose another name, or remove it first "
                        "(a scaffold never overwrites a mapping)")
    if folder.exists() or folder.is_symlink():
        raise exists
    made = [s for s in _SKELETONS if any(msg.first(seg) for seg in s.segments)]
    if not made:
        found = ", ".join(dict.fromkeys(s.name for s in msg.segments))
        raise WaslaError(f"{sample}: none of its segments ({found}) has a shared segment map "
                         f"(mappings/segments/: {', '.join(s.include for s in _SKELETONS)}); write the "
                         "mapping's resources by hand")
    result = Scaffold(name, message_type, folder, folder / "mapping.yaml",
                      folder / "fixtures" / (sample.stem + ".hl7"))
    try:
        folder.mkdir()  # atomic: of two scaffolds of one name, the second is refused
    except FileExistsError as exc:
        raise exists from exc
    except OSError as exc:
        raise WaslaError(f"cannot write mappings/{name}: {exc.strerror}") from exc
    try:
        (folder / "fixtures").mkdir()
        shutil.copyfile(sample, result.fixture)
        (folder / "fixtures" / "README.md").write_text(_fixtures_readme(name, result.fixture.name, message_type),
                                                       encoding="utf-8")
        names = {s.name for s in made}
        result.mapping.write_text(_render(name, message_type, sample.name, msg, made, names, {}), encoding="utf-8")
        converter = fixture_converter(mappings_dir, schema_dir, vocab_dir)
        spec = converter.spec(name)
        not_read = spec.coverage.not_mapped(msg) if spec.coverage else []
        todo = _expand(msg, not_read)
        result.mapping.write_text(_render(name, message_type, sample.name, msg, made, names, _placed(todo, made)),
                                  encoding="utf-8")
        converter = fixture_converter(mappings_dir, schema_dir, vocab_dir)
        converter.spec(name)   # the final text loads too
    except BaseException as exc:  # nothing half-written is left behind, whatever stopped it (Ctrl-C included)
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ConfigErrors):
            raise WaslaError(f"the scaffold does not load ({exc.errors[0]}): please report it") from exc
        if isinstance(exc, (ConfigError, OSError)):
            raise WaslaError(f"cannot write mappings/{name}: {exc}") from exc
        raise
    result.resources = [f"{s.name} ({s.type} ← {'/'.join(x for x in s.segments if msg.first(x))}, {s.include})"
                        for s in made]
    result.todo = todo
    try:
        converter.convert(name, msg, FIXTURE_NOW)
    except MappingError as exc:  # kept: the skeleton loads, the sample needs what only a person can add
        result.converts = str(exc)
    return result


def _expand(msg: Message, not_read: list[str]) -> list[str]:
    """Field paths in message order: a whole segment nobody reads (`ZPV`) becomes its valued fields (`ZPV-1`,
    `ZPV-3`), its Set ID left out (structure: counted as read once a rule reads the segment)."""
    out: set[str] = set()
    enc = msg.encoding
    blank = " " + enc.component + enc.repetition + enc.subcomponent
    set_ids = set_id_fields()
    for path in not_read:
        if "-" in path:
            out.add(path)
            continue
        for seg in msg.all(path):
            for n, raw in enumerate(seg.raw_fields()):
                if n and raw and raw != '""' and raw.strip(blank) and (path, n) not in set_ids:
                    out.add(f"{path}-{n}")
    order = {name: i for i, name in reversed(list(enumerate(s.name for s in msg.segments)))}
    return sorted(out, key=lambda p: (order[p[:3]], int(p[4:])))


def _placed(todo: list[str], made: list[_Skeleton]) -> dict[str, list[str]]:
    """Each field left to map, under the resource made from its segment, else under '' (the ignore: block)."""
    owner = {seg: s.name for s in made for seg in s.segments}
    placed: dict[str, list[str]] = {}
    for path in todo:
        placed.setdefault(owner.get(path[:3], ""), []).append(path)
    return placed


def _describe(path: str, version: str) -> tuple[str, str]:
    """(the field's name and datatype, the converter hint) from the reference tables; Z-segments: local."""
    seg, _, n = path.partition("-")
    if seg.startswith("Z"):
        return "local Z-segment field: see the sender's specification", ""
    info = field_info(seg, int(n), version)
    if info is None:
        return "not in the reference tables", ""
    datatype, label = info
    return f"{label} ({datatype})" if datatype else label, _CONVERTERS.get(datatype, "")


def _todo_rule(path: str, version: str, indent: str) -> str:
    label, conv = _describe(path, version)
    as_ = f", as: {conv}" if conv else ""
    return f'{indent}# - {{ig: {path}, from: "{path}", to: TODO{as_}}}   # TODO: map or explain: {label}\n'


def _todo_ignore(path: str, version: str) -> str:
    label, conv = _describe(path, version)
    hint = f"; or a rule, as: {conv}" if conv else ""
    return f'  # {path}: "TODO: map or explain"   # {label}{hint}\n'


def _render(name: str, message_type: str, sample: str, msg: Message, made: list[_Skeleton], names: set[str],
            todo: dict[str, list[str]]) -> str:
    tree = msg.tree
    version = msg.version or "2.5"
    today = datetime.now(UTC).date().isoformat()
    layout = _layout(msg)
    out = [
        f"# {message_type} → FHIR R4: scaffolded by `wasla mapping new {name}` on {today} from the sample {sample}\n",
        f"# (HL7 v2 {version}, structure {tree.structure or 'unknown: no reference structure, segments read flat'}).\n",
        "# Before use: give each resource its IG rows (HL7 v2-to-FHIR IG message map for this structure, `ig:` on\n",
        "# every rule), map or explain each TODO below, and write fixtures/*.json by hand, checked against the IG.\n",
        *(f"# {line}\n" for line in layout),
        "kind: MessageMap\n",
        f"name: {name}\n",
        "version: 0.1.0\n",
        f'description: "TODO: what this mapping converts (scaffolded from a {message_type} sample)."\n',
        f"accepts: [{message_type}]\n",
    ]
    if "patient" in names:
        out.append('patient_key: "PID-3[1]"\n')
    out.append("ignore: {}\n")
    rest = todo.get("", [])
    if rest:
        out.append("  # Valued in the sample, read by no rule (FIELDS_NOT_MAPPED until then). Map each with a rule\n"
                   "  # under the resource it belongs to, or leave it out on purpose here with its reason:\n")
        last = ""
        for p in rest:
            if p[:3] != last:
                last = p[:3]
                out.append(f"  # {last}{_where(msg, last)}\n")
            out.append(_todo_ignore(p, version))
    out.append("resources:\n")
    for s in made:
        out.extend(_render_resource(s, msg, names, todo.get(s.name, []), version))
    return "".join(out)


def _render_resource(s: _Skeleton, msg: Message, names: set[str], todo: list[str], version: str) -> list[str]:
    tree = msg.tree
    present = [seg for seg in s.segments if msg.first(seg)]
    first = tree.positions[present[0]][0]
    group = tree.of_segment[first]
    if len(present) > 1 and group.name:   # ORC and OBR: one ServiceRequest per order group
        for_each, where = group.name, f"one per {group.name} group"
    else:
        for_each, where = present[0], f"one per {present[0]} segment" + (f" (group {group.name})" if group.name else "")
    key = list(s.key)
    if s.name in ("observation", "immunization"):
        if "service_request" in names:  # within its order, as oru_r01 and vxu
            key = ["ORC-2.1|OBR-2.1|ORC-3.1|OBR-3.1", *key]
        else:  # the patient's, at its time (as adt): another day's value is another resource
            key = ["PID-3[1]"] * ("patient" in names) + key + (["OBX-14|MSH-7"] if s.name == "observation" else [])
    lines = [
        f"  - name: {s.name}\n",
        f"    type: {s.type}\n",
        f"    ig: {s.ig}\n",
        f"    for_each: {for_each}{' ' * max(1, 26 - len(for_each))}# {where}\n",
        f"    include: [{s.include}]{' ' * max(1, 25 - len(s.include))}# mappings/segments/{s.include}.yaml\n",
        "    id: [" + ", ".join(f'"{k}"' for k in key) + "]\n",
    ]
    if s.name != "patient":
        lines.append("    id_fallback: control_id\n")
    note = ("   # conditional-update when this sender is the master of demographics (as an ADT feed)"
            if s.name == "patient" else "")
    lines.append(f"    request: {s.request}{note}\n")
    rules = [f"      - {{to: \"{element}\", ref: {other}}}\n" for element, other in s.refs if other in names]
    lines.append("    rules:\n" if rules else "    rules: []\n")
    lines.extend(rules)
    lines.extend(_todo_rule(p, version, "      ") for p in todo)
    return lines


def _where(msg: Message, segment: str) -> str:
    """' (group VISIT)', ' (Z-segment, group PATIENT)' or '': where the segment's first occurrence sits."""
    tree = msg.tree
    group = tree.of_segment[tree.positions[segment][0]].name
    local = "Z-segment" if segment.startswith("Z") else ""
    inside = f"group {group}" if group else ""
    both = ", ".join(x for x in (local, inside) if x)
    return f" ({both})" if both else ""


def _layout(msg: Message) -> list[str]:
    """The sample's segments by group, as the reference structure places them (Z-segments where they stand)."""
    tree = msg.tree
    lines: list[str] = []

    def walk(group: Group, depth: int) -> None:
        own = [tree.names[i] for i in group.segments]
        label = group.name or "message"
        lines.append(f"{'  ' * depth}{label}: {' '.join(own) if own else '-'}")
        for child in group.children:
            walk(child, depth + 1)

    walk(tree.root, 0)
    return ["segments by group in the sample:", *("  " + line for line in lines[:40])]


def _fixtures_readme(name: str, fixture: str, message_type: str) -> str:
    stem = fixture.removesuffix(".hl7")
    return (
        f"# {name} fixtures\n\n"
        f"- `{fixture}`: the sample `wasla mapping new` scaffolded this mapping from ({message_type}). Say where it\n"
        "  comes from and that its patient is fictitious (or de-identified) before committing it.\n\n"
        f"No expected Bundle was written: `{stem}.json` has to be written by hand, each element checked against\n"
        "the HL7 v2-to-FHIR IG row it implements (cite the rows here), never copied from Wasla's own output\n"
        "(`wasla mapping test --update` writes that output: review it element by element against the IG before\n"
        f"committing it). Until then `wasla mapping test {name}` fails with `no expected output` and lists the\n"
        "fields no rule reads yet (FIELDS_NOT_MAPPED).\n"
    )
