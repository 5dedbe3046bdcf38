"""The condition language of `when:`: structured YAML, compiled to predicates, never eval'd.

    {valued: PV1-45}            {not_valued: PV1-45}
    {equals: {OBX-2: NM}}       {in: {OBX-2: [NM, SN]}}
    {all: [...]}  {any: [...]}  {not: {...}}

These are the IG's ANTLR conditions (VALUED, NOT VALUED, EQUALS, IN, AND, OR, NOT) with the
paths it writes. Values compare after trimming, case-sensitively, as HL7 codes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.mapping.context import Context
from engine.mapping.paths import V2Path, compile_path

__all__ = ["Predicate", "compile_condition", "condition_paths"]

Predicate = Callable[[Context], bool]


class ConditionError(ValueError):
    """A `when:` condition that does not compile; `where` is its path inside the YAML, for
    `file:line:col`.
    """

    def __init__(self, message: str, where: list[str | int]) -> None:
        super().__init__(message)
        self.where = where


def _path(text: str, where: list[str | int]) -> V2Path:
    try:
        return compile_path(text)
    except ValueError as exc:
        raise ConditionError(str(exc), where) from exc


def compile_condition(raw: dict[str, Any], where: list[str | int]) -> Predicate:
    """Compile one condition; raises ConditionError naming the YAML path at fault."""
    (op, arg), = raw.items()
    here = [*where, op]
    if op in ("valued", "not_valued"):
        p = _path(arg, here)
        if p.component is None:  # a whole field is valued when any component of any repetition is (SN ^5^+)
            def has(ctx: Context) -> bool:
                for f in p.fields(ctx):
                    if f.component(1):  # the common case, without walking the rest
                        return True
                    for c in range(2, f.components() + 1):
                        if f.component(c):
                            return True
                return False
        else:
            def has(ctx: Context) -> bool:
                return bool(p.text(ctx))
        if op == "valued":
            return has
        return lambda ctx: not has(ctx)
    if op in ("equals", "in"):
        (text, expected), = arg.items()
        p = _path(text, [*here, text])
        values = frozenset(v.strip() for v in ([expected] if op == "equals" else expected))
        return lambda ctx: p.text(ctx).strip() in values
    if op == "not":
        inner = compile_condition(arg, here)
        return lambda ctx: not inner(ctx)
    parts = [compile_condition(c, [*here, i]) for i, c in enumerate(arg)]
    if op == "all":
        return lambda ctx: all(p(ctx) for p in parts)
    return lambda ctx: any(p(ctx) for p in parts)


def condition_paths(raw: dict[str, Any]) -> list[str]:
    """Every v2 path a condition reads (for the mapping's list of consumed fields)."""
    (op, arg), = raw.items()
    if op in ("valued", "not_valued"):
        return [arg]
    if op in ("equals", "in"):
        return list(arg)
    if op == "not":
        return condition_paths(arg)
    return [p for c in arg for p in condition_paths(c)]
