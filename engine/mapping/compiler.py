"""Mapping files → compiled closures.

At load: the YAML is validated against `config/schema/mapping.schema.json`, every source path
is parsed, every target path, cardinality and type is checked against the FHIR R4 model, every
vocabulary map is read. Any problem is a ConfigError at the rule's `file:line`. At runtime the
closures only read fields and build dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.validate import load_schema, validate
from engine.config.yamlfile import YamlDoc, load_yaml
from engine.errors import ConfigError, ConfigErrors, MappingError
from engine.mapping.context import Context
from engine.mapping.datatypes import CONVERTERS, identifier_system
from engine.mapping.fhirmodel import Element, resolve
from engine.mapping.paths import V2Path, compile_path
from engine.mapping.vocab import VocabMap, load_vocab

__all__ = ["CompiledResource", "CompiledRule", "MappingSpec", "compile_mapping"]

Apply = Callable[[Context, dict[str, Any]], None]
_STRINGISH = {"string", "code", "id", "uri", "markdown"}
_CODED = {"code", "Coding", "CodeableConcept", "boolean"}


@dataclass(frozen=True)
class CompiledRule:
    label: str
    target: Element
    apply: Apply


@dataclass(frozen=True)
class CompiledResource:
    name: str
    type: str
    segment: str | None
    key: tuple[V2Path, ...]
    id_fallback: str
    request: str
    rules: tuple[CompiledRule, ...]


@dataclass(frozen=True)
class MappingSpec:
    name: str
    version: str
    file: str
    accepts: tuple[str, ...]
    patient_key: V2Path | None
    provenance: bool
    resources: tuple[CompiledResource, ...]


def _set(resource: dict[str, Any], steps: list[str], values: list[Any], is_list: bool) -> bool:
    """Write `values` at `steps`; returns False when repetitions did not fit a 0..1 element."""
    node = resource
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    last = steps[-1]
    if is_list:
        node.setdefault(last, []).extend(values)
        return True
    node[last] = values[0]
    return len(values) == 1


class _Compiler:
    def __init__(self, doc: YamlDoc, vocab_dir: Path) -> None:
        self.doc = doc
        self.vocab_dir = vocab_dir
        self.errors: list[ConfigError] = []

    def err(self, message: str, path: list[str | int], field: str | None = None) -> None:
        self.errors.append(self.doc.error(message, path, field=field))

    def path(self, text: str, where: list[str | int]) -> V2Path | None:
        try:
            return compile_path(text)
        except ValueError as exc:
            self.err(str(exc), where)
            return None

    def vocab(self, name: str, where: list[str | int]) -> VocabMap | None:
        try:
            return load_vocab(self.vocab_dir, name)
        except ConfigError as exc:
            self.errors.append(exc if exc.line else self.doc.error(exc.message, where))
            return None

    def rule(self, rtype: str, raw: dict[str, Any], where: list[str | int], names: set[str]) -> CompiledRule | None:
        label = str(raw.get("id") or raw.get("ig") or raw["to"])
        to = raw["to"]
        try:
            target = resolve(rtype, to)
        except KeyError as exc:
            self.err(f"{exc.args[0]} (FHIR R4 {rtype})", [*where, "to"])
            return None
        wants_list = to.endswith("[]")
        if target.is_list != wants_list:
            card = "0..*: write it as '" + to + "[]'" if target.is_list else "0..1: drop the '[]'"
            self.err(f"{rtype}.{target.path} is {card}", [*where, "to"])
            return None
        kinds = [k for k in ("as", "vocab", "value", "ref") if k in raw]
        if len(kinds) > 1:
            self.err(f"use one of as, vocab, value, ref (got {', '.join(kinds)})", where)
            return None
        sources = raw.get("from")
        paths: list[V2Path] = []
        for i, text in enumerate([sources] if isinstance(sources, str) else (sources or [])):
            p = self.path(text, [*where, "from", i] if isinstance(sources, list) else [*where, "from"])
            if p:
                paths.append(p)
        if sources is None and kinds[:1] not in (["value"], ["ref"]):
            self.err("missing 'from' (or give value: or ref:)", where)
            return None
        when = self._when(raw.get("when"), [*where, "when"])
        steps = to.replace("[]", "").split(".")
        on_unmapped = raw.get("on_unmapped", "warn")
        options = dict(raw.get("options") or {})
        produce = self._producer(rtype, raw, kinds[0] if kinds else None, target, paths, options, on_unmapped,
                                 label, names, where)
        if produce is None:
            return None

        def apply(ctx: Context, resource: dict[str, Any]) -> None:
            if when is not None and not when(ctx):
                return
            values = produce(ctx)
            if values and not _set(resource, steps, values, target.is_list):
                ctx.warn("REPETITIONS_NOT_MAPPED", label, paths[0].spec if paths else to,
                         f"{rtype}.{target.path} holds one value; {len(values) - 1} more dropped")

        return CompiledRule(label, target, apply)

    def _when(self, raw: dict[str, str] | None, where: list[str | int]) -> Callable[[Context], bool] | None:
        if not raw:
            return None
        (op, text), = raw.items()
        p = self.path(text, [*where, op])
        if p is None:
            return None
        if op == "valued":
            return lambda ctx: bool(p.text(ctx.msg, ctx.segment))
        return lambda ctx: not p.text(ctx.msg, ctx.segment)

    def _producer(self, rtype: str, raw: dict[str, Any], kind: str | None, target: Element, paths: list[V2Path],
                  options: dict[str, Any], on_unmapped: str, label: str, names: set[str],
                  where: list[str | int]) -> Callable[[Context], list[Any]] | None:
        full = f"{rtype}.{target.path}"
        if kind == "ref":
            if target.type != "Reference":
                self.err(f"{full} is a {target.type}, not a Reference", [*where, "to"])
                return None
            other = raw["ref"]
            if other not in names:
                self.err(f"no resource named '{other}' in this mapping (known: {', '.join(sorted(names))})",
                         [*where, "ref"])
                return None
            return lambda ctx: [{"reference": f"urn:uuid:{ctx.ids[other]}"}] if other in ctx.ids else []
        if kind == "value":
            value = raw["value"]
            if target.enum and value not in target.enum:
                self.err(f"{full} takes one of {', '.join(target.enum)}", [*where, "value"])
                return None
            return lambda ctx: [value]
        if kind == "as":
            conv = CONVERTERS.get(raw["as"])
            if conv is None:
                self.err(f"unknown converter '{raw['as']}' (known: {', '.join(sorted(CONVERTERS))})", [*where, "as"])
                return None
            if conv.fhir_type != target.type:
                self.err(f"{raw['as']} makes a {conv.fhir_type} but {full} is a {target.type}", [*where, "as"])
                return None
            if any(p.component for p in paths):
                self.err(f"{raw['as']} reads whole fields: write the path without a component", [*where, "from"])
                return None
            for name in conv.vocab:
                self.vocab(name, [*where, "as"])

            def convert(ctx: Context) -> list[Any]:
                for p in paths:
                    fields = p.fields(ctx.msg, ctx.segment)
                    if not fields:
                        continue
                    out = []
                    for f in fields:
                        try:
                            v = conv.fn(f, ctx, options)
                        except MappingError as exc:
                            raise MappingError(exc.message, rule=label, field=p.spec) from exc
                        if v is not None:
                            out.append(v)
                    return out
                return []

            return convert
        if kind == "vocab":
            vm = self.vocab(raw["vocab"], [*where, "vocab"])
            if vm is None:
                return None
            if target.type not in _CODED:
                self.err(f"vocab: needs a code, Coding or CodeableConcept target; {full} is a {target.type}",
                         [*where, "to"])
                return None
            if target.enum:
                bad = sorted({t.code for ts in vm.rows.values() for t in ts if t.code not in target.enum})
                if bad:
                    self.err(f"map {vm.name} gives codes {full} does not allow: {', '.join(bad)}", [*where, "vocab"])
                    return None

            def shape(targets: tuple[Any, ...]) -> Any:
                if target.type == "code":
                    return targets[0].code
                if target.type == "boolean":
                    return targets[0].code == "true"
                if target.type == "Coding":
                    return targets[0].coding()
                return {"coding": [t.coding() for t in targets]}

            def translate(ctx: Context) -> list[Any]:
                for p in paths:
                    code = p.text(ctx.msg, ctx.segment)
                    if not code:
                        continue
                    targets = vm.lookup(code)
                    if targets:
                        return [shape(targets)]
                    if on_unmapped == "error":
                        raise MappingError(f"code not in map {vm.name}", rule=label, field=p.spec)
                    ctx.warn("CODE_UNMAPPED", label, p.spec, f"not in {vm.name}")
                    return []
                return []

            return translate
        if target.type not in _STRINGISH:
            self.err(f"{full} is a {target.type}: say how to convert with as: or vocab:", where)
            return None

        def text(ctx: Context) -> list[Any]:
            for p in paths:
                v = p.text(ctx.msg, ctx.segment)
                if v:
                    return [v]
            return []

        return text

    def resource(self, raw: dict[str, Any], where: list[str | int], names: set[str]) -> CompiledResource | None:
        rtype = raw["type"]
        try:
            resolve(rtype, "id")
        except (KeyError, ValueError):
            self.err(f"'{rtype}' is not a FHIR R4 resource type", [*where, "type"])
            return None
        key = [self.path(t, [*where, "id", i]) for i, t in enumerate(raw["id"])]
        rules = [self.rule(rtype, r, [*where, "rules", i], names) for i, r in enumerate(raw["rules"])]
        if any(k is None for k in key) or any(r is None for r in rules):
            return None
        return CompiledResource(raw["name"], rtype, raw.get("segment"), tuple(k for k in key if k),
                                raw.get("id_fallback", "error"), raw["request"], tuple(r for r in rules if r))


def compile_mapping(file: Path, schema_dir: Path, vocab_dir: Path, display: str | None = None) -> MappingSpec:
    doc = load_yaml(file, display=display)
    errors = validate(doc, load_schema(schema_dir / "mapping.schema.json"))
    if errors:
        raise ConfigErrors(errors)
    c = _Compiler(doc, vocab_dir)
    data = doc.data
    if data["name"] != file.parent.name:
        c.err(f"expected name '{file.parent.name}' (the folder name)", ["name"])
    names = [r["name"] for r in data["resources"]]
    for i, n in enumerate(names):
        if names.index(n) != i:
            c.err(f"resource name '{n}' used twice", ["resources", i, "name"])
    resources = [c.resource(r, ["resources", i], set(names)) for i, r in enumerate(data["resources"])]
    pk = c.path(data["patient_key"], ["patient_key"]) if data.get("patient_key") else None
    if c.errors:
        raise ConfigErrors(c.errors)
    return MappingSpec(
        name=data["name"], version=data["version"], file=doc.file, accepts=tuple(data["accepts"]),
        patient_key=pk, provenance=data.get("provenance", True),
        resources=tuple(r for r in resources if r is not None),
    )


def key_part(path: V2Path, ctx: Context) -> str:
    """One business-key part: a whole CX field counts as `system|value`, anything else as its text."""
    if path.component is None:
        fields = path.fields(ctx.msg, ctx.segment)
        if not fields or not fields[0].component(1):
            return ""
        return f"{identifier_system(fields[0], ctx, {}) or ''}|{fields[0].component(1)}"
    return path.text(ctx.msg, ctx.segment)
