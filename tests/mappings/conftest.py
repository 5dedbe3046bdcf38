"""Shared fixtures for mapping tests: one compiled Converter with the shipped mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.mapping import Converter
from tests.support import ROOT

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def converter() -> Converter:
    return Converter(ROOT / "mappings", ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
