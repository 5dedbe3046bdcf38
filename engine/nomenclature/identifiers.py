"""Identifier systems: one URI per identifier (CIN, INPE, ICE …) and a validator for its format.

The facts (URIs, expressions, which check digit) are in `nomenclatures/identifier-systems/`; this
module only applies them. A format the research could not confirm (confidence S or U) never
rejects a value: it gives a warning, so a real patient is never turned away by our guess.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError
from engine.nomenclature.csvrows import rows

__all__ = ["IdentifierSystem", "Verdict", "load_identifier_systems"]

COLUMNS = ["key", "label", "uri", "v2_type", "strict", "lenient", "check", "normalize", "applies_to", "confidence"]


@dataclass(frozen=True)
class Verdict:
    """Whether an identifier value is well formed: "ok", "warning" or "invalid", with what was expected
    (never the value). Immutable.
    """

    level: str          # "ok" | "warning" | "invalid"
    reason: str = ""    # what was expected; never the value itself

    @property
    def ok(self) -> bool:
        return self.level == "ok"


@dataclass(frozen=True)
class IdentifierSystem:
    """One identifier system (CIN, INPE …): its URI, the v2 types it applies to, and the patterns,
    normalisation and check digit that validate a value. A format whose confidence is not proven
    warns instead of rejecting. Immutable.
    """

    key: str
    label: str
    uri: str
    v2_types: tuple[str, ...]
    strict: re.Pattern[str] | None
    lenient: re.Pattern[str] | None
    check: Callable[[str], bool] | None
    check_name: str
    normalize: tuple[str, ...]
    applies_to: tuple[str, ...]
    confidence: str

    def normalized(self, value: str) -> str:
        out = value.strip()
        if "strip_spaces" in self.normalize:
            out = "".join(out.split())
        if "upper" in self.normalize:
            out = out.upper()
        return out

    def validate(self, value: str) -> Verdict:
        """Is `value` well formed for this system? Uncertain formats warn instead of rejecting."""
        v = self.normalized(value)
        if not v:
            return Verdict("invalid", "empty")
        soft = self.confidence != "P"
        if self.strict is not None and not self.strict.fullmatch(v):
            expected = f"expected {self.strict.pattern}"
            if self.lenient is not None and self.lenient.fullmatch(v):
                return Verdict("warning", f"{expected}; matches only the lenient form {self.lenient.pattern}")
            return Verdict("warning" if soft else "invalid", expected)
        if self.check is not None and not self.check(v):
            return Verdict("warning" if soft else "invalid", f"check digits do not verify ({self.check_name})")
        return Verdict("ok")


def _checker(name: str, where: str, line: int) -> Callable[[str], bool] | None:
    if name in ("", "none"):
        return None
    if not name.startswith("stdnum."):
        raise ConfigError(f"unknown check '{name}': none, or a python-stdnum module like stdnum.ma.ice",
                          file=where, line=line)
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"no python-stdnum module {name}", file=where, line=line) from exc
    return module.is_valid


def _pattern(text: str, where: str, line: int, column: str) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{column}: not a regular expression ({exc})", file=where, line=line) from exc


def load_authorities(folder: Path, systems: dict[str, IdentifierSystem]) -> dict[tuple[str, str], IdentifierSystem]:
    """(assigning authority or `*`, v2 identifier type) → the identifier system a CX belongs to."""
    path = folder / "authorities.csv"
    if not path.exists():
        return {}
    out: dict[tuple[str, str], IdentifierSystem] = {}
    for line, (authority, id_type, key) in rows(path, ["authority", "type", "system"]):
        if key not in systems:
            raise ConfigError(f"no identifier system '{key}' (known: {', '.join(sorted(systems))})",
                              file=str(path), line=line)
        out[(authority.upper(), id_type.upper())] = systems[key]
    return out


def load_identifier_systems(folder: Path, base: str) -> dict[str, IdentifierSystem]:
    path = folder / "identifier_systems.csv"
    where = str(path)
    out: dict[str, IdentifierSystem] = {}
    for line, cells in rows(path, COLUMNS):
        r = dict(zip(COLUMNS, cells, strict=True))
        if r["confidence"] not in ("P", "S", "U"):
            raise ConfigError("confidence: expected P, S or U", file=where, line=line)
        if r["key"] in out:
            raise ConfigError(f"key {r['key']} listed twice", file=where, line=line)
        out[r["key"]] = IdentifierSystem(
            key=r["key"], label=r["label"], uri=r["uri"].replace("{base}", base),
            v2_types=tuple(t for t in r["v2_type"].split("|") if t),
            strict=_pattern(r["strict"], where, line, "strict"),
            lenient=_pattern(r["lenient"], where, line, "lenient"),
            check=_checker(r["check"], where, line), check_name=r["check"] or "none",
            normalize=tuple(n for n in r["normalize"].split("|") if n),
            applies_to=tuple(a for a in r["applies_to"].split("|") if a), confidence=r["confidence"])
    return out
