"""The compiled form of a mapping: resources and rules as closures, ready for `engine.mapping.bundle`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.mapping.conditions import Predicate
from engine.mapping.context import Context
from engine.mapping.coverage import Coverage
from engine.mapping.keys import KeyPart
from engine.mapping.paths import V2Path

__all__ = ["Apply", "CompiledResource", "CompiledRule", "MappingSpec", "is_segment_id"]

Apply = Callable[[Context, dict[str, Any]], bool]   # True when it wrote something
_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True)
class CompiledRule:
    """One rule ready to run: `apply` writes into the resource being built and says whether it wrote.

    `sourced` is true when the rule reads the message (not only a fixed value or a reference), so a
    `fields:` group made only of fixed values never makes an element on its own.
    """

    label: str
    target: str
    apply: Apply
    sourced: bool = True   # reads the message (not only a fixed value or a reference)


@dataclass(frozen=True)
class CompiledResource:
    """One resource of a mapping, checked: where it is made from, its business key, its rules in order."""

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
    following: frozenset[str] = frozenset()          # segments read after the anchor first (an RXE's RXR)


@dataclass(frozen=True)
class MappingSpec:
    """A whole mapping, compiled without a problem: every path, target and vocabulary map checked at load."""

    name: str
    version: str
    file: str
    accepts: tuple[str, ...]
    patient_key: V2Path | None
    provenance: bool
    resources: tuple[CompiledResource, ...]
    coverage: Coverage | None = None   # which fields the mapping accounts for (FIELDS_NOT_MAPPED)


def is_segment_id(name: str) -> bool:
    return bool(_SEGMENT.match(name))
