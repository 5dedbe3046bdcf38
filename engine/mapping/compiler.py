"""Mapping files → compiled closures.

At load: the YAML is validated against `config/schema/mapping.schema.json`, segment maps named
under `include:` are read, every source path is parsed, every target path, cardinality and type
is checked against the FHIR R4 model, every vocabulary map is read. Any problem is a ConfigError
at the rule's `file:line`. At runtime the closures only read fields and build dicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from engine.config.validate import load_schema, validate
from engine.config.yamlfile import YamlDoc, load_yaml
from engine.errors import ConfigError, ConfigErrors, MappingError
from engine.hl7v2.er7 import Field
from engine.hl7v2.reference import field_info
from engine.mapping.conditions import ConditionError, Predicate, compile_condition, condition_paths
from engine.mapping.context import Context
from engine.mapping.coverage import Coverage, coverage
from engine.mapping.datatypes import CONVERTERS, coding_system, identifier_system
from engine.mapping.fhirmodel import Element, resolve
from engine.mapping.paths import V2Path, compile_path
from engine.nomenclature.vocab import VocabMap, load_vocab

__all__ = ["CompiledResource", "CompiledRule", "KeyAlt", "KeyPart", "MappingSpec", "compile_mapping", "key_part"]

Apply = Callable[[Context, dict[str, Any]], bool]   # True when it wrote something
Produce = Callable[[Context], list[Any]]
_STRINGISH = {"string", "code", "id", "uri", "markdown"}
_CODED = {"code", "Coding", "CodeableConcept", "boolean"}
_COMPATIBLE = {("date", "dateTime"), ("instant", "dateTime"), ("string", "markdown")}
_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True)
class CompiledRule:
    label: str
    target: str
    apply: Apply
    sourced: bool = True   # reads the message (not only a fixed value or a reference)


@dataclass(frozen=True, slots=True)
class KeyAlt:
    """One alternative of a key part, and where its assigning authority sits.

    An order number (EI.1) or a visit number (CX.1) means nothing without its namespace: two labs
    both number orders from 1000. `namespace` holds the paths of EI.2/EI.3 (or CX.4.1/CX.4.2);
    when they are empty the message's sender (MSH-3^MSH-4) scopes the value instead.
    """

    path: V2Path
    namespace: tuple[V2Path, ...] = ()

    @property
    def spec(self) -> str:
        return self.path.spec


@dataclass(frozen=True, slots=True)
class KeyPart:
    """Alternatives for one part of a business key: the first valued one is the part.
    An optional part (written `OBX-4?`) may be empty; a required empty part makes the key missing."""

    alts: tuple[KeyAlt, ...]
    optional: bool = False

    @property
    def spec(self) -> str:
        return "|".join(a.spec for a in self.alts) + ("?" if self.optional else "")


@dataclass(frozen=True)
class CompiledResource:
    name: str
    type: str
    segment: str | None
    for_each: str | None
    when: Predicate | None
    key: tuple[KeyPart, ...]
    id_fallback: str
    request: str
    rules: tuple[CompiledRule, ...]
    merge_duplicates: bool = False
    keep_earlier: tuple[tuple[str, Any], ...] = ()   # (element, the value meaning "not stated")


@dataclass(frozen=True)
class MappingSpec:
    name: str
    version: str
    file: str
    accepts: tuple[str, ...]
    patient_key: V2Path | None
    provenance: bool
    resources: tuple[CompiledResource, ...]
    coverage: Coverage | None = None   # which fields the mapping accounts for (FIELDS_NOT_MAPPED)


@dataclass(frozen=True)
class _Target:
    """A checked target path: its steps, which step opens a new list element, and the leaf element."""

    text: str
    steps: tuple[str, ...]
    new_element_at: int | None      # index of an intermediate `[]` step: one new element per value
    leaf: Element
    polymorphic: tuple[str, ...]    # for value[x]: the FHIR types the parent accepts there


Write = Callable[[dict[str, Any], list[Any]], bool]


def _writer(t: _Target, also: dict[str, Any] | None) -> Write:
    """A function writing values at the target; it returns False when repetitions did not fit a 0..1 element.

    Most targets are one step (`gender`, `identifier[]`): those get a writer without a loop.
    """
    steps = t.steps
    if t.new_element_at is None and len(steps) == 1 and not t.polymorphic:
        name = steps[0]
        if t.leaf.is_list:
            def extend(resource: dict[str, Any], values: list[Any]) -> bool:
                found = resource.get(name)
                if found is None:
                    resource[name] = list(values)
                else:
                    found.extend(values)
                return True
            return extend

        def put(resource: dict[str, Any], values: list[Any]) -> bool:
            resource[name] = values[0]
            return len(values) == 1
        return put
    return lambda resource, values: _write(resource, t, values, also)


def _write(resource: dict[str, Any], t: _Target, values: list[Any], also: dict[str, Any] | None) -> bool:
    """Write `values` at the target; returns False when repetitions did not fit a 0..1 element."""
    node = resource
    steps = t.steps
    if t.new_element_at is not None:
        i = t.new_element_at
        for step in steps[:i]:
            node = node.setdefault(step, {})
        items = node.setdefault(steps[i], [])
        for v in values:
            element: dict[str, Any] = dict(also or {})
            _write_leaf(element, steps[i + 1:], [v], t)
            items.append(element)
        return True
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    return _write_leaf(node, steps[-1:], values, t)


def _has(resource: dict[str, Any], steps: tuple[str, ...]) -> bool:
    node: Any = resource
    for step in steps:
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _write_leaf(node: dict[str, Any], steps: tuple[str, ...], values: list[Any], t: _Target) -> bool:
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    last = steps[-1]
    if t.polymorphic:  # value[x]: the converter names the choice ({"valueRange": …})
        node.update(values[0])
        return len(values) == 1
    if t.leaf.is_list:
        node.setdefault(last, []).extend(values)
        return True
    node[last] = values[0]
    return len(values) == 1


class _Compiler:
    def __init__(self, doc: YamlDoc, vocab_dir: Path, segments_dir: Path, schema: Draft202012Validator,
                 reads: set[tuple[str, int]] | None = None) -> None:
        self.doc = doc
        self.vocab_dir = vocab_dir
        self.segments_dir = segments_dir
        self.schema = schema
        self.errors: list[ConfigError] = []
        self.reads: set[tuple[str, int]] = set() if reads is None else reads
        self.types: dict[str, str] = {}   # resource name → FHIR type, for the references between them

    def err(self, message: str, path: list[str | int], field: str | None = None) -> None:
        self.errors.append(self.doc.error(message, path, field=field))

    def path(self, text: str, where: list[str | int]) -> V2Path | None:
        try:
            p = compile_path(text)
        except ValueError as exc:
            self.err(str(exc), where)
            return None
        self.reads.add((p.segment, p.field))
        return p

    def vocab(self, name: str, where: list[str | int]) -> VocabMap | None:
        try:
            return load_vocab(self.vocab_dir, name)
        except ConfigError as exc:
            self.errors.append(exc if exc.line else self.doc.error(exc.message, where))
            return None

    def condition(self, raw: dict[str, Any] | None, where: list[str | int]) -> Predicate | None:
        if not raw:
            return None
        try:
            predicate = compile_condition(raw, where)
        except ConditionError as exc:
            self.err(str(exc), exc.where)
            return None
        for text in condition_paths(raw):
            p = compile_path(text)
            self.reads.add((p.segment, p.field))
        return predicate

    def target(self, rtype: str, to: str, where: list[str | int], base: tuple[str, ...] = ()) -> _Target | None:
        """Check `to` under `rtype` (below `base`, the element a `fields:` group builds)."""
        steps = to.split(".")
        plain = [s.removesuffix("[]") for s in steps]
        prefix = ".".join(base) + "." if base else ""
        new_at: int | None = None
        polymorphic: tuple[str, ...] = ()
        leaf: Element | None = None
        for i, step in enumerate(steps):
            if plain[i] == "value[x]":
                if i != len(steps) - 1:
                    self.err("value[x] can only end a path", [*where, "to"])
                    return None
                parent = prefix + ".".join(plain[:i])
                parent = parent.rstrip(".")
                polymorphic = tuple(self._choices(rtype, parent))
                if not polymorphic:
                    self.err(f"{rtype}{'.' + parent if parent else ''} has no value[x]", [*where, "to"])
                    return None
                leaf = Element(".".join(plain), "value[x]", False)
                break
            try:
                leaf = resolve(rtype, prefix + ".".join(plain[: i + 1]))
            except KeyError as exc:
                self.err(f"{exc.args[0]} (FHIR R4 {rtype})", [*where, "to"])
                return None
            marked = step.endswith("[]")
            last = i == len(steps) - 1
            if leaf.is_list != marked:
                card = f"0..*: write it as '{plain[i]}[]'" if leaf.is_list else "0..1: drop the '[]'"
                self.err(f"{rtype}.{leaf.path} is {card}", [*where, "to"])
                return None
            if marked and not last:
                if new_at is not None:
                    self.err("only one list step may open new elements in a path", [*where, "to"])
                    return None
                new_at = i
        assert leaf is not None
        return _Target(to, tuple(plain), new_at, leaf, polymorphic)

    @staticmethod
    def _choices(rtype: str, prefix: str) -> list[str]:
        out = []
        for t in ("Quantity", "CodeableConcept", "string", "boolean", "integer", "Range", "Ratio", "SampledData",
                  "time", "dateTime", "Period"):
            try:
                resolve(rtype, f"{prefix + '.' if prefix else ''}value{t[0].upper()}{t[1:]}")
                out.append(t)
            except KeyError:
                continue
        return out

    def sources(self, raw: dict[str, Any], where: list[str | int]) -> list[V2Path] | None:
        sources = raw.get("from")
        texts = [sources] if isinstance(sources, str) else (sources or [])
        paths = []
        for i, text in enumerate(texts):
            p = self.path(text, [*where, "from", i] if isinstance(sources, list) else [*where, "from"])
            if p is None:
                return None
            paths.append(p)
        return paths

    def rule(self, rtype: str, raw: dict[str, Any], where: list[str | int], names: set[str],
             base: tuple[str, ...] = ()) -> CompiledRule | None:
        label = str(raw.get("id") or raw.get("ig") or raw["to"])
        target = self.target(rtype, raw["to"], where, base)
        if target is None:
            return None
        if "fields" in raw:
            return self.group(rtype, raw, target, label, where, names, base)
        when = self.condition(raw.get("when"), [*where, "when"])
        also = raw.get("also")
        if also is not None:
            if target.new_element_at is None:
                self.err("also: needs a path that opens a new list element, like participant[].individual",
                         [*where, "also"])
                return None
            base = ".".join(target.steps[: target.new_element_at + 1])
            for key in also:
                try:
                    resolve(rtype, f"{base}.{key}")
                except KeyError as exc:
                    self.err(f"{exc.args[0]} (FHIR R4 {rtype})", [*where, "also", key])
                    return None
        if "switch" in raw:
            produce = self._switch(rtype, raw, target, label, names, where, base)
        else:
            produce = self._producer(rtype, raw, target, label, names, where)
        if produce is None:
            return None
        default = raw.get("default") if "switch" not in raw else None
        if default is not None and target.leaf.enum and default not in target.leaf.enum:
            self.err(f"{rtype}.{target.leaf.path} takes one of {', '.join(target.leaf.enum)}", [*where, "default"])
            return None
        join = (raw.get("options") or {}).get("join")
        if_absent = bool(raw.get("if_absent"))
        each = bool(raw.get("each_segment"))
        paths = self.sources(raw, where) or []
        seg_name = paths[0].segment if paths else None
        if each and seg_name is None:
            self.err("each_segment needs a 'from' path", where)
            return None

        def each_segment(ctx: Context) -> list[Any]:
            scope = ctx.scope or ctx.msg.tree.root
            saved = ctx.segment
            out: list[Any] = []
            try:
                for i in ctx.msg.tree.own(seg_name, scope):  # type: ignore[arg-type]
                    ctx.segment = ctx.msg.segments[i]
                    out.extend(produce(ctx))
            finally:
                ctx.segment = saved
            return out

        run = each_segment if each else produce
        write = _writer(target, also)
        plain = when is None and not if_absent and default is None and join is None

        def apply_plain(ctx: Context, resource: dict[str, Any]) -> bool:
            """The common rule (no condition, default or join): read, write."""
            values = run(ctx)
            if not values:
                return False
            if not write(resource, values):
                ctx.warn("REPETITIONS_NOT_MAPPED", label, paths[0].spec if paths else target.text,
                         f"{rtype}.{target.leaf.path} holds one value; {len(values) - 1} more dropped")
            return True

        def apply(ctx: Context, resource: dict[str, Any]) -> bool:
            if when is not None and not when(ctx):
                return False
            if if_absent and _has(resource, target.steps):
                return False
            values = run(ctx)
            if not values and default is not None:
                values = [default]
                if paths:
                    ctx.warn("DEFAULT_USED", label, "|".join(p.spec for p in paths), "source not valued or not mapped")
            if not values:
                return False
            if join is not None and len(values) > 1 and not target.leaf.is_list and target.new_element_at is None:
                values = [join.join(str(v) for v in values)]
            if not write(resource, values):
                ctx.warn("REPETITIONS_NOT_MAPPED", label, paths[0].spec if paths else target.text,
                         f"{rtype}.{target.leaf.path} holds one value; {len(values) - 1} more dropped")
            return True

        # a ref to the resource made from the segment at hand counts as read from the message
        sourced = bool(paths) or "switch" in raw or bool((raw.get("options") or {}).get("this_segment"))
        return CompiledRule(label, target.text, apply_plain if plain else apply, sourced)

    def group(self, rtype: str, raw: dict[str, Any], target: _Target, label: str, where: list[str | int],
              names: set[str], base: tuple[str, ...]) -> CompiledRule | None:
        """`fields:`: one element (a location with its period and status) built from several fields.

        The element is written only when a rule that reads the message wrote into it: the fixed
        values beside (an extension's url) never make an element on their own.
        """
        if target.new_element_at is not None or target.polymorphic or target.leaf.type[:1].islower():
            self.err("fields: builds one element with children, like location[] or hospitalization; "
                     f"{target.text} is not one", [*where, "to"])
            return None
        bad = [k for k in ("from", "as", "vocab", "value", "ref", "switch", "also", "default") if k in raw]
        if bad:
            self.err(f"with fields:, the element's rules say where values come from, not {', '.join(bad)}", where)
            return None
        when = self.condition(raw.get("when"), [*where, "when"])
        inner = (*base, *target.steps)
        # warnings from inside the element name the group
        fields = [f if ("id" in f or "ig" in f) else {**f, "id": label} for f in raw["fields"]]
        subs = [self.rule(rtype, f, [*where, "fields", i], names, inner) for i, f in enumerate(fields)]
        if any(r is None for r in subs):
            return None
        rules = tuple(r for r in subs if r is not None)
        name, is_list = target.steps[-1], target.leaf.is_list
        parents = target.steps[:-1]
        each = None
        if raw.get("each_segment"):  # one element per such segment of the resource's group (NTE notes, DG1s)
            firsts = [f["from"] if isinstance(f["from"], str) else f["from"][0] for f in fields if "from" in f]
            each = compile_path(firsts[0]).segment if firsts else None
            if each is None or not is_list:
                self.err("each_segment with fields: needs a list target and a field rule with 'from'", where)
                return None

        def apply(ctx: Context, resource: dict[str, Any]) -> bool:
            if each is None:
                return one(ctx, resource)
            scope = ctx.scope or ctx.msg.tree.root
            saved, wrote = ctx.segment, False
            try:
                for i in ctx.msg.tree.own(each, scope):
                    ctx.segment = ctx.msg.segments[i]
                    wrote = one(ctx, resource) or wrote
            finally:
                ctx.segment = saved
            return wrote

        def one(ctx: Context, resource: dict[str, Any]) -> bool:
            if when is not None and not when(ctx):
                return False
            element: dict[str, Any] = {}
            wrote = False
            for r in rules:
                if r.apply(ctx, element) and r.sourced:
                    wrote = True
            if not wrote:
                return False
            node = resource
            for step in parents:
                node = node.setdefault(step, {})
            if is_list:
                node.setdefault(name, []).append(element)
            else:
                node.setdefault(name, {}).update(element)
            return True

        return CompiledRule(label, target.text, apply, any(r.sourced for r in rules))

    def _switch(self, rtype: str, raw: dict[str, Any], target: _Target, label: str, names: set[str],
                where: list[str | int], base: tuple[str, ...] = ()) -> Produce | None:
        """`switch: OBX-2` with `cases:` keyed by code (`ST|TX|FT` for several), each a small rule."""
        on = self.path(raw["switch"], [*where, "switch"])
        cases = raw.get("cases") or {}
        if on is None or not cases:
            if not cases:
                self.err("switch needs cases", where)
            return None
        default = raw.get("default", "error")
        if default not in ("error", "skip"):
            self.err("with switch, default is 'error' or 'skip'", [*where, "default"])
            return None
        table: dict[str, tuple[Produce, _Target]] = {}
        for key, case in cases.items():
            here = [*where, "cases", key]
            t = self.target(rtype, case["to"], here, base) if case["to"] != raw["to"] else target
            if t is None:
                continue
            same_place = t.steps == target.steps if not target.polymorphic else (
                t.steps[:-1] == target.steps[:-1] and t.new_element_at == target.new_element_at)
            if not same_place:
                self.err(f"a case writes the switch's target ({raw['to']}), not elsewhere", [*here, "to"])
                continue
            p = self._producer(rtype, case, t, label, names, here)
            if p is None:
                continue
            for code in str(key).split("|"):
                table[code.strip()] = (p, t)
        if self.errors:
            return None

        def produce(ctx: Context) -> list[Any]:
            code = on.text(ctx).strip()
            if not code:
                return []
            found = table.get(code) or table.get(code.upper())
            if found is None:
                if default == "error":
                    raise MappingError(f"no case for {on.spec} = '{code}' (known: {', '.join(sorted(table))})",
                                       rule=label, field=on.spec)
                ctx.warn("CASE_UNMAPPED", label, on.spec)
                return []
            p, t = found
            values = p(ctx)
            if not values:
                return []
            last = t.steps[-1]
            # each case names its own leaf (valueQuantity, valueString …): hand back {leaf: value} pairs
            return [v if (t.polymorphic or not target.polymorphic) else {last: v} for v in values]

        return produce

    def _producer(self, rtype: str, raw: dict[str, Any], target: _Target, label: str, names: set[str],
                  where: list[str | int]) -> Produce | None:
        kinds = [k for k in ("as", "vocab", "value", "ref") if k in raw]
        if len(kinds) > 1:
            self.err(f"use one of as, vocab, value, ref (got {', '.join(kinds)})", where)
            return None
        kind = kinds[0] if kinds else None
        paths = self.sources(raw, where)
        if paths is None:
            return None
        if not paths and kind not in ("value", "ref"):
            self.err("missing 'from' (or give value: or ref:)", where)
            return None
        leaf = target.leaf
        full = f"{rtype}.{leaf.path}"
        on_unmapped = raw.get("on_unmapped", "warn")
        options = dict(raw.get("options") or {})
        if kind == "ref":
            if leaf.type != "Reference":
                self.err(f"{full} is a {leaf.type}, not a Reference", [*where, "to"])
                return None
            other = raw["ref"]
            if other not in names:
                self.err(f"no resource named '{other}' in this mapping (known: {', '.join(sorted(names))})",
                         [*where, "ref"])
                return None
            if options.get("this_segment"):  # inside each_segment: the `other` made from the segment at hand
                def same(ctx: Context) -> list[Any]:
                    return [{"reference": f"urn:uuid:{i.rid}"} for i in ctx.refs(other)
                            if i.anchor is not None and ctx.msg.segments[i.anchor] is ctx.segment]
                return same
            if leaf.is_list or target.new_element_at is not None:
                return lambda ctx: [{"reference": f"urn:uuid:{i.rid}"} for i in ctx.refs(other)]
            other_type = self.types.get(other, "")

            def one(ctx: Context) -> list[Any]:
                """A 0..1 reference with two candidates in sight (two patients for one Encounter) is never
                guessed: to a Patient the message fails, to anything else the reference is left out."""
                found = ctx.refs(other)
                if len(found) == 1:
                    return [{"reference": f"urn:uuid:{found[0].rid}"}]
                rids = list(dict.fromkeys(i.rid for i in found))
                if len(rids) <= 1:
                    return [{"reference": f"urn:uuid:{r}"} for r in rids]
                if other_type == "Patient":
                    raise MappingError(f"{full}: {len(rids)} patients in sight, the message does not say which "
                                       "one this belongs to; the sender must send one message per patient",
                                       rule=label, field=full)
                ctx.warn("REFERENCE_AMBIGUOUS", label, full, f"{len(rids)} {other} resources in sight: left out")
                return []
            return one
        if kind == "value":
            value = raw["value"]
            if leaf.enum and value not in leaf.enum:
                self.err(f"{full} takes one of {', '.join(leaf.enum)}", [*where, "value"])
                return None
            return lambda ctx: [value]
        if kind == "as":
            return self._convert(raw, target, paths, options, label, where)
        if kind == "vocab":
            return self._translate(raw, target, paths, on_unmapped, label, where)
        if leaf.type not in _STRINGISH:
            self.err(f"{full} is a {leaf.type}: say how to convert with as: or vocab:", where)
            return None

        join = _joiner(options, target)

        def text(ctx: Context) -> list[Any]:
            for p in paths:
                if p.rep is None:
                    vals = [f.component(p.component or 1, p.subcomponent or 1) for f in p.fields(ctx)]
                    vals = [v for v in vals if v]
                    if vals:
                        return [join.join(vals)] if join is not None and len(vals) > 1 else vals
                    continue
                v = p.text(ctx)
                if v:
                    return [v]
            return []

        return text

    def _convert(self, raw: dict[str, Any], target: _Target, paths: list[V2Path], options: dict[str, Any],
                 label: str, where: list[str | int]) -> Produce | None:
        conv = CONVERTERS.get(raw["as"])
        if conv is None:
            self.err(f"unknown converter '{raw['as']}' (known: {', '.join(sorted(CONVERTERS))})", [*where, "as"])
            return None
        leaf = target.leaf
        if target.polymorphic:
            missing = [t for t in conv.fhir_type.split("|") if t not in target.polymorphic]
            if missing:
                self.err(f"{raw['as']} makes {conv.fhir_type}; value[x] here takes no {', '.join(missing)}",
                         [*where, "as"])
                return None
        elif conv.fhir_type != leaf.type and (conv.fhir_type, leaf.type) not in _COMPATIBLE:
            self.err(f"{raw['as']} makes a {conv.fhir_type} but {leaf.path} is a {leaf.type}", [*where, "as"])
            return None
        if any(p.component for p in paths):
            self.err(f"{raw['as']} reads whole fields: write the path without a component", [*where, "from"])
            return None
        for name in conv.vocab:
            self.vocab(name, [*where, "as"])
        for key in conv.path_options:
            if key in options:
                p = self.path(str(options[key]), [*where, "options", key])
                if p is None:
                    return None
                options[key] = p
        unknown = set(options) - set(conv.path_options) - {"join", "type", "use", "system", "in_component", "local_map"}
        if unknown:
            self.err(f"unknown option(s) {', '.join(sorted(unknown))} for {raw['as']}", [*where, "options"])
            return None

        join = _joiner(options, target) if conv.fhir_type in _STRINGISH else None
        # a path without [n] reads the first repetition: the others are reported, never dropped in silence
        every = {p.spec: replace(p, rep=None) for p in paths if p.rep == 1 and "[" not in p.spec}

        def convert(ctx: Context) -> list[Any]:
            for p in paths:
                fields = p.fields(ctx)
                if not fields:
                    continue
                whole = every.get(p.spec)
                if whole is not None:
                    seg = ctx.segment  # the rule's own segment, most often: its repetitions are split already
                    more = (len(seg.valued(p.field)) > 1 if len(seg.repetitions(p.field)) > 1 else False) \
                        if seg is not None and seg.name == p.segment else len(whole.fields(ctx)) > 1
                    if more:
                        ctx.warn("REPETITIONS_NOT_MAPPED", label, p.spec, "only the first repetition is mapped")
                ctx.rule, ctx.field_spec = label, p.spec
                out = []
                for f in fields:
                    try:
                        v = conv.fn(f, ctx, options)
                    except MappingError as exc:
                        # a value that cannot be read (AL1-6 'MI' as a date) loses that element, not the
                        # message: warned, left out; the channel's `unmapped_codes: reject` fails instead
                        if ctx.policy.get("unmapped_codes") == "reject":
                            raise MappingError(exc.message, rule=label, field=p.spec) from exc
                        ctx.warn("VALUE_INVALID", label, p.spec, exc.message)
                        continue
                    if v is not None:
                        out.append(v)
                if out:
                    # repetitions of a string into one string element: joined as the mapping says
                    return [join.join(out)] if join is not None and len(out) > 1 else out
            return []

        return convert

    def _translate(self, raw: dict[str, Any], target: _Target, paths: list[V2Path], on_unmapped: str,
                   label: str, where: list[str | int]) -> Produce | None:
        vm = self.vocab(raw["vocab"], [*where, "vocab"])
        if vm is None:
            return None
        leaf = target.leaf
        full = leaf.path
        if leaf.type not in _CODED:
            self.err(f"vocab: needs a code, Coding or CodeableConcept target; {full} is a {leaf.type}", [*where, "to"])
            return None
        if leaf.enum:
            bad = sorted({t.code for ts in vm.rows.values() for t in ts if t.code not in leaf.enum})
            if bad:
                self.err(f"map {vm.name} gives codes {full} does not allow: {', '.join(bad)}", [*where, "vocab"])
                return None

        kind = leaf.type
        in_extension = "extension" in full  # an extension's value is bound by its profile: never a guess

        def shape(targets: tuple[Any, ...], cwe: Field | None, ctx: Context) -> Any:
            if kind == "code":
                return targets[0].code
            if kind == "boolean":
                return targets[0].code == "true"
            codings = [t.coding() for t in targets]
            if cwe is not None:
                _keep_cwe(codings, cwe, ctx, kind == "Coding")
            if kind == "Coding":
                return codings[0]
            out: dict[str, Any] = {"coding": codings}
            if cwe is not None:
                text = cwe.component(9) or cwe.component(2)
                if text and (cwe.component(9) or all(text.casefold() != c.get("display", "").casefold()
                                                     for c in codings)):
                    out["text"] = text  # IG CWE.9 → text; the sender's CWE.2 is kept when no display says it
            return out

        def unmapped(code: str, cwe: Field | None, ctx: Context) -> Any:
            """An HL7 table code the map does not know, kept as the IG keeps a CWE with no known system: a
            CodeableConcept gets the code without a system (CWE.2 as display, CWE.9 or CWE.2 as text), a single
            Coding (Encounter.class) the code alone. A code or boolean (bound to a closed value set), or an
            extension's Coding, gets nothing: the rule's default, if any, fills a required element."""
            if kind == "Coding" and not in_extension:  # Encounter.class: the code as sent, without a system
                return {"code": code}
            if kind != "CodeableConcept":
                return None
            coding = {"code": code}
            system = coding_system(ctx, cwe.component(3)) if cwe is not None and cwe.component(3) else None
            if system:  # the system the sender named (CWE-3, IG CWE[CodeableConcept]), as CWE.CodeableConcept does
                coding = {"system": system, "code": code}
            display = cwe.component(2) if cwe is not None else ""
            if display:
                coding["display"] = display
            text = (cwe.component(9) or display) if cwe is not None else ""
            return {"coding": [coding], "text": text} if text else {"coding": [coding]}

        def translate(ctx: Context) -> list[Any]:
            for p in paths:
                whole = p.component is None
                found = [(f.component(p.component or 1, p.subcomponent or 1), f) for f in p.fields(ctx)]
                found = [(c, f) for c, f in found if c]
                if not found:
                    continue
                out = []
                for code, f in found:
                    targets = vm.lookup(code)
                    if targets:
                        out.append(shape(targets, f if whole else None, ctx))
                        continue
                    if on_unmapped == "error" or ctx.policy.get("unmapped_codes") == "reject":
                        raise MappingError(f"code not in map {vm.name}", rule=label, field=p.spec)
                    kept = unmapped(code, f if whole else None, ctx)
                    # the table code (never a patient's value) and its map: `unmapped_codes: park` holds the
                    # message until the map has it (engine.parking releases it)
                    ctx.warn("CODE_UNMAPPED", label, p.spec, f"not in {vm.name}", code_map=vm.name,
                             local_code=code)
                    if kept is not None:
                        out.append(kept)
                return out
            return []

        return translate

    def resource(self, raw: dict[str, Any], where: list[str | int], names: set[str]) -> CompiledResource | None:
        rtype = raw["type"]
        try:
            resolve(rtype, "id")
        except (KeyError, ValueError):
            self.err(f"'{rtype}' is not a FHIR R4 resource type", [*where, "type"])
            return None
        for element in raw.get("keep_earlier") or {}:
            try:
                resolve(rtype, str(element))
            except (KeyError, ValueError):
                self.err(f"keep_earlier: {rtype} has no element '{element}'", [*where, "keep_earlier", element])
                return None
        if raw.get("keep_earlier") and raw["request"] != "put":
            self.err("keep_earlier needs request: put (the resource is known by its id)", [*where, "keep_earlier"])
            return None
        key: list[KeyPart] = []
        for i, spec in enumerate(raw["id"]):
            text = str(spec).strip()
            optional = text.endswith("?")
            alts = [self.path(t, [*where, "id", i]) for t in text.removesuffix("?").split("|")]
            if any(a is None for a in alts):
                return None
            key.append(KeyPart(tuple(_key_alt(a) for a in alts if a), optional))
        rules: list[CompiledRule | None] = []
        for inc in raw.get("include", []):
            rules.extend(self.include(inc, rtype, names, [*where, "include"]))
        rules.extend(self.rule(rtype, r, [*where, "rules", i], names) for i, r in enumerate(raw.get("rules", [])))
        when = self.condition(raw.get("when"), [*where, "when"])
        if any(r is None for r in rules):
            return None
        for_each = raw.get("for_each")
        return CompiledResource(raw["name"], rtype, raw.get("segment"), for_each, when, tuple(key),
                                raw.get("id_fallback", "error"), raw["request"], tuple(r for r in rules if r),
                                raw.get("duplicates", "keep") == "merge",
                                tuple((str(k), v) for k, v in (raw.get("keep_earlier") or {}).items()))

    def include(self, name: str, rtype: str, names: set[str], where: list[str | int]) -> list[CompiledRule | None]:
        """A segment map's rules, compiled for this resource; its errors point into its own file."""
        file = self.segments_dir / f"{name}.yaml"
        if not file.exists():
            self.err(f"no segment map '{name}' ({file} not found)", where)
            return [None]
        try:
            doc = load_yaml(file, display=_display(file))
        except ConfigError as exc:
            self.errors.append(exc)
            return [None]
        schema = Draft202012Validator({"$ref": "#/$defs/segment_map", "$defs": self.schema.schema["$defs"]})
        errors = validate(doc, schema)
        if errors:
            self.errors.extend(errors)
            return [None]
        if doc.data["target"] != rtype:
            self.err(f"segment map '{name}' writes {doc.data['target']}, not {rtype}", where)
            return [None]
        sub = _Compiler(doc, self.vocab_dir, self.segments_dir, self.schema, self.reads)
        out = [sub.rule(rtype, r, ["rules", i], names) for i, r in enumerate(doc.data["rules"])]
        self.errors.extend(sub.errors)
        return out


def _joiner(options: dict[str, Any], target: _Target) -> str | None:
    """`options: {join: …}`: the separator when repetitions go into one string element (not a list)."""
    join = options.get("join")
    if join is None or target.leaf.is_list or target.new_element_at is not None:
        return None
    return str(join)


def _keep_cwe(codings: list[dict[str, str]], cwe: Field, ctx: Context, single: bool) -> None:
    """A vocabulary-mapped CWE keeps what the sender said (IG CWE[CodeableConcept]): CWE.7 is the version
    of the sender's system, so it goes on the mapped coding of that system; when the map moved the code to
    another system, the sender's own coding (CWE.1-3, CWE.7) is kept beside it (not for a single Coding)."""
    version = cwe.component(7)
    named = cwe.component(3)
    system = coding_system(ctx, named) if named else None
    same = [c for c in codings if system is not None and c.get("system") == system]
    for c in same:
        if version:
            c["version"] = version
        if "display" not in c and cwe.component(2):
            c["display"] = cwe.component(2)
    if same or not version or single:
        return
    own: dict[str, str] = {"system": system} if system else {}
    own.update(version=version, code=cwe.component(1))
    if cwe.component(2):
        own["display"] = cwe.component(2)
    codings.append(own)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def compile_mapping(file: Path, schema_dir: Path, vocab_dir: Path, display: str | None = None) -> MappingSpec:
    doc = load_yaml(file, display=display)
    schema = load_schema(schema_dir / "mapping.schema.json")
    errors = validate(doc, schema)
    if errors:
        raise ConfigErrors(errors)
    c = _Compiler(doc, vocab_dir, file.parent.parent / "segments", schema)
    data = doc.data
    if data["name"] != file.parent.name:
        c.err(f"expected name '{file.parent.name}' (the folder name)", ["name"])
    names = [r["name"] for r in data["resources"]]
    for i, n in enumerate(names):
        if names.index(n) != i:
            c.err(f"resource name '{n}' used twice", ["resources", i, "name"])
    c.types = {r["name"]: r["type"] for r in data["resources"]}
    resources = [c.resource(r, ["resources", i], set(names)) for i, r in enumerate(data["resources"])]
    pk = c.path(data["patient_key"], ["patient_key"]) if data.get("patient_key") else None
    if c.errors:
        raise ConfigErrors(c.errors)
    return MappingSpec(
        name=data["name"], version=data["version"], file=doc.file, accepts=tuple(data["accepts"]),
        patient_key=pk, provenance=data.get("provenance", True),
        resources=tuple(r for r in resources if r is not None),
        coverage=coverage(c.reads, list(data.get("ignore", {}))),
    )


# Fields whose first component is a number issued by an authority named in later components.
_NAMESPACED = {"EI": ((2,), (3,)), "CX": ((4, 1), (4, 2)), "EIP": None}


def _key_alt(path: V2Path) -> KeyAlt:
    """Compile-time: where the namespace of this key path's value sits (hl7apy's datatype of the field)."""
    info = field_info(path.segment, path.field)
    datatype = info[0] if info else ""
    rep = "*" if path.rep is None else str(path.rep)
    head = f"{path.segment}-{path.field}[{rep}]"
    if datatype in ("EI", "CX") and path.component == 1 and path.subcomponent in (None, 1):
        where = _NAMESPACED[datatype] or ()
        return KeyAlt(path, tuple(compile_path(f"{head}." + ".".join(map(str, w))) for w in where))
    if datatype == "EIP" and path.component in (1, 2) and path.subcomponent == 1:  # EIP.n is an EI
        c = path.component
        return KeyAlt(path, (compile_path(f"{head}.{c}.2"), compile_path(f"{head}.{c}.3")))
    return KeyAlt(path)


def sender_namespace(ctx: Context) -> str:
    """The sending application and facility (MSH-3^MSH-4): who issued an unscoped number."""
    known = ctx.memo.get("sender_namespace")
    if known is not None:
        return known
    app, facility = ctx.msg.sending_application, ctx.msg.sending_facility
    if app == '""':
        app = ""
    if facility == '""':
        facility = ""
    known = ctx.memo["sender_namespace"] = f"{app}^{facility}" if (app or facility) else ""
    return known


def key_part(part: KeyPart | V2Path, ctx: Context) -> str:
    """One business-key part: the first valued alternative; a whole CX field counts as `system|value`,
    an EI or CX number as `namespace|value` (its assigning authority, else the message's sender)."""
    alts = (KeyAlt(part),) if isinstance(part, V2Path) else part.alts
    for alt in alts:
        path = alt.path
        if path.component is None:
            fields = path.fields(ctx)
            if not fields or not fields[0].component(1) or fields[0].component(1) == '""':
                continue
            f = fields[0]
            known = ctx.cx_keys.get(id(f))  # PID-3 keys the patient and everything made for them
            if known is None:
                system = identifier_system(f, ctx, {})
                if not system:
                    raise MappingError(f"{path.spec} has no namespace: no assigning authority (CX-4), no channel "
                                       "sender and no MSH-3/MSH-4; the identifier would merge patients of "
                                       "every sender", field=path.spec)
                known = ctx.cx_keys[id(f)] = f"{system}|{f.component(1)}"
            return known
        text = path.text(ctx)
        if not text:
            continue
        if not alt.namespace:
            return text
        ns = "^".join(p.text(ctx) for p in alt.namespace).rstrip("^") or sender_namespace(ctx)
        if not ns:
            raise MappingError(f"{path.spec} has no namespace: no assigning authority and no MSH-3/MSH-4; "
                               "the number would be shared with every other sender", field=path.spec)
        return f"{ns}|{text}"
    return ""


def is_segment_id(name: str) -> bool:
    return bool(_SEGMENT.match(name))
