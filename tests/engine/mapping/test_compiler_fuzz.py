"""Fuzzing the mapping compiler's YAML input: a mapping file, however broken, compiles or fails with
declared errors (ConfigError: file, line, field, what was expected), never with a traceback."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from engine.errors import ConfigError, MappingError
from engine.mapping.compiler import compile_mapping
from tests.support import ROOT

SCHEMAS = ROOT / "config" / "schema"
VOCAB = ROOT / "nomenclatures" / "hl7v2-fhir"
_yaml = YAML(typ="safe")
_SHIPPED = {name: _yaml.load((ROOT / "mappings" / name / "mapping.yaml").read_text())
            for name in ("adt", "oru_r01", "orders")}

_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=False, width=32),
                    st.text(max_size=12),
                    st.sampled_from(["PID-3", "PID-3.1", "PID-99", "OBX-5[*]", "PV1-19.1", "ZZZ-1", "PID-", "-3",
                                     "Patient.identifier", "Observation.value[x]", "name[0].family", "valueQuantity",
                                     "v2-0001", "no-such-map", "patient", "encounter", "$ref", "{{", "]"]))
_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


@st.composite
def mapping_docs(draw: st.DrawFn) -> tuple[str, str]:
    """(mapping name, YAML text): a shipped mapping with a few nodes replaced, or any YAML, or bytes."""
    name = draw(st.sampled_from(sorted(_SHIPPED)))
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "any", "text"]))
    if kind == "text":
        return name, draw(st.text(max_size=300))
    if kind == "any":
        doc: Any = draw(_VALUE)
    else:
        doc = copy.deepcopy(_SHIPPED[name])
        for _ in range(draw(st.integers(1, 3))):
            paths = list(_paths(doc))
            doc = _replace(doc, paths[draw(st.integers(0, len(paths) - 1))], draw(_VALUE))
    out = Path(tempfile.mkstemp(suffix=".yaml")[1])
    try:
        with out.open("w") as fh:
            _yaml.dump(doc, fh)
        return name, out.read_text()
    finally:
        out.unlink()


@pytest.fixture(scope="module")
def mappings_copy() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mappings"
        shutil.copytree(ROOT / "mappings", root)
        yield root


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=mapping_docs())
def test_a_broken_mapping_fails_with_declared_errors_only(mappings_copy: Path, case: tuple[str, str]) -> None:
    name, text = case
    file = mappings_copy / name / "mapping.yaml"
    file.write_text(text)
    try:
        compile_mapping(file, SCHEMAS, VOCAB, display=f"mappings/{name}/mapping.yaml")
    except (ConfigError, MappingError) as exc:
        said = str(exc)
        assert said and "Traceback" not in said
        assert f"mappings/{name}/mapping.yaml" in said  # the file is named, with its line where known
    finally:
        shutil.copy(ROOT / "mappings" / name / "mapping.yaml", file)
