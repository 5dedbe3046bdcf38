"""Every public module in engine/ and channels/ has a module docstring, and every public class in them a class
docstring saying what it owns and guarantees. A module is public unless a part of its path starts with `_`
(a package's `__init__.py` is public); a class is public unless its name starts with `_` or it is defined inside
a function or a private class."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "channels")


def is_public_module(relative: Path) -> bool:
    """True when no part of `relative` (a path under the root) is private; `__init__.py` counts as public."""
    return not any(part.startswith("_") and part != "__init__.py" for part in relative.parts)


def undocumented(source: str) -> list[str]:
    """Names of public classes in `source` without a docstring, as 'line: Outer.Name'; '1: <module>' when the
    module itself has none."""
    tree = ast.parse(source)
    missing: list[str] = [] if ast.get_docstring(tree) else ["1: <module>"]

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    missing.append(f"{node.lineno}: {prefix}{node.name}")
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse, prefix)

    visit(tree.body, "")
    return missing


def public_modules() -> list[Path]:
    """Every public Python module under the checked packages, relative to the root, sorted."""
    return sorted(path.relative_to(ROOT) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if is_public_module(path.relative_to(ROOT)))


def test_every_public_class_and_module_has_a_docstring() -> None:
    """No public module or public class in engine/ or channels/ lacks a docstring."""
    offenders = [f"{path}:{where}" for path in public_modules() for where in undocumented((ROOT / path).read_text())]
    assert offenders == []


def test_the_check_covers_both_packages() -> None:
    """The walk finds modules in engine/ and in channels/, so an empty walk cannot pass silently."""
    found = {path.parts[0] for path in public_modules()}
    assert found == set(PACKAGES)


def test_the_check_finds_a_planted_class_without_a_docstring() -> None:
    """A public class, a nested public class and a module without a docstring are reported with their line."""
    planted = ("import os\n"
               "\n"
               "class Documented:\n"
               '    """Owns nothing."""\n'
               "\n"
               "    class Inner:\n"
               "        pass\n"
               "\n"
               "class Bare:\n"
               "    x = 1\n")
    assert undocumented(planted) == ["1: <module>", "6: Documented.Inner", "9: Bare"]


def test_the_check_ignores_private_and_local_classes() -> None:
    """Classes named with `_`, and classes defined inside functions, need no docstring."""
    planted = ('"""A module."""\n'
               "class _Private:\n"
               "    class Hidden:\n"
               "        pass\n"
               "def factory() -> None:\n"
               "    class Local:\n"
               "        pass\n")
    assert undocumented(planted) == []


def test_a_class_under_a_guard_is_still_checked() -> None:
    """A public class defined under `if TYPE_CHECKING:` or `try:` is checked like any other."""
    planted = ('"""A module."""\n'
               "try:\n"
               "    class Guarded:\n"
               "        pass\n"
               "except ImportError:\n"
               "    pass\n")
    assert undocumented(planted) == ["3: Guarded"]


def test_private_modules_are_skipped() -> None:
    """A module under a `_` name is private; a package's `__init__.py` is public."""
    assert is_public_module(Path("engine/console/__init__.py"))
    assert not is_public_module(Path("engine/_internal.py"))
    assert not is_public_module(Path("channels/_vendor/x.py"))
