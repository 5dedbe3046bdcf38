"""Fields no rule reads are reported by path (never by value), unless the mapping ignores them on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
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


# An occurrence nobody read (issue 25): NTE-3 is read after SCH, which says nothing of a location's NTE.
SIU = (ROOT / "mappings/siu/fixtures/ma-siu-s12-consultation.hl7").read_bytes()


def _siu_reading_only_root_notes(tmp_path: Path, ignore: str = "") -> Converter:
    """The shipped siu mapping with its comment rule reading the NTEs after SCH only, and `ignore` added."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    f = tmp_path / "mappings/siu/mapping.yaml"
    text = f.read_text(encoding="utf-8").replace('each_segment: "*/NTE"', "each_segment: true")
    f.write_text(text.replace("\nignore:\n", f"\nignore:\n{ignore}", 1), encoding="utf-8")
    return Converter(tmp_path / "mappings", ROOT / "config/schema", ROOT / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")


def _location_note(raw: bytes) -> bytes:
    """The fixture with a note after its AIL (LOCATION_RESOURCE.NTE)."""
    lines = raw.decode().split("\r")
    at = next(i for i, line in enumerate(lines) if line.startswith("AIL|"))
    lines.insert(at + 1, "NTE|1||Salle B12 : accès fauteuil roulant")
    return "\r".join(lines).encode()


def _unread(converter: Converter, raw: bytes) -> list[tuple[str, str]]:
    warnings = converter.convert("siu", parse(decode(raw)), NOW).warnings
    return [(w["field"], w["detail"]) for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"]


def test_an_occurrence_no_rule_reads_is_named_with_its_group(tmp_path: Path) -> None:
    """A mapping reading only the NTEs after SCH leaves the location's NTE: named by position and group,
    never by value, where the static per-field answer (NTE-3 is read) would have said nothing."""
    raw = _location_note(SIU)
    found = _unread(_siu_reading_only_root_notes(tmp_path), raw)
    index = raw.decode().split("\r").index("NTE|1||Salle B12 : accès fauteuil roulant") + 1
    assert found == [("NTE[2]", f"segment {index} in LOCATION_RESOURCE: no rule reads this occurrence")]
    assert "Salle" not in repr(found)


def test_a_group_left_out_on_purpose_is_not_reported(tmp_path: Path) -> None:
    """`ignore: {LOCATION_RESOURCE/NTE: why}` says the location notes are left out on purpose: not reported."""
    converter = _siu_reading_only_root_notes(tmp_path, '  LOCATION_RESOURCE/NTE: "location notes, left out"\n')
    assert _unread(converter, _location_note(SIU)) == []


def test_the_shipped_siu_mapping_reads_every_note(converter: Converter) -> None:
    """The shipped mapping joins every NTE (after SCH and in each resource group) into comment: nothing unread."""
    raw = _location_note(SIU)
    assert _unread(converter, raw) == []
    bundle = orjson.loads(converter.convert("siu", parse(decode(raw)), NOW).bundle)
    appointment = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment")
    assert appointment["comment"].endswith("\nSalle B12 : accès fauteuil roulant")


def test_a_malformed_group_ignore_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="a group's segment"):
        _siu_reading_only_root_notes(tmp_path, '  location_resource/NTE: "lower case is no group name"\n').spec("siu")


def test_an_unread_occurrence_is_named_even_where_its_kind_made_resources(converter: Converter) -> None:
    """Order 1's OBX makes an Observation; order 2 (ODS, no OBR) has its OBX among the ORDER's own segments,
    which no rule reads: named, although OBX is a kind resources were made from (before: silent)."""
    segs = ["MSH|^~\\&|HIS|CHU|LIS|CHU|20260101120000||ORM^O01^ORM_O01|C1|P|2.6",
            "PID|1||123^^^CHU^MR||DOE^JOHN||19800101|M", "ORC|NW|P1^HIS", "OBR|1|P1^HIS||GLU^Glucose^L",
            "OBX|1|NM|WT^Weight^L||70|kg|||||F", "ORC|NW|P2^HIS", "ODS|D||DIET^Diet^L",
            "OBX|1|NM|HT^Height^L||180|cm|||||F"]
    warnings = converter.convert("orders", parse("\r".join(segs)), NOW).warnings
    assert [(w["field"], w["detail"]) for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"] == [
        ("OBX[2]", "segment 8 in ORDER: no rule reads this occurrence")]
