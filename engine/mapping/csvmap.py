"""CSV maps (`mappings/<name>/csvmap.yaml`, `kind: CsvMap`): a group of CSV rows becomes the HL7 v2
message it stands for, which the ordinary message map then converts. A lab result therefore reads the
same whether it came as an ORU^R01 or as CSV rows: one mapping decides its FHIR, not two.

    message: ORU^R01            the v2 message a group becomes
    mapping: oru_r01            the message map that converts it
    group_by: [numero_demande]  consecutive rows with the same values make one message
    time: date_prelevement      the column giving the message time (MSH-7)
    create_only: [report]       resources this feed creates where none exists, never replaces: a CSV
                                export's thinner report leaves the lab's ORU report as it is
    columns:                    the columns a row must have, and what their values must look like
      resultat: {required: true, number: true}
      date_prelevement: {date: true}
    once:                       segments written once per message, from the group's first row
      PID: {"3.1": ipp, "5.1": nom}
    each:                       segments written for every row
      OBX: {"1": "#", "2": "=NM", "3.1": code_analyse, "5": resultat}
    after:                      segments written once after the rows, from the group's first row (a DFT's
      IN1: {"3.1": organisme}   DG1 and INSURANCE follow its FINANCIAL groups)

A value is a column name, `=text` for a constant, `#` for the row's number in its group, or `@sender`
for the channel's sender. Dates are read with the channel's `date_formats` and written as v2 DTM.
Values are escaped for ER7, so a `|` or `^` in a cell stays text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.config.validate import load_schema, validate
from engine.config.yamlfile import load_yaml
from engine.errors import ConfigError, ConfigErrors

__all__ = ["Column", "CsvMap", "compile_csvmap", "find_csvmap"]

_FIELD = re.compile(r"^([1-9][0-9]*)(?:\.([1-9][0-9]*))?(?:\.([1-9][0-9]*))?$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


@dataclass(frozen=True)
class Column:
    """A column a CSV map declares, and what its values must be: required, a number, a date. Immutable."""

    name: str
    required: bool = False
    number: bool = False
    date: bool = False


@dataclass(frozen=True)
class CsvMap:
    """A compiled CSV map: how a group of rows becomes one HL7 v2 message (grouping columns, time
    column, segments written once and per row) and which message map converts it. Immutable.
    """

    name: str
    version: str
    file: str
    message: str                     # e.g. ORU^R01
    mapping: str                     # the message map converting it
    group_by: tuple[str, ...]
    time: str | None                 # the column whose value is the message time (MSH-7)
    columns: dict[str, Column]
    once: tuple[tuple[str, tuple[tuple[tuple[int, int, int], str], ...]], ...]
    each: tuple[tuple[str, tuple[tuple[tuple[int, int, int], str], ...]], ...]
    create_only: tuple[str, ...] = ()  # resources written only where none exists yet (conditional create)
    after: tuple[tuple[str, tuple[tuple[tuple[int, int, int], str], ...]], ...] = ()  # once, after the rows

    def check(self, values: dict[str, str], date_formats: tuple[str, ...]) -> str | None:
        """Why this row cannot be used (the first problem), or None. Names columns, never values."""
        for col in self.columns.values():
            if col.name not in values:
                return f"column {col.name}: missing from the file"
            v = values[col.name]
            if not v:
                if col.required:
                    return f"column {col.name}: empty (required)"
                continue
            if col.number and not _NUMBER.match(v.replace(" ", "")):
                return f"column {col.name}: expected a number, got {len(v)} characters"
            if col.date and _v2_time(v, date_formats) is None:
                return f"column {col.name}: expected a date as {' or '.join(date_formats)}"
        return None

    def group_key(self, values: dict[str, str]) -> tuple[str, ...]:
        return tuple(values.get(c, "") for c in self.group_by)

    def to_v2(self, group: list[dict[str, str]], *, sender: str, application: str, control_id: str,
              date_formats: tuple[str, ...]) -> str:
        """The ER7 text of the v2 message `group` stands for (rows already checked)."""
        first = group[0]
        kind, _, event = self.message.partition("^")
        stamp = (_v2_time(first.get(self.time, ""), date_formats) or "") if self.time else ""
        segments = [f"MSH|^~\\&|{_esc(application)}|{_esc(sender)}|WASLA||{stamp}||{kind}^{event}^{kind}_{event}"
                    f"|{_esc(control_id)}|P|2.5.1|||NE|NE||UNICODE UTF-8"]
        for name, fields in self.once:
            segments.append(_segment(name, fields, first, 1, sender, self.columns, date_formats))
        for number, row in enumerate(group, start=1):
            for name, fields in self.each:
                segments.append(_segment(name, fields, row, number, sender, self.columns, date_formats))
        for name, fields in self.after:
            segments.append(_segment(name, fields, first, 1, sender, self.columns, date_formats))
        return "\r".join(segments) + "\r"


@lru_cache(maxsize=65536)
def _v2_time(text: str, formats: tuple[str, ...]) -> str | None:
    """Memoised: a file repeats the same few collection times and birth dates on many rows."""
    for fmt in formats:
        try:
            t = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        has_time = any(d in fmt for d in ("%H", "%M", "%S"))
        return t.strftime("%Y%m%d%H%M%S" if "%S" in fmt else "%Y%m%d%H%M") if has_time else t.strftime("%Y%m%d")
    return None


def _esc(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\").replace("\r", " ").replace("\n", " "))


def _value(spec: str, row: dict[str, str], number: int, sender: str, columns: dict[str, Column],
           date_formats: tuple[str, ...]) -> str:
    if spec == "#":
        return str(number)
    if spec == "@sender":
        return _esc(sender)
    if spec.startswith("="):
        return _esc(spec[1:])
    text = row.get(spec, "")
    col = columns.get(spec)
    if text and col is not None and col.date:
        return _v2_time(text, date_formats) or ""
    if text and col is not None and col.number:
        return _esc(text.replace(" ", ""))
    return _esc(text)


def _segment(name: str, fields: tuple[tuple[tuple[int, int, int], str], ...], row: dict[str, str], number: int,
             sender: str, columns: dict[str, Column], date_formats: tuple[str, ...]) -> str:
    """Fields, components and subcomponents placed by position; empty ones trimmed from the end."""
    shape, specs = _shape(fields)
    values = [_value(spec, row, number, sender, columns, date_formats) for spec in specs]
    out = [name]
    for comps in shape:  # per field: per component: the indexes of its subcomponents' values
        out.append("^".join("&".join(values[i] if i >= 0 else "" for i in subs) for subs in comps).rstrip("^"))
    return "|".join(out).rstrip("|")


@lru_cache(maxsize=256)
def _shape(fields: tuple[tuple[tuple[int, int, int], str], ...]) -> tuple[
        tuple[tuple[tuple[int, ...], ...], ...], tuple[str, ...]]:
    """The segment's layout, worked out once: for each field, each component, which value (or -1)."""
    specs = tuple(spec for _, spec in fields)
    index = {pos: i for i, (pos, _) in enumerate(fields)}
    shape = []
    for f in range(1, max((p[0] for p, _ in fields), default=0) + 1):
        comps_here = [p for p, _ in fields if p[0] == f]
        comps = []
        for c in range(1, max((p[1] for p in comps_here), default=0) + 1):
            subs_here = [p[2] for p in comps_here if p[1] == c]
            comps.append(tuple(index.get((f, c, s), -1) for s in range(1, max(subs_here, default=1) + 1)))
        shape.append(tuple(comps))
    return tuple(shape), specs


