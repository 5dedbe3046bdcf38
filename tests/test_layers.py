"""Data flows one way: engine/ never imports channels/ (connectors are found by entry point), and
channels/ reach the engine only through its connector surface (ports, capabilities, toolkit), its
errors and its types."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.registry import connector

ROOT = Path(__file__).resolve().parents[1]
CHANNEL_ALLOWED = ("engine.connectors", "engine.errors", "engine.types")


def _imported(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, absolute names; `from engine import x` counts as engine.x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module in ("engine", "engine.connectors"):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def engine_imports_outside(source: str, allowed: tuple[str, ...] = CHANNEL_ALLOWED) -> list[str]:
    """Imports of `engine` modules in `source` other than `allowed` (each with its submodules), as 'line: module'."""
    return [f"{line}: {name}" for line, name in sorted(_imported(source))
            if name.split(".")[0] == "engine" and not any(name == a or name.startswith(a + ".") for a in allowed)]


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


def test_channels_import_only_the_connector_surface() -> None:
    """Every module under channels/ imports from engine only engine.connectors, engine.errors and engine.types."""
    offenders = [f"{path.relative_to(ROOT)}:{where}" for path in sorted((ROOT / "channels").rglob("*.py"))
                 for where in engine_imports_outside(path.read_text())]
    assert offenders == []


def test_the_channel_check_finds_a_planted_violation() -> None:
    """A channel importing the journal, the intake or a helper outside the toolkit is reported, with its line."""
    planted = ("from engine.connectors.ports import InputPorts\n"
               "from engine.errors import ParseError\n"
               "import engine.types\n"
               "from engine.store import Journal\n"
               "from engine import metrics\n"
               "def f() -> None:\n"
               "    from engine.intake import Intake\n"
               "import engine.broker\n")
    assert engine_imports_outside(planted) == ["4: engine.store", "5: engine.metrics", "7: engine.intake",
                                               "8: engine.broker"]


def test_the_channel_check_accepts_the_connector_surface() -> None:
    """Ports, toolkit, capabilities, errors, types, the standard library and third-party packages pass."""
    clean = ("import asyncio\nimport httpx\nfrom engine.connectors import toolkit\n"
             "from engine.connectors.toolkit import metrics\nfrom engine.errors import ConfigError\n"
             "from engine.types import Status\nfrom channels.csvfile import rows\n")
    assert engine_imports_outside(clean) == []


def test_the_connector_surface_does_not_import_the_pipeline() -> None:
    """engine/connectors/ is below the pipeline: intake, deliver, transform and runtime implement its ports."""
    pipeline = ("engine.intake", "engine.intake_ports", "engine.deliver", "engine.transform", "engine.runtime",
                "engine.broker", "engine.replay")
    modules = sorted((ROOT / "engine" / "connectors").glob("*.py"))
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in modules
                 for line, name in _imported(path.read_text())
                 if any(name == p or name.startswith(p + ".") for p in pipeline)]
    assert offenders == []


def test_connectors_are_registered() -> None:
    """The shipped connectors are found by name."""
    assert connector("inputs", "mllp").__name__ == "MLLPInput"
    assert connector("inputs", "rest").__name__ == "RESTInput"
    assert connector("outputs", "ndjson").__name__ == "NDJSONOutput"
