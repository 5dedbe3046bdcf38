"""Shared fixtures for the shipped mappings' tests: the engine's mapping fixtures (one compiled Converter,
the pinned clock), so both folders share one definition."""

from __future__ import annotations

from tests.engine.mapping.conftest import NOW, converter

__all__ = ["NOW", "converter"]
