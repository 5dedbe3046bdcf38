"""Data flows one way: engine/ never imports channels/ (connectors are found by entry point);
channels/ reach the engine only through its connector surface (ports, capabilities, toolkit), its
errors and its types; every engine import points to the same or a lower layer of `LAYERS`; and no
engine module imports another that imports it back.

The layer check counts every import statement: module level, inside functions, and under
`if TYPE_CHECKING:` too (none is exempt). Importing a submodule also runs its package's `__init__`;
that implicit import is not counted, so a package `__init__` only re-exports its own submodules."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.connectors.registry import connector

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


def test_example_connectors_import_only_the_connector_surface() -> None:
    """A third-party connector (examples/connectors/) is held to the same rule as channels/."""
    sources = sorted((ROOT / "examples" / "connectors").rglob("*.py"))
    assert sources, "no example connector found"
    offenders = [f"{path.relative_to(ROOT)}:{where}" for path in sources
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
               "    from engine.pipeline.intake import Intake\n"
               "import engine.broker\n")
    assert engine_imports_outside(planted) == ["4: engine.store", "5: engine.metrics", "7: engine.pipeline.intake",
                                               "8: engine.broker"]


def test_the_channel_check_accepts_the_connector_surface() -> None:
    """Ports, toolkit, capabilities, errors, types, the standard library and third-party packages pass."""
    clean = ("import asyncio\nimport httpx\nfrom engine.connectors import toolkit\n"
             "from engine.connectors.toolkit import metrics\nfrom engine.errors import ConfigError\n"
             "from engine.types import Status\nfrom channels.csvfile import rows\n")
    assert engine_imports_outside(clean) == []


def test_the_connector_surface_does_not_import_the_pipeline() -> None:
    """engine/connectors/ is below the pipeline: intake, deliver, transform and runtime implement its ports."""
    pipeline = ("engine.pipeline", "engine.runtime", "engine.transport", "engine.console", "engine.cli")
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


def _module_name(path: str) -> str:
    """`engine/cli/__init__.py` → `engine.cli`; `engine/cli/text.py` → `engine.cli.text`."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: module level, and inside module-level `if`/`try`
    blocks except `if TYPE_CHECKING:`; an import inside a function runs later and makes no cycle."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                stack += node.body
            stack += node.orelse
        elif isinstance(node, ast.Try):
            stack += [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]


