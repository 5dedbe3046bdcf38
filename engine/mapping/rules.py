"""A rule node → a compiled rule: its producer wrapped in what the rule says around it.

Around the producer (`engine.mapping.producers`) a rule may add a condition (`when:`), a fallback
(`if_absent:`), a `default:`, a `join` of repetitions, one pass per segment (`each_segment:`), and
constant siblings (`also:`). Two forms are structural: `switch:` picks a producer per code, and
`fields:` builds one element from several rules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.errors import MappingError
from engine.hl7v2.groups import Group, GroupTree
from engine.mapping.compiled import CompiledRule
from engine.mapping.context import Context
from engine.mapping.paths import compile_path
from engine.mapping.producers import Produce, producer, sources
from engine.mapping.scope import CompileScope
from engine.mapping.spec import RuleNode
from engine.mapping.targets import Target, check_target, element_problem
from engine.mapping.writers import has, writer

__all__ = ["compile_rule"]

def compile_rule(scope: CompileScope, rtype: str, node: RuleNode, base: tuple[str, ...] = ()) -> CompiledRule | None:
    """Compile one rule of a resource of type `rtype` (below `base` inside a `fields:` group)."""
    where = node.where
    label = node.label
    target = check_target(scope, rtype, node.to, where, base)
    if target is None:
        return None
    if node.fields is not None:
        return _group(scope, rtype, node, target, label, base)
    when = scope.condition(node.when, where.at("when"))
    also = node.also
    if also is not None:
        if target.new_element_at is None:
            scope.err("also: needs a path that opens a new list element, like participant[].individual",
                      where.at("also"))
            return None
        opened = ".".join(target.steps[: target.new_element_at + 1])
        for key in also:
            problem = element_problem(rtype, f"{opened}.{key}")
            if problem is not None:
                scope.err(problem, where.at("also", key))
                return None
    if node.is_switch:
        produce = _switch(scope, rtype, node, target, label, base)
    else:
        produce = producer(scope, rtype, node, target, label)
    if produce is None:
        return None
    default = node.default if not node.is_switch else None
    if default is not None and target.leaf.enum and default not in target.leaf.enum:
        scope.err(f"{rtype}.{target.leaf.path} takes one of {', '.join(target.leaf.enum)}", where.at("default"))
        return None
    join = node.options.get("join")
    if_absent = node.if_absent
    each = node.each_segment
    paths = sources(scope, node) or []
    seg_name = paths[0].segment if paths else None
    if each and seg_name is None:
        scope.err("each_segment needs a 'from' path", where)
        return None
    in_groups = None   # GROUP/SEG: the SEG segments of every GROUP occurrence in scope; */SEG: every SEG in scope
    if isinstance(each, str):
        in_groups, _, each_seg = each.partition("/")
        if each_seg != seg_name:
            scope.err(f"each_segment {each} reads {each_seg} segments: its 'from' path must name {each_seg}", where)
            return None

    def each_segment(ctx: Context) -> list[Any]:
        tree = ctx.msg.tree
        within = ctx.scope or tree.root
        saved = ctx.segment
        out: list[Any] = []
        try:
            for i, _ in _segments_in(tree, seg_name, within, in_groups):  # type: ignore[arg-type]  # checked not None
                ctx.touched.add(i)
                ctx.segment = ctx.msg.segments[i]
                out.extend(produce(ctx))
        finally:
            ctx.segment = saved
        return out

    run = each_segment if each else produce
    write = writer(target, dict(also) if also is not None else None)
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
        if if_absent and has(resource, target.steps):
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
    sourced = bool(paths) or node.is_switch or bool(node.options.get("this_segment"))
    return CompiledRule(label, target.text, apply_plain if plain else apply, sourced)


def _group(scope: CompileScope, rtype: str, node: RuleNode, target: Target, label: str,
           base: tuple[str, ...]) -> CompiledRule | None:
    """`fields:`: one element (a location with its period and status) built from several fields.

    The element is written only when a rule that reads the message wrote into it: the fixed
    values beside (an extension's url) never make an element on their own.
    """
    where = node.where
    if target.new_element_at is not None or target.polymorphic or target.leaf.type[:1].islower():
        scope.err("fields: builds one element with children, like location[] or hospitalization; "
                  f"{target.text} is not one", where.at("to"))
        return None
    given = {"from": bool(node.sources) or node.sources_listed, "as": "as" in node.kinds,
             "vocab": "vocab" in node.kinds, "value": "value" in node.kinds, "ref": "ref" in node.kinds,
             "switch": node.is_switch, "also": node.also is not None, "default": node.has_default}
    bad = [k for k, present in given.items() if present]
    if bad:
        scope.err(f"with fields:, the element's rules say where values come from, not {', '.join(bad)}", where)
        return None
    when = scope.condition(node.when, where.at("when"))
    inner = (*base, *target.steps)
    # warnings from inside the element name the group
    fields = [f if (f.id is not None or f.ig is not None) else replace(f, id=label) for f in node.fields or ()]
    subs = [compile_rule(scope, rtype, f, inner) for f in fields]
    if any(r is None for r in subs):
        return None
    rules = tuple(r for r in subs if r is not None)
    name, is_list = target.steps[-1], target.leaf.is_list
    parents = target.steps[:-1]
    each = None
    each_group = None              # GROUP/SEG: the SEG segments of every GROUP occurrence in scope; */SEG: all in scope
    if isinstance(node.each_segment, str):
        each_group, _, each = node.each_segment.partition("/")
        if not is_list:
            scope.err("each_segment with fields: needs a list target", where)
            return None
    elif node.each_segment:  # one element per such segment of the resource's group (NTE notes, DG1s)
        firsts = [f.sources[0] for f in fields if f.sources]
        each = compile_path(firsts[0]).segment if firsts else None
        if each is None or not is_list:
            scope.err("each_segment with fields: needs a list target and a field rule with 'from'", where)
            return None

    def apply(ctx: Context, resource: dict[str, Any]) -> bool:
        if each is None:
            return one(ctx, resource)
        tree = ctx.msg.tree
        within = ctx.scope or tree.root
        saved, saved_scope, wrote = ctx.segment, ctx.scope, False
        try:
            for i, group in _segments_in(tree, each, within, each_group):
                ctx.touched.add(i)
                ctx.scope, ctx.segment = group, ctx.msg.segments[i]  # within its own group: its NTE, not the next
                wrote = one(ctx, resource) or wrote
        finally:
            ctx.segment, ctx.scope = saved, saved_scope
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
        node_: dict[str, Any] = resource
        for step in parents:
            node_ = node_.setdefault(step, {})
        if is_list:
            node_.setdefault(name, []).append(element)
        else:
            node_.setdefault(name, {}).update(element)
        return True

    return CompiledRule(label, target.text, apply, any(r.sourced for r in rules))


def _switch(scope: CompileScope, rtype: str, node: RuleNode, target: Target, label: str,
            base: tuple[str, ...] = ()) -> Produce | None:
    """`switch: OBX-2` with `cases:` keyed by code (`ST|TX|FT` for several), each a small rule."""
    where = node.where
    on = scope.path(str(node.switch), where.at("switch"))
    cases = node.cases
    if on is None or not cases:
        if not cases:
            scope.err("switch needs cases", where)
        return None
    default = node.default if node.has_default else "error"
    if default not in ("error", "skip"):
        scope.err("with switch, default is 'error' or 'skip'", where.at("default"))
        return None
    table: dict[str, tuple[Produce, Target]] = {}
    for key, case in cases:
        t = check_target(scope, rtype, case.to, case.where, base) if case.to != node.to else target
        if t is None:
            continue
        same_place = t.steps == target.steps if not target.polymorphic else (
            t.steps[:-1] == target.steps[:-1] and t.new_element_at == target.new_element_at)
        if not same_place:
            scope.err(f"a case writes the switch's target ({node.to}), not elsewhere", case.where.at("to"))
            continue
        p = producer(scope, rtype, case, t, label)
        if p is None:
            continue
        for code in str(key).split("|"):
            table[code.strip()] = (p, t)
    if scope.errors:
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


def _segments_in(tree: GroupTree, seg: str, within: Group, groups: str | None) -> list[tuple[int, Group]]:
    """The `seg` segments an `each_segment` rule reads, in message order, each with the group it is read within:
    those of `within` itself (true), of every occurrence of the named group inside it (GROUP/SEG), or all of them
    in its span, each in its own group (*/SEG: MDM's OBX, in OBSERVATION from v2.5, at the root in v2.3)."""
    if groups is None:
        return [(i, within) for i in tree.own(seg, within)]
    if groups == "*":
        return [(i, tree.of_segment[i]) for i in tree.positions.get(seg, ()) if within.contains(i)]
    out: list[tuple[int, Group]] = []
    for g in tree.by_name.get(groups, ()):
        if within.contains(g.start):
            out.extend((i, g) for i in tree.own(seg, g))
    return out
