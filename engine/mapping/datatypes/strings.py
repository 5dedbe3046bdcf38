"""String converters: v2 ST, TX and FT → FHIR string (IG ST[string], TX[string]), escapes already undone."""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context


def st_string(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    return f.text or None


def tx_string(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """ST/TX/FT → string: the whole field with its escapes undone (.br → newline), components joined by ' '."""
    parts = [f.component(i) for i in range(1, f.components() + 1)]
    text = " ".join(p for p in parts if p)
    return text or None
