"""Rule producers: what one rule reads from the message and turns into FHIR values.

A producer is checked at load (the converter or vocabulary map fits the target, the referenced
resource exists) and, at runtime, returns the values of its first valued source (empty when none):
a field's text, a datatype conversion (`as:`), a vocabulary lookup (`vocab:`), a fixed `value:`, or
references to another resource of the mapping (`ref:`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.config.yamlfile import load_yaml
from engine.errors import ConfigError, MappingError
from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes import CONVERTERS
from engine.mapping.paths import V2Path
from engine.mapping.scope import CompileScope
from engine.mapping.spec import RuleNode
from engine.mapping.systems import coding_system
from engine.mapping.targets import CODED, COMPATIBLE, STRINGISH, Target

__all__ = ["Produce", "producer", "sources"]

Produce = Callable[[Context], list[Any]]
_COMMON_OPTIONS = {"join", "type", "use", "system", "in_component", "local_map", "codeset"}


def sources(scope: CompileScope, node: RuleNode) -> list[V2Path] | None:
    """The rule's `from:` paths, compiled; None when one does not parse."""
    paths = []
    for i, text in enumerate(node.sources):
        p = scope.path(text, node.where.at("from", i) if node.sources_listed else node.where.at("from"))
        if p is None:
            return None
        paths.append(p)
    return paths


def producer(scope: CompileScope, rtype: str, node: RuleNode, target: Target, label: str) -> Produce | None:
    """The producer of one rule or switch case writing at `target`; None (and problems) when it cannot be."""
    where = node.where
    kinds = node.kinds
    if len(kinds) > 1:
        scope.err(f"use one of as, vocab, value, ref (got {', '.join(kinds)})", where)
        return None
    kind = kinds[0] if kinds else None
    paths = sources(scope, node)
    if paths is None:
        return None
    if not paths and kind not in ("value", "ref"):
        scope.err("missing 'from' (or give value: or ref:)", where)
        return None
    leaf = target.leaf
    full = f"{rtype}.{leaf.path}"
    options = dict(node.options)
    if kind == "ref":
        return _reference(scope, node, target, full, label, options)
    if kind == "value":
        value = node.value
        if leaf.enum and value not in leaf.enum:
            scope.err(f"{full} takes one of {', '.join(leaf.enum)}", where.at("value"))
            return None
        if isinstance(value, str) and "{base}" in value:  # a URI of ours (an extension, a code system)
            return lambda ctx: [value.replace("{base}", ctx.base)]
        return lambda ctx: [value]
    if kind == "as":
        return _convert(scope, node, target, paths, options, label)
    if kind == "vocab":
        return _translate(scope, node, target, paths, label)
    if leaf.type not in STRINGISH:
        scope.err(f"{full} is a {leaf.type}: say how to convert with as: or vocab:", where)
        return None
    return _text(paths, joiner(options, target))


def _text(paths: list[V2Path], join: str | None) -> Produce:
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


def _reference(scope: CompileScope, node: RuleNode, target: Target, full: str, label: str,
               options: dict[str, Any]) -> Produce | None:
    leaf = target.leaf
    if leaf.type != "Reference":
        scope.err(f"{full} is a {leaf.type}, not a Reference", node.where.at("to"))
        return None
    other = node.ref
    names = scope.names
    if other not in names:
        scope.err(f"no resource named '{other}' in this mapping (known: {', '.join(sorted(names))})",
                  node.where.at("ref"))
        return None
    assert other is not None
    if options.get("this_segment"):  # inside each_segment: the `other` made from the segment at hand
        def same(ctx: Context) -> list[Any]:
            return [{"reference": f"urn:uuid:{i.rid}"} for i in ctx.refs(other)
                    if i.anchor is not None and ctx.msg.segments[i.anchor] is ctx.segment]
        return same
    if options.get("others"):  # every other `other` of the message: the patients an A24 links to this one
        def others(ctx: Context) -> list[Any]:
            here, found = ctx.segment, ctx.instances.get(other, [])
            mine = {i.rid for i in found if i.anchor is not None and ctx.msg.segments[i.anchor] is here}
            rids = dict.fromkeys(i.rid for i in found if i.rid not in mine)  # never itself (one record sent twice)
            return [{"reference": f"urn:uuid:{r}"} for r in rids]
        return others
    if leaf.is_list or target.new_element_at is not None:
        return lambda ctx: [{"reference": f"urn:uuid:{i.rid}"} for i in ctx.refs(other)]
    other_type = scope.types.get(other, "")

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


