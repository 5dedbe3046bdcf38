"""National reference nomenclatures: code sets, identifier systems and their validators."""

from engine.nomenclature.codesets import CodeSet, Concept
from engine.nomenclature.identifiers import IdentifierSystem, Verdict
from engine.nomenclature.registry import Registry, load_registry

__all__ = ["CodeSet", "Concept", "IdentifierSystem", "Registry", "Verdict", "load_registry"]
