"""Connectors are found by name through entry points, so `engine/` never imports `channels/`.

`pyproject.toml` declares them:

    [project.entry-points."wasla.inputs"]   mllp = "channels.mllp:MLLPInput"
    [project.entry-points."wasla.outputs"]  ndjson = "channels.ndjson:NDJSONOutput"

A third-party package adds a connector the same way (`examples/connectors/wasla-folder-store`).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

__all__ = ["GROUPS", "connector", "connectors"]

GROUPS = ("inputs", "outputs")


@cache
def connector(group: str, name: str) -> Any:
    """The connector class installed as `name` in `wasla.<group>`; LookupError names the installed ones."""
    found = entry_points(group=f"wasla.{group}", name=name)
    for ep in found:
        return ep.load()
    known = sorted(ep.name for ep in entry_points(group=f"wasla.{group}"))
    raise LookupError(f"no {group[:-1]} connector '{name}' (installed: {', '.join(known) or 'none'})")


def connectors(group: str, distribution: str | None = None) -> dict[str, Any]:
    """Every connector installed in `wasla.<group>` (only those of `distribution` when given), sorted by name."""
    names = sorted({ep.name for ep in entry_points(group=f"wasla.{group}")
                    if distribution is None or (ep.dist is not None and ep.dist.name == distribution)})
    return {name: connector(group, name) for name in names}
