"""Shared fixtures for mapping tests: one compiled Converter with the shipped mappings, and the pinned clock."""

from __future__ import annotations

import pytest

from engine.mapping import Converter
from engine.mapping.fixtures import FIXTURE_NOW, fixture_converter
from tests.support import ROOT

NOW = FIXTURE_NOW


@pytest.fixture(scope="session")
def converter() -> Converter:
    return fixture_converter(ROOT / "mappings", ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir")
