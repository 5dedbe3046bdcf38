"""Mapping fixtures: `mappings/<name>/fixtures/X.hl7` and the Bundle expected from it, `X.json`.

Fixtures are part of a mapping, not of an installation: they are converted with pinned settings
(clock, FHIR base, time zone), so they pass the same way everywhere. `wasla mapping test` runs
them and prints each difference as one line naming the resource and element, not a wall of JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from engine.errors import MappingError, ParseError
from engine.hl7v2.er7 import decode, parse
from engine.mapping import Converter, pretty
from engine.mapping.gate import check_bundle

__all__ = ["FIXTURE_BASE", "FIXTURE_NOW", "FIXTURE_TZ", "FixtureResult", "differences", "fixture_converter",
           "run_fixtures"]

FIXTURE_NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FIXTURE_BASE = "https://fhir.wasla.ma"
FIXTURE_TZ = "Africa/Casablanca"
_MISSING = object()


@dataclass
class FixtureResult:
    """The outcome of one mapping fixture: which fixture, the differences from its expected Bundle, the
    error if the conversion failed, and whether the expected file was rewritten (`update`).
    """

    mapping: str
    name: str
    hl7: Path
    differences: list[str] = field(default_factory=list)
    error: str | None = None
    updated: bool = False
    warnings: list[str] = field(default_factory=list)   # "FIELDS_NOT_MAPPED PV1-3, ZPV-1": codes and paths only

    @property
    def ok(self) -> bool:
        return not self.differences and self.error is None


def fixture_converter(mappings_dir: Path, schema_dir: Path, vocab_dir: Path) -> Converter:
    return Converter(mappings_dir, schema_dir, vocab_dir, base=FIXTURE_BASE, timezone=FIXTURE_TZ)


def run_fixtures(converter: Converter, names: list[str], *, update: bool = False) -> list[FixtureResult]:
    """Convert every fixture of the named mappings and compare with its expected Bundle.

    With `update`, a fixture whose output differs (or has no expected file yet) gets the new
    output written: review it by hand against the IG before committing it.
    """
    results = []
    for name in names:
        for hl7 in sorted((converter.mappings_dir / name / "fixtures").glob("*.hl7")):
            results.append(_run_one(converter, name, hl7, update))
    return results


def _run_one(converter: Converter, name: str, hl7: Path, update: bool) -> FixtureResult:
    result = FixtureResult(name, hl7.stem, hl7)
    expected_file = hl7.with_suffix(".json")
    try:
        conversion = converter.convert(name, parse(decode(hl7.read_bytes())), FIXTURE_NOW)
        raw = conversion.bundle
        result.warnings = [f"{w['code']} {w['field']}" for w in conversion.warnings]
        got = orjson.loads(raw)
        check_bundle(got)  # the full walk, nested required elements included
    except (ParseError, MappingError) as exc:
        result.error = f"cannot convert: {exc}"
        return result
    if not expected_file.exists():
        result.error = f"no expected output ({expected_file.name})"
    else:
        try:
            expected = orjson.loads(expected_file.read_bytes())
        except orjson.JSONDecodeError as exc:
            result.error = f"{expected_file.name} is not JSON: {exc}"
        else:
            result.differences = differences(expected, got)
    if update and not result.ok:
        expected_file.write_bytes(pretty(raw))
        result.updated = True
    return result


def differences(expected: Any, got: Any, limit: int = 25) -> list[str]:
    """One line per difference: `entry[3] Observation valueQuantity.value: expected 11.2, got 11.3`."""
    out = []
    for line in _walk(expected, got, ""):
        out.append(line)
        if len(out) == limit:
            out.append("… more differences not shown")
            break
    return out


def _where(path: str, node: Any) -> str:
    """Name a Bundle entry by its resource type so the reader knows which resource differs."""
    if path.startswith("entry[") and path.count(".") == 0 and isinstance(node, dict):
        rtype = (node.get("resource") or {}).get("resourceType")
        return f"{path} {rtype}" if rtype else path
    return path


def _walk(expected: Any, got: Any, path: str) -> Iterator[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        label = _where(path, expected)
        for key in [*expected, *(k for k in got if k not in expected)]:
            e, g = expected.get(key, _MISSING), got.get(key, _MISSING)
            sub = f"{label}.{key}" if label else key
            if label != path:  # an entry: "entry[3] Observation.valueQuantity", "entry[3] Observation request"
                sub = label if key == "resource" else f"{label} {key}"
            if e is _MISSING:
                yield f"{sub}: not expected, got {_short(g)}"
            elif g is _MISSING:
                yield f"{sub}: expected {_short(e)}, missing"
            else:
                yield from _walk(e, g, sub)
        return
    if isinstance(expected, list) and isinstance(got, list):
        for i in range(max(len(expected), len(got))):
            sub = f"{path}[{i}]"
            if i >= len(got):
                yield f"{_where(sub, expected[i])}: expected {_short(expected[i])}, missing"
            elif i >= len(expected):
                yield f"{_where(sub, got[i])}: not expected, got {_short(got[i])}"
            else:
                yield from _walk(expected[i], got[i], sub)
        return
    if expected != got or type(expected) is not type(got):
        yield f"{path}: expected {_short(expected)}, got {_short(got)}"


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "…"
