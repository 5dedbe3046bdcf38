"""Data flows one way: engine/ never imports channels/ (connectors are found by entry point)."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.connectors.registry import connector

ROOT = Path(__file__).resolve().parents[1]


def test_engine_never_imports_channels() -> None:
    """No module under engine/ imports the channels package."""
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "channels"]
    assert offenders == []


def test_connectors_are_registered() -> None:
    """The shipped connectors are found by name."""
    assert connector("inputs", "mllp").__name__ == "MLLPInput"
    assert connector("inputs", "rest").__name__ == "RESTInput"
    assert connector("outputs", "ndjson").__name__ == "NDJSONOutput"
