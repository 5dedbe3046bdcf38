"""Fields no rule reads are reported by path (never by value), unless the mapping ignores them on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import ConfigErrors
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT

ORU = ROOT / "mappings/oru_r01/fixtures/ma-labo-3-groupes.hl7"


def _not_mapped(converter: Converter, mapping: str, raw: bytes) -> list[str]:
    warnings = converter.convert(mapping, parse(decode(raw)), NOW).warnings
    found = [w for w in warnings if w["code"] == "FIELDS_NOT_MAPPED"]
    return found[0]["field"].split(", ") if found else []


def _with_ignore(tmp_path: Path, ignore: str) -> Converter:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    f = tmp_path / "mappings/oru_r01/mapping.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("\nresources:", f"\n{ignore}\nresources:"), encoding="utf-8")
    return Converter(tmp_path / "mappings", ROOT / "config/schema", ROOT / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")


def test_unread_segment_and_field_are_named(converter: Converter) -> None:
    """The ORU fixture's ZLB segment and NTE-2 (comment source) reach no rule: both named, once."""
    assert _not_mapped(converter, "oru_r01", ORU.read_bytes()) == ["ZLB", "NTE-2"]


def test_set_ids_and_engine_fields_are_not_reported(converter: Converter) -> None:
    """OBX-1/PID-1 (Set IDs) and MSH-5/6/11 (used for the ACK) are structure, not data left behind."""
    reported = _not_mapped(converter, "oru_r01", ORU.read_bytes())
    assert not {"PID-1", "OBX-1", "OBR-1", "MSH-5", "MSH-6", "MSH-11"} & set(reported)


def test_a_new_valued_field_is_reported_without_its_value(converter: Converter) -> None:
    lines = ORU.read_bytes().split(b"\r")
    lines = [ln + b"|||||||||||||||||||||||||||||||||||SECRET-VALUE" if ln.startswith(b"PV1") else ln for ln in lines]
    warnings = converter.convert("oru_r01", parse(decode(b"\r".join(lines))), NOW).warnings
    found = next(w for w in warnings if w["code"] == "FIELDS_NOT_MAPPED")
    assert "PV1-54" in found["field"].split(", ")
    assert b"SECRET" not in repr(warnings).encode()


def test_ignore_silences_with_a_reason(tmp_path: Path) -> None:
    conv = _with_ignore(tmp_path, 'ignore:\n  ZLB: "local lab workflow segment, not clinical"\n'
                                  '  NTE-2: "comment source: no FHIR element in the IG"')
    assert _not_mapped(conv, "oru_r01", ORU.read_bytes()) == []


def test_ignore_entries_are_checked(tmp_path: Path) -> None:
    conv = _with_ignore(tmp_path, 'ignore:\n  nte-2: "lowercase is not a field path"')
    with pytest.raises(ConfigErrors) as info:
        conv.spec("oru_r01")
    err = info.value.errors[0]
    assert err.file.endswith("oru_r01/mapping.yaml") and err.line is not None
