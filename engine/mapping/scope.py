"""What compiling one mapping shares across its files: the problems found, the fields read, the names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.mapping.conditions import ConditionError, Predicate, compile_condition, condition_paths
from engine.mapping.paths import V2Path, compile_path
from engine.mapping.spec import Where
from engine.nomenclature.vocab import VocabMap, load_vocab

__all__ = ["CompileScope"]


@dataclass
class CompileScope:
    """The state of one `compile_mapping` call, shared by the mapping file and the segment maps it includes.

    It owns the list of problems (every one is collected, none stops the compiler early), the set
    of (segment, field) pairs some rule or condition reads (for FIELDS_NOT_MAPPED), and the resource
    names and types references are checked against. Its helpers record a problem at the node's
    `Where` and return None instead of raising.
    """

    vocab_dir: Path
    errors: list[ConfigError] = field(default_factory=list)
    reads: set[tuple[str, int]] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    types: dict[str, str] = field(default_factory=dict)   # resource name → FHIR type

    def err(self, message: str, where: Where, field: str | None = None) -> None:
        self.errors.append(where.error(message, field=field))

    def path(self, text: str, where: Where) -> V2Path | None:
        """A v2 path, its field counted as read; None (and a problem) when it does not parse."""
        try:
            p = compile_path(text)
        except ValueError as exc:
            self.err(str(exc), where)
            return None
        self.reads.add((p.segment, p.field))
        return p

    def vocab(self, name: str, where: Where) -> VocabMap | None:
        """A vocabulary map of `nomenclatures/hl7v2-fhir/`; its own errors keep their CSV position."""
        try:
            return load_vocab(self.vocab_dir, name)
        except ConfigError as exc:
            self.errors.append(exc if exc.line else where.error(exc.message))
            return None

    def condition(self, raw: Mapping[str, Any] | None, where: Where) -> Predicate | None:
        """A `when:` condition compiled to a predicate, its paths counted as read."""
        if not raw:
            return None
        try:
            predicate = compile_condition(dict(raw), list(where.path))
        except ConditionError as exc:
            self.errors.append(where.doc.error(str(exc), exc.where))
            return None
        for text in condition_paths(dict(raw)):
            p = compile_path(text)
            self.reads.add((p.segment, p.field))
        return predicate
