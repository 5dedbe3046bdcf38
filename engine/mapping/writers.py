"""Runtime writers: put the values a rule produced at its checked target in the resource being built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.mapping.targets import Target

__all__ = ["Write", "has", "writer"]

Write = Callable[[dict[str, Any], list[Any]], bool]   # False when repetitions did not fit a 0..1 element


def writer(t: Target, also: dict[str, Any] | None) -> Write:
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


def _write(resource: dict[str, Any], t: Target, values: list[Any], also: dict[str, Any] | None) -> bool:
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


def has(resource: dict[str, Any], steps: tuple[str, ...]) -> bool:
    """Whether an earlier rule already wrote at `steps` (for `if_absent:`)."""
    node: Any = resource
    for step in steps:
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _write_leaf(node: dict[str, Any], steps: tuple[str, ...], values: list[Any], t: Target) -> bool:
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