def _convert(scope: CompileScope, node: RuleNode, target: Target, paths: list[V2Path], options: dict[str, Any],
             label: str) -> Produce | None:
    where, name = node.where, str(node.as_)
    conv = CONVERTERS.get(name)
    if conv is None:
        scope.err(f"unknown converter '{name}' (known: {', '.join(sorted(CONVERTERS))})", where.at("as"))
        return None
    leaf = target.leaf
    if target.polymorphic:
        missing = [t for t in conv.fhir_type.split("|") if t not in target.polymorphic]
        if missing:
            scope.err(f"{name} makes {conv.fhir_type}; value[x] here takes no {', '.join(missing)}", where.at("as"))
            return None
    elif conv.fhir_type != leaf.type and (conv.fhir_type, leaf.type) not in COMPATIBLE:
        scope.err(f"{name} makes a {conv.fhir_type} but {leaf.path} is a {leaf.type}", where.at("as"))
        return None
    if any(p.component for p in paths):
        scope.err(f"{name} reads whole fields: write the path without a component", where.at("from"))
        return None
    for vocab in conv.vocab:
        scope.vocab(vocab, where.at("as"))
    for key in conv.path_options:
        if key in options:
            p = scope.path(str(options[key]), where.at("options", key))
            if p is None:
                return None
            options[key] = p
    unknown = set(options) - set(conv.path_options) - _COMMON_OPTIONS
    if unknown:
        scope.err(f"unknown option(s) {', '.join(sorted(unknown))} for {name}", where.at("options"))
        return None
    codeset = options.get("codeset")
    if codeset is not None and not _is_codeset(scope.vocab_dir.parent / str(codeset)):
        scope.err(f"no code set '{codeset}' in nomenclatures/ (a folder whose _meta.yaml says kind: CodeSystem)",
                  where.at("options", "codeset"))
        return None

    join = joiner(options, target) if conv.fhir_type in STRINGISH else None
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
            if conv.fn_all is not None:  # every repetition into one value (a text's lines)
                try:
                    v = conv.fn_all(fields, ctx, options)
                except MappingError as exc:
                    _unreadable(exc, ctx, label, p.spec)
                    continue
                return [v] if v is not None else []
            for f in fields:
                try:
                    v = conv.fn(f, ctx, options)
                except MappingError as exc:
                    _unreadable(exc, ctx, label, p.spec)
                    continue
                if v is not None:
                    out.append(v)
            if out:
                # repetitions of a string into one string element: joined as the mapping says
                return [join.join(out)] if join is not None and len(out) > 1 else out
        return []

    return convert


def _unreadable(exc: MappingError, ctx: Context, label: str, spec: str) -> None:
    """A value that cannot be read (AL1-6 'MI' as a date) loses that element, not the message: warned, left
    out; the channel's `unmapped_codes: reject` fails the message instead."""
    if ctx.policy.get("unmapped_codes") == "reject":
        raise MappingError(exc.message, rule=label, field=spec) from exc
    ctx.warn("VALUE_INVALID", label, spec, exc.message)


def _translate(scope: CompileScope, node: RuleNode, target: Target, paths: list[V2Path],
               label: str) -> Produce | None:
    where, on_unmapped = node.where, node.on_unmapped
    vm = scope.vocab(str(node.vocab), where.at("vocab"))
    if vm is None:
        return None
    leaf = target.leaf
    full = leaf.path
    if leaf.type not in CODED:
        scope.err(f"vocab: needs a code, Coding or CodeableConcept target; {full} is a {leaf.type}", where.at("to"))
        return None
    if leaf.enum:
        bad = sorted({t.code for ts in vm.rows.values() for t in ts if t.code not in leaf.enum})
        if bad:
            scope.err(f"map {vm.name} gives codes {full} does not allow: {', '.join(bad)}", where.at("vocab"))
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
                # message until the map has it (engine.pipeline.parking releases it)
                ctx.warn("CODE_UNMAPPED", label, p.spec, f"not in {vm.name}", code_map=vm.name,
                         local_code=code)
                if kept is not None and on_unmapped != "drop":  # drop: a required binding (Condition.clinicalStatus)
                    out.append(kept)
            return out
        return []

    return translate


def joiner(options: dict[str, Any], target: Target) -> str | None:
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


def _is_codeset(folder: Path) -> bool:
    """A nomenclature folder the registry loads as a code set (`kind: CodeSystem`), checked when a mapping loads."""
    meta = folder / "_meta.yaml"
    if not meta.is_file():
        return False
    try:
        return (load_yaml(meta).data or {}).get("kind") == "CodeSystem"
    except ConfigError:
        return False
