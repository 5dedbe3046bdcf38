"""Field facts from hl7apy's reference tables: datatype and name of each segment field.

Used off the hot path: by the compiler (which fields are Set IDs, structural and never mapped)
and by `--explain` and the console (field names beside field paths).
"""

from __future__ import annotations

import importlib
from functools import cache

__all__ = ["field_info", "set_id_fields"]

_REFERENCE_VERSION = "2.5"  # the fields the IG maps from; later versions only add fields


@cache
def _fields(version: str) -> dict[str, tuple[str, str]]:
    try:
        table = importlib.import_module(f"hl7apy.v{version.replace('.', '_')}.fields").FIELDS
    except ImportError:
        table = importlib.import_module(f"hl7apy.v{_REFERENCE_VERSION.replace('.', '_')}.fields").FIELDS
    return {key: (spec[2] or "", (spec[3] or "").replace("_", " ").lower()) for key, spec in table.items()}


def field_info(segment: str, field: int, version: str = _REFERENCE_VERSION) -> tuple[str, str] | None:
    """(datatype, name) of `segment`-`field`, e.g. ('SI', 'set id pid'); None for Z-segments and unknowns."""
    return _fields(version).get(f"{segment}_{field}") or _fields(_REFERENCE_VERSION).get(f"{segment}_{field}")


@cache
def set_id_fields() -> frozenset[tuple[str, int]]:
    """Every (segment, field) whose datatype is SI: a sequence number, structure rather than data."""
    out = set()
    for key, (datatype, _) in _fields(_REFERENCE_VERSION).items():
        seg, _, n = key.partition("_")
        if datatype == "SI" and n.isdigit():
            out.add((seg, int(n)))
    return frozenset(out)