def import_graph(sources: dict[str, str], package: str = "engine") -> dict[str, set[str]]:
    """Which modules of `package` each module imports at import time, from `{path: source}` (paths
    relative to the root, `/`-separated); `from pkg import name` counts as `pkg.name` when that is a
    module, else as `pkg`."""
    modules = {_module_name(p): p for p in sources}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in _top_level_imports(ast.parse(sources[path])):
            targets = _targets(node, name, path.endswith("__init__.py"), modules)
            graph[name] |= {t for t in targets if t in modules and t != name and t.split(".")[0] == package}
    return graph


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: Iterable[str]) -> list[str]:
    """The modules one import statement of module `name` names: `from pkg import x` is `pkg.x` when that
    is one of `modules`, else `pkg`; a relative import is resolved from the module's package."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    origin = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        base = name if is_package else name.rpartition(".")[0]
        anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
        origin = ".".join([*anchor, *([origin] if origin else [])])
    known = set(modules)
    return [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


class TestImportCycles:
    """No two engine modules import each other, directly or through others, when they are imported."""

    def test_engine_has_no_import_cycle(self) -> None:
        """The engine package, as it is on disk, has no import cycle."""
        sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "engine").rglob("*.py")}
        assert import_cycles(import_graph(sources)) == []

    def test_a_planted_cycle_is_found(self) -> None:
        """Two modules importing each other (one at the bottom, as the old CLI did) make one cycle."""
        sources = {"engine/__init__.py": "", "engine/a.py": "import os\nfrom engine.b import helper\n",
                   "engine/b.py": "def helper() -> None: ...\n\nfrom engine.a import x  # noqa: E402\n",
                   "engine/c.py": "from engine import a\n"}
        assert import_cycles(import_graph(sources)) == [["engine.a", "engine.b"]]

    def test_a_longer_cycle_through_a_package_and_relative_imports_is_found(self) -> None:
        """A cycle through three modules, one of them a package `__init__` and one a relative import."""
        sources = {"engine/__init__.py": "", "engine/cli/__init__.py": "from engine.cli.run import run\n",
                   "engine/cli/run.py": "from .common import helper\n",
                   "engine/cli/common.py": "try:\n    from engine.cli import main\nexcept ImportError:\n    pass\n"}
        assert import_cycles(import_graph(sources)) == [["engine.cli", "engine.cli.common", "engine.cli.run"]]

    def test_imports_inside_functions_or_for_type_checking_make_no_cycle(self) -> None:
        """An import run later (in a function) or never (under TYPE_CHECKING) is not an edge."""
        sources = {"engine/__init__.py": "", "engine/a.py": "from engine.b import helper\n",
                   "engine/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.a import x\n"
                                  "def helper() -> None:\n    from engine.a import x\n"}
        assert import_graph(sources)["engine.b"] == set()
        assert import_cycles(import_graph(sources)) == []


#: The engine's layers, bottom to top. A module belongs to the layer of the longest entry that is its
#: name or a package above it; it may import only modules of its own layer or of a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations: errors, value types and process-wide helpers that import nothing above them
    ("engine", "engine.errors", "engine.types", "engine.secret", "engine.ids", "engine.logs", "engine.metrics",
     "engine.fingerprint"),
    # connector declarations: option fields, the registry, the schemas and docs derived from them,
    # output capabilities and the options the engine reads from every input
    ("engine.connectors.fields", "engine.connectors.registry", "engine.connectors.schema",
     "engine.connectors.capabilities", "engine.connectors.docs", "engine.connectors.inputs"),
    # reading YAML files and validating them against a JSON Schema
    ("engine.config.yamlfile", "engine.config.validate"),
    ("engine.hl7v2", "engine.nomenclature"),
    # the mapping language; the claim checks (key-letter tariffs and claim rules, nomenclatures/ma-tnr)
    ("engine.mapping",),
    # the loaded, frozen configuration
    ("engine.config",),
    ("engine.formats", "engine.store", "engine.transport"),
    # the connector surface: the ports the engine gives a connector, its toolkit and test twins
    ("engine.connectors",),
    ("engine.pipeline",),
    # the claims stage: an output the runtime attaches to the journal, above the routing it reuses
    ("engine.claims",),
    # the HTTP surfaces: /metrics and /health (ops) and the console they serve
    ("engine.console", "engine.ops"),
    # the composition root: builds the pipeline, the connectors and the ops server of one process
    ("engine.runtime",),
    ("engine.cli",),
)


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int | None:
    """The index in `layers` of the longest entry that is `module` or a package above it; None: no layer."""
    best: tuple[int, int] | None = None  # (entry length, layer)
    for index, entries in enumerate(layers):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def upward_imports(sources: dict[str, str], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Every import (anywhere in a module, functions and TYPE_CHECKING blocks included) of an engine module
    in a higher layer than the importing one, as 'path:line: module (layer) -> target (layer)', sorted."""
    modules = {_module_name(p): p for p in sources}
    found: list[str] = []
    for name, path in sorted(modules.items()):
        here = layer_of(name, layers)
        for node in ast.walk(ast.parse(sources[path])):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, name, path.endswith("__init__.py"), modules):
                there = layer_of(target, layers) if target.split(".")[0] == "engine" else None
                if here is not None and there is not None and there > here:
                    found.append(f"{path}:{node.lineno}: {name} ({here}) -> {target} ({there})")
    return sorted(found)


def _engine_sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "engine").rglob("*.py")}


class TestLayers:
    """Imports between engine layers only point down, as `LAYERS` declares them."""

    def test_every_engine_module_has_a_layer(self) -> None:
        """Each module under engine/ falls in one declared layer."""
        assert [m for m in map(_module_name, _engine_sources()) if layer_of(m) is None] == []

    def test_engine_imports_point_down(self) -> None:
        """No engine module imports a module of a higher layer, at module level or inside a function."""
        assert upward_imports(_engine_sources()) == []

    def test_a_planted_upward_import_is_found(self) -> None:
        """Imports from the store up to the pipeline, runtime or CLI are reported wherever they are written."""
        sources = {"engine/__init__.py": "", "engine/errors.py": "",
                   "engine/store/__init__.py": "from engine.store.journal import Journal\n",
                   "engine/store/journal.py": ("import os\nfrom engine import errors\nfrom engine import runtime\n"
                                               "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from engine.cli import main\n"
                                               "def f() -> None:\n    from ..pipeline.intake import Intake\n"),
                   "engine/pipeline/__init__.py": "", "engine/pipeline/intake.py": "from engine.store import Journal\n",
                   "engine/runtime.py": "import engine.pipeline.intake\n", "engine/cli/__init__.py": ""}
        assert upward_imports(sources) == [
            "engine/store/journal.py:3: engine.store.journal (6) -> engine.runtime (11)",
            "engine/store/journal.py:6: engine.store.journal (6) -> engine.cli (12)",
            "engine/store/journal.py:8: engine.store.journal (6) -> engine.pipeline.intake (8)",
        ]

    def test_the_longest_entry_decides_a_module_layer(self) -> None:
        """A connector declaration sits below the config that the rest of the connector surface sits above."""
        assert layer_of("engine.connectors.fields") < layer_of("engine.config") < layer_of("engine.connectors.ports")
        assert layer_of("engine.config.yamlfile") < layer_of("engine.nomenclature.codesets") < layer_of("engine.config")
        assert layer_of("engine") == 0
        assert layer_of("enginex.y") is None
