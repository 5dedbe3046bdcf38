"""The shipped nomenclatures loaded once (a registry, a converter); helpers that make synthetic identifiers
with valid keys."""

from __future__ import annotations

import pytest

from engine.nomenclature import Registry, load_registry
from tests.engine.mapping.conftest import converter
from tests.support import ROOT

__all__ = ["converter", "ice_with_key", "nir_with_key", "registry"]


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(ROOT / "nomenclatures", "https://fhir.wasla.ma")


def ice_with_key(first13: str) -> str:
    """An ICE whose 15 digits are 0 modulo 97 (ISO 7064 mod 97-10)."""
    return first13 + f"{(97 - int(first13) * 100 % 97) % 97:02d}"


def nir_with_key(first13: str) -> str:
    """A NIR with its key: 97 - (number mod 97), Corsica 2A/2B read as 19/18."""
    digits = first13.replace("2A", "19").replace("2B", "18")
    return first13 + f"{97 - int(digits) % 97:02d}"
