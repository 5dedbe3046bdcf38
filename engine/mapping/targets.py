"""Target checking: a rule's `to:` path, its cardinality and its type, against the FHIR R4 model."""

from __future__ import annotations

from dataclasses import dataclass

from engine.mapping.fhirmodel import Element, resolve
from engine.mapping.scope import CompileScope
from engine.mapping.spec import Where

__all__ = ["CODED", "COMPATIBLE", "STRINGISH", "Target", "check_target", "element_problem", "has_element",
           "is_resource_type"]

STRINGISH = {"string", "code", "id", "uri", "markdown"}   # written from a field's text as it is
CODED = {"code", "Coding", "CodeableConcept", "boolean"}  # what a vocabulary map can fill
COMPATIBLE = {("date", "dateTime"), ("instant", "dateTime"), ("string", "markdown")}
_CHOICES = ("Quantity", "CodeableConcept", "string", "boolean", "integer", "Range", "Ratio", "SampledData",
            "time", "dateTime", "Period")


@dataclass(frozen=True)
class Target:
    """A checked target path: its steps, which step opens a new list element, and the leaf element.

    A Target exists only for a path the FHIR R4 model has, with every `[]` where the element is 0..*
    and nowhere else, and at most one intermediate `[]` (the step where each value opens a new element).
    """

    text: str
    steps: tuple[str, ...]
    new_element_at: int | None      # index of an intermediate `[]` step: one new element per value
    leaf: Element
    polymorphic: tuple[str, ...]    # for value[x]: the FHIR types the parent accepts there


def check_target(scope: CompileScope, rtype: str, to: str, where: Where, base: tuple[str, ...] = ()) -> Target | None:
    """Check `to` under `rtype` (below `base`, the element a `fields:` group builds); `where` is the rule."""
    steps = to.split(".")
    plain = [s.removesuffix("[]") for s in steps]
    prefix = ".".join(base) + "." if base else ""
    new_at: int | None = None
    polymorphic: tuple[str, ...] = ()
    leaf: Element | None = None
    for i, step in enumerate(steps):
        if plain[i] == "value[x]":
            if i != len(steps) - 1:
                scope.err("value[x] can only end a path", where.at("to"))
                return None
            parent = prefix + ".".join(plain[:i])
            parent = parent.rstrip(".")
            polymorphic = tuple(_choices(rtype, parent))
            if not polymorphic:
                scope.err(f"{rtype}{'.' + parent if parent else ''} has no value[x]", where.at("to"))
                return None
            leaf = Element(".".join(plain), "value[x]", False)
            break
        try:
            leaf = resolve(rtype, prefix + ".".join(plain[: i + 1]))
        except KeyError as exc:
            scope.err(f"{exc.args[0]} (FHIR R4 {rtype})", where.at("to"))
            return None
        marked = step.endswith("[]")
        last = i == len(steps) - 1
        if leaf.is_list != marked:
            card = f"0..*: write it as '{plain[i]}[]'" if leaf.is_list else "0..1: drop the '[]'"
            scope.err(f"{rtype}.{leaf.path} is {card}", where.at("to"))
            return None
        if marked and not last:
            if new_at is not None:
                scope.err("only one list step may open new elements in a path", where.at("to"))
                return None
            new_at = i
    assert leaf is not None
    return Target(to, tuple(plain), new_at, leaf, polymorphic)


def _choices(rtype: str, prefix: str) -> list[str]:
    """The FHIR types `value[x]` takes below `prefix` (Observation: Quantity, CodeableConcept …)."""
    out = []
    for t in _CHOICES:
        try:
            resolve(rtype, f"{prefix + '.' if prefix else ''}value{t[0].upper()}{t[1:]}")
            out.append(t)
        except KeyError:
            continue
    return out


def element_problem(rtype: str, path: str) -> str | None:
    """Why `rtype` has no element at the dotted `path`, or None when it has one."""
    try:
        resolve(rtype, path)
    except KeyError as exc:
        return f"{exc.args[0]} (FHIR R4 {rtype})"
    return None


def is_resource_type(rtype: str) -> bool:
    return has_element(rtype, "id")


def has_element(rtype: str, path: str) -> bool:
    """Whether `rtype` has an element at the dotted `path` (False for an unknown resource type too)."""
    try:
        resolve(rtype, path)
    except (KeyError, ValueError):
        return False
    return True
