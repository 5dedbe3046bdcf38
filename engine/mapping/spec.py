"""The mapping YAML as a typed tree: message map, resources, rules and switch cases.

Parsed once from a schema-valid `YamlDoc` (`config/schema/mapping.schema.json`), before anything is
checked against the FHIR model. Every node keeps its `Where` (file and JSON path, hence line and
column), so the compiler reports each problem at the exact `file:line:col` of the YAML it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.config.yamlfile import YamlDoc
from engine.errors import ConfigError

__all__ = ["MappingNode", "ResourceNode", "RuleNode", "SegmentMapNode", "Where", "parse_mapping",
           "parse_segment_map"]

Step = str | int


@dataclass(frozen=True)
class Where:
    """A place in a mapping file: the loaded document and the JSON path of one value in it.

    It owns the translation of that place into `file`, `line` and `column` (the YAML loader's
    positions), and guarantees that `error()` prints exactly as `YamlDoc.error` does for that path.
    """

    doc: YamlDoc = field(repr=False, compare=False)
    path: tuple[Step, ...] = ()

    def at(self, *steps: Step) -> Where:
        """The place of a value below this one (`where.at("options", "units")`)."""
        return Where(self.doc, (*self.path, *steps))

    @property
    def file(self) -> str:
        return self.doc.file

    @property
    def line(self) -> int | None:
        return self.doc.position(list(self.path))[0]

    @property
    def column(self) -> int | None:
        return self.doc.position(list(self.path))[1]

    def error(self, message: str, *, field: str | None = None) -> ConfigError:
        """A ConfigError at this place: `file:line:col: dotted.path: message`."""
        return self.doc.error(message, list(self.path), field=field)


@dataclass(frozen=True)
class RuleNode:
    """One rule (or one switch case) as written: where a value comes from and where it goes.

    `kinds` lists which of `as`, `vocab`, `value`, `ref` the YAML gives, in that order: a `value:`
    written as null is still a value rule. Absent keys are None (or empty), as `dict.get` gives them.
    """

    where: Where
    to: str
    id: str | None = None
    ig: str | None = None
    sources: tuple[str, ...] = ()
    sources_listed: bool = False            # `from:` was a YAML list (errors then name its item)
    kinds: tuple[str, ...] = ()
    as_: str | None = None
    vocab: str | None = None
    value: Any = None
    ref: str | None = None
    switch: str | None = None
    cases: tuple[tuple[str, RuleNode], ...] = ()
    has_default: bool = False
    default: Any = None
    when: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    also: Mapping[str, Any] | None = None
    if_absent: bool = False
    each_segment: bool | str = False      # True, or GROUP/SEG (with fields:): every SEG of each GROUP
    on_unmapped: str = "warn"
    fields: tuple[RuleNode, ...] | None = None

    @property
    def label(self) -> str:
        """The name warnings and errors give the rule: its id, else its IG row, else its target."""
        return str(self.id or self.ig or self.to)

    @property
    def is_switch(self) -> bool:
        return self.switch is not None


@dataclass(frozen=True)
class ResourceNode:
    """One `resources:` entry: the FHIR resource made, its business key, and its rules."""

    where: Where
    name: str
    type: str
    request: str
    id: tuple[str, ...]
    segment: str | None = None
    for_each: str | None = None
    when: Mapping[str, Any] | None = None
    id_fallback: str = "error"
    duplicates: str = "keep"
    keep_earlier: Mapping[str, Any] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    rules: tuple[RuleNode, ...] = ()
    following: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingNode:
    """A message map (`mappings/<name>/mapping.yaml`): what it accepts and the resources it makes."""

    where: Where
    name: str
    version: str
    accepts: tuple[str, ...]
    resources: tuple[ResourceNode, ...]
    patient_key: str | None = None
    provenance: bool = True
    ignore: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return self.where.file


@dataclass(frozen=True)
class SegmentMapNode:
    """A segment map (`mappings/segments/<name>.yaml`): rules for one FHIR type, shared by mappings."""

    where: Where
    name: str
    target: str
    rules: tuple[RuleNode, ...]


def parse_rule(raw: Mapping[str, Any], where: Where) -> RuleNode:
    """A schema-valid rule or case → its node (no FHIR or v2 check yet)."""
    sources = raw.get("from")
    texts = (sources,) if isinstance(sources, str) else tuple(sources or ())
    cases = tuple((str(k), parse_rule(c, where.at("cases", k))) for k, c in (raw.get("cases") or {}).items())
    fields = raw.get("fields")
    return RuleNode(
        where=where, to=raw["to"], id=raw.get("id"), ig=raw.get("ig"),
        sources=texts, sources_listed=isinstance(sources, list),
        kinds=tuple(k for k in ("as", "vocab", "value", "ref") if k in raw),
        as_=raw.get("as"), vocab=raw.get("vocab"), value=raw.get("value"), ref=raw.get("ref"),
        switch=raw.get("switch"), cases=cases,
        has_default="default" in raw, default=raw.get("default"),
        when=raw.get("when"), options=dict(raw.get("options") or {}), also=raw.get("also"),
        if_absent=bool(raw.get("if_absent")),
        each_segment=each if isinstance(each := raw.get("each_segment"), str) else bool(each),
        on_unmapped=raw.get("on_unmapped", "warn"),
        fields=None if fields is None else tuple(parse_rule(f, where.at("fields", i)) for i, f in enumerate(fields)),
    )


def parse_resource(raw: Mapping[str, Any], where: Where) -> ResourceNode:
    return ResourceNode(
        where=where, name=raw["name"], type=raw["type"], request=raw["request"], id=tuple(raw["id"]),
        segment=raw.get("segment"), for_each=raw.get("for_each"), when=raw.get("when"),
        id_fallback=raw.get("id_fallback", "error"), duplicates=raw.get("duplicates", "keep"),
        keep_earlier=dict(raw.get("keep_earlier") or {}), include=tuple(raw.get("include", [])),
        rules=tuple(parse_rule(r, where.at("rules", i)) for i, r in enumerate(raw.get("rules", []))),
        following=tuple(raw.get("following", [])),
    )


def parse_mapping(doc: YamlDoc) -> MappingNode:
    """A schema-valid message map → its typed tree."""
    data, top = doc.data, Where(doc)
    return MappingNode(
        where=top, name=data["name"], version=data["version"], accepts=tuple(data["accepts"]),
        resources=tuple(parse_resource(r, top.at("resources", i)) for i, r in enumerate(data["resources"])),
        patient_key=data.get("patient_key") or None, provenance=data.get("provenance", True),
        ignore=tuple(data.get("ignore", {})),
    )


def parse_segment_map(doc: YamlDoc) -> SegmentMapNode:
    """A schema-valid segment map → its typed tree."""
    data, top = doc.data, Where(doc)
    return SegmentMapNode(top, data["name"], data["target"],
                          tuple(parse_rule(r, top.at("rules", i)) for i, r in enumerate(data["rules"])))
