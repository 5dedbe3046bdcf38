"""Declarative mappings (mappings/<name>/mapping.yaml) compiled to closures; HL7 v2 → FHIR R4 Bundles."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from engine.errors import ConfigError
from engine.hl7v2.er7 import Message
from engine.ids import namespace
from engine.mapping.bundle import build_bundle
from engine.mapping.compiled import MappingSpec
from engine.mapping.compiler import compile_mapping
from engine.mapping.context import Context
from engine.mapping.gate import check_serialized
from engine.mapping.keys import key_part

if TYPE_CHECKING:
    from engine.mapping.explain import Explanation
from engine.nomenclature import Registry, load_registry
from engine.nomenclature.vocab import load_vocab

__all__ = ["Conversion", "Converter", "MappingSpec", "pretty"]


@dataclass(frozen=True)
class Conversion:
    """The result of converting one message: the Bundle's JSON bytes and the warnings of what the
    mapping could not honour (field paths and codes, no values). Immutable.
    """

    bundle: bytes
    warnings: list[dict[str, Any]]


class Converter:
    """Every mapping of an installation, compiled once, with the settings a conversion needs."""

    def __init__(self, mappings_dir: Path, schema_dir: Path, vocab_dir: Path, *, base: str, timezone: str,
                 registry: Registry | None = None) -> None:
        self.mappings_dir = mappings_dir
        self.schema_dir = schema_dir
        self.vocab_dir = vocab_dir
        self.base = base
        # identifier systems and code sets live beside the vocabulary maps (nomenclatures/)
        self.registry = registry if registry is not None else load_registry(vocab_dir.parent, base)
        self.namespace = namespace(base)
        try:
            self.tz = ZoneInfo(timezone)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"unknown time zone '{timezone}'", field="fhir.timezone") from exc
        self._specs: dict[str, MappingSpec] = {}

    def spec(self, name: str) -> MappingSpec:
        if name not in self._specs:
            file = self.mappings_dir / name / "mapping.yaml"
            if not file.exists():
                raise ConfigError(f"no mapping '{name}'", file=str(self.mappings_dir))
            self._specs[name] = compile_mapping(file, self.schema_dir, self.vocab_dir,
                                                display=_display(file))
        return self._specs[name]

    def recompile(self) -> list[str]:
        """Compile every mapping in use again (the vocabulary maps changed on disk) and swap them in
        only when all compile: a broken CSV leaves the running mappings as they were."""
        load_vocab.cache_clear()
        fresh = {name: compile_mapping(self.mappings_dir / name / "mapping.yaml", self.schema_dir, self.vocab_dir,
                                       display=_display(self.mappings_dir / name / "mapping.yaml"))
                 for name in list(self._specs)}
        self._specs = fresh  # one assignment: a conversion sees the old set or the new one, never a mix
        return sorted(fresh)

    def context(self, msg: Message, now: datetime, policy: dict[str, str] | None = None) -> Context:
        return Context(msg=msg, base=self.base, namespace=self.namespace, tz=self.tz, now=now,
                       vocab=lambda n: load_vocab(self.vocab_dir, n), registry=self.registry,
                       policy=policy or {})

    def convert(self, name: str, msg: Message, now: datetime, policy: dict[str, str] | None = None, *,
                earlier: Callable[[str], dict[str, Any] | None] | None = None,
                requests: dict[str, str] | None = None) -> Conversion:
        """Convert one parsed message; the same message, `now`, channel policy and earlier writes always
        give the same bytes.

        `policy` holds the channel's data-quality choices (`invalid_identifiers: tag` …); `earlier`
        answers what the engine last wrote of a resource for this patient (a mapping's `keep_earlier`);
        `requests` overrides how named resources are written (a CSV map's `create_only`).
        """
        ctx = self.context(msg, now, policy)
        ctx.earlier = earlier
        ctx.requests = requests or {}
        spec = self.spec(name)
        bundle = build_bundle(spec, ctx)
        extra = spec.coverage.not_mapped(msg) if spec.coverage else []
        if extra:
            ctx.warn("FIELDS_NOT_MAPPED", spec.name, ", ".join(extra), "valued in the message, read by no rule")
        data = orjson.dumps(bundle)
        check_serialized(bundle, data)  # never an empty value or a missing required element out of the engine
        return Conversion(data, ctx.warnings)

    def explain(self, name: str, msg: Message, now: datetime) -> Explanation:
        """Convert with lineage: which fields each element came from, which valued fields no rule read."""
        from engine.mapping.explain import explain

        return explain(self.spec(name), msg, self.context(msg, now))

    def patient_key(self, name: str, msg: Message, policy: dict[str, str] | None = None) -> tuple[str, str] | None:
        """(system, value) of the mapping's patient key field, for sharding and the journal's keyed hash."""
        spec = self.spec(name)
        if spec.patient_key is None:
            return None
        ctx = self.context(msg, datetime.now().astimezone(), policy)
        ctx.scope = msg.tree.root
        part = key_part(spec.patient_key, ctx)
        if not part:
            return None
        system, _, value = part.partition("|")
        return system, value


def pretty(bundle: bytes) -> bytes:
    """Indented JSON with every number written as it was (11.20 stays 11.20: never through float)."""
    data = json.loads(bundle, parse_float=lambda text: orjson.Fragment(text.encode()))
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


