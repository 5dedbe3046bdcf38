"""Tests mirror the source (STYLE.md, Wasla 11): every `tests/engine/**/test_*.py` names the module or package
under `engine/` that it tests, so the test of `engine/x/y.py` is found at `tests/engine/x/test_y.py`.

A test file `tests/engine/<dirs>/test_<name>.py` is in place when one of these holds:

- `engine/<dirs>/<name>.py` is a module, or `engine/<dirs>/<name>/` a package;
- `<name>` is `init`, or the last of `<dirs>`, and `engine/<dirs>/__init__.py` exists (the package's surface);
- `<name>` is `<module>_<aspect>` and `engine/<dirs>/<module>.py` is a module (one aspect of one module, such
  as `test_er7_fuzz.py`);
- the file is in `BEHAVIOUR`, the allow-list of behaviour tests that span modules, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]

# Behaviour tests that span several modules, so no single module names them: path → why.
BEHAVIOUR: dict[str, str] = {
    "tests/engine/connectors/test_example.py":
        "the third-party example connector end to end: check, reference docs and delivery",
    "tests/engine/connectors/test_resources.py":
        "two channels holding one port or folder, whatever their connectors, as `wasla check` reports it",
    "tests/engine/pipeline/test_duplicates.py":
        "duplicates by content: engine/fingerprint.py, the intake and the journal's keys together",
}


def modules_of(root: Path) -> set[PurePosixPath]:
    """Every `.py` file under `root/engine`, relative to `root`."""
    return {PurePosixPath(p.relative_to(root).as_posix()) for p in (root / "engine").rglob("*.py")}


def engine_tests_of(root: Path) -> set[PurePosixPath]:
    """Every `test_*.py` file under `root/tests/engine`, relative to `root`."""
    return {PurePosixPath(p.relative_to(root).as_posix()) for p in (root / "tests" / "engine").rglob("test_*.py")}


def _names_a_unit(test: PurePosixPath, modules: set[PurePosixPath]) -> bool:
    """Whether `tests/engine/<dirs>/test_<name>.py` names a module or package of `engine/<dirs>/`."""
    dirs = test.parent.parts[2:]                 # below tests/engine
    name = test.stem.removeprefix("test_")
    package = PurePosixPath("engine", *dirs)

    def module(stem: str) -> bool:
        return package / f"{stem}.py" in modules or package / stem / "__init__.py" in modules

    if module(name):
        return True
    if (name == "init" or (dirs and name == dirs[-1])) and package / "__init__.py" in modules:
        return True
    parts = name.split("_")
    return any(package / f"{'_'.join(parts[:n])}.py" in modules for n in range(1, len(parts)))


def strays(tests: Iterable[PurePosixPath], modules: set[PurePosixPath],
           behaviour: Iterable[str] = BEHAVIOUR) -> list[str]:
    """The test files that name no module or package under `engine/` and are not allowed as behaviour tests."""
    allowed = set(behaviour)
    return sorted(str(t) for t in tests if str(t) not in allowed and not _names_a_unit(t, modules))


class TestMirror:
    def test_every_engine_test_names_a_module(self) -> None:
        """No test file under tests/engine/ stands where no module of engine/ is."""
        assert strays(engine_tests_of(ROOT), modules_of(ROOT)) == []

    def test_the_allow_list_names_existing_files(self) -> None:
        """Each behaviour test allowed exists, and really names no single module (else it is not needed)."""
        modules = modules_of(ROOT)
        for path in BEHAVIOUR:
            assert (ROOT / path).is_file(), path
            assert not _names_a_unit(PurePosixPath(path), modules), path

    def test_a_planted_stray_is_found(self) -> None:
        """A synthetic tree: tests that mirror modules pass, misplaced or unknown ones are named."""
        modules = {PurePosixPath(p) for p in ["engine/__init__.py", "engine/ids.py", "engine/hl7v2/__init__.py",
                                               "engine/hl7v2/er7.py", "engine/store/__init__.py"]}
        tests = {PurePosixPath(p) for p in [
            "tests/engine/test_ids.py",                 # engine/ids.py
            "tests/engine/hl7v2/test_er7.py",           # engine/hl7v2/er7.py
            "tests/engine/hl7v2/test_er7_fuzz.py",      # one aspect of engine/hl7v2/er7.py
            "tests/engine/hl7v2/test_init.py",          # the package's surface
            "tests/engine/store/test_store.py",         # the package's surface
            "tests/engine/test_hl7v2.py",               # the package as a whole
            "tests/engine/test_er7.py",                 # stray: er7 is in engine/hl7v2/
            "tests/engine/hl7v2/test_ack.py",           # stray: no engine/hl7v2/ack.py
            "tests/engine/ghost/test_init.py",          # stray: no engine/ghost/
            "tests/engine/test_fuzz_er7.py",            # stray: the aspect comes after the module
            "tests/engine/test_allowed.py",             # allowed below
        ]}
        assert strays(tests, modules, behaviour={"tests/engine/test_allowed.py": "spans modules"}) == [
            "tests/engine/ghost/test_init.py", "tests/engine/hl7v2/test_ack.py", "tests/engine/test_er7.py",
            "tests/engine/test_fuzz_er7.py"]
