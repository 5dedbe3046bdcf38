"""Reading the resources of a converted Bundle in mapping tests."""

from __future__ import annotations

from typing import Any


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    """Every resource of type `rtype` in the Bundle, in entry order."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def only(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    """The one resource of type `rtype`; fails the test when there are none or several."""
    found = resources(bundle, rtype)
    assert len(found) == 1, f"{len(found)} {rtype}"
    return found[0]
