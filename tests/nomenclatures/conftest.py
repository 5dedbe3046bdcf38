"""The shipped nomenclatures, loaded once: the same session fixture as the engine's nomenclature tests."""

from __future__ import annotations

from tests.engine.nomenclature.conftest import registry

__all__ = ["registry"]