def _positions(raw: dict[str, Any], errors: list[ConfigError], doc: Any,
               path: list[str | int]) -> tuple[tuple[tuple[int, int, int], str], ...]:
    out = []
    for key, spec in raw.items():
        m = _FIELD.match(str(key))
        if not m:
            errors.append(doc.error(f"expected a field position like 3, 3.1 or 3.4.1, got '{key}'", [*path, key]))
            continue
        out.append(((int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)), str(spec)))
    return tuple(out)


def compile_csvmap(file: Path, schema_dir: Path, known_mappings: set[str]) -> CsvMap:
    """Read and check a CSV map; every problem is a file:line error."""
    doc = load_yaml(file)
    errors = validate(doc, load_schema(schema_dir / "csvmap.schema.json"))
    if errors:
        raise ConfigErrors(errors)
    d = doc.data
    errs: list[ConfigError] = []
    if d["name"] != file.parent.name:
        errs.append(doc.error(f"expected name '{file.parent.name}' (the folder name)", ["name"]))
    if d["mapping"] not in known_mappings:
        errs.append(doc.error(f"no message map '{d['mapping']}' (known: {', '.join(sorted(known_mappings))})",
                              ["mapping"]))
    columns = {n: Column(n, bool(c.get("required")), bool(c.get("number")), bool(c.get("date")))
               for n, c in (d.get("columns") or {}).items()}
    for part in ("once", "each", "after"):
        for seg, fields in (d.get(part) or {}).items():
            for key, spec in fields.items():
                spec = str(spec)
                if not (spec in ("#", "@sender") or spec.startswith("=") or spec in columns):
                    errs.append(doc.error(f"'{spec}' is not a column (known: {', '.join(columns)}), "
                                          "a =constant, # or @sender", [part, seg, key]))
    if d.get("time") and d["time"] not in columns:
        errs.append(doc.error(f"time: '{d['time']}' is not a column", ["time"]))
    for i, g in enumerate(d["group_by"]):
        if g not in columns:
            errs.append(doc.error(f"group_by: '{g}' is not a column", ["group_by", i]))
    mapping_file = file.parent.parent / d["mapping"] / "mapping.yaml"
    if d.get("create_only") and mapping_file.exists():
        resources = {str(r.get("name")) for r in load_yaml(mapping_file).data.get("resources") or []}
        for i, name in enumerate(d["create_only"]):
            if name not in resources:
                errs.append(doc.error(f"create_only: '{name}' is not a resource of mapping {d['mapping']} "
                                      f"(known: {', '.join(sorted(resources))})", ["create_only", i]))
    once = tuple((seg, _positions(f, errs, doc, ["once", seg])) for seg, f in (d.get("once") or {}).items())
    each = tuple((seg, _positions(f, errs, doc, ["each", seg])) for seg, f in d["each"].items())
    after = tuple((seg, _positions(f, errs, doc, ["after", seg])) for seg, f in (d.get("after") or {}).items())
    if errs:
        raise ConfigErrors(errs)
    return CsvMap(d["name"], d["version"], doc.file, d["message"], d["mapping"], tuple(d["group_by"]),
                  d.get("time"), columns, once, each, tuple(d.get("create_only") or ()), after)


def find_csvmap(mappings_dir: Path, name: str, schema_dir: Path) -> CsvMap:
    file = mappings_dir / name / "csvmap.yaml"
    if not file.exists():
        raise ConfigError(f"no CSV map '{name}'", file=str(mappings_dir))
    known = {p.parent.name for p in mappings_dir.glob("*/mapping.yaml")}
    return compile_csvmap(file, schema_dir, known)
