"""What several datatype families share: the identifier-type code system (table 0203) and the layout of a
person's name common to XPN and XCN."""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _human_name(f: Field, first: int, degree: int | None) -> dict[str, Any]:
    """XPN (family at 1) and XCN (family at 2) share one layout: family, given ×2, suffix, prefix, degree."""
    out: dict[str, Any] = {}
    if f.component(first):
        out["family"] = f.component(first)
    given = [g for g in (f.component(first + 1), f.component(first + 2)) if g]
    if given:
        out["given"] = given
    if f.component(first + 4):
        out["prefix"] = [f.component(first + 4)]
    suffix = [s for s in (f.component(first + 3), f.component(degree) if degree else "") if s]
    if suffix:
        out["suffix"] = suffix
    return out
