"""`wasla mapping test`: every fixture passes as shipped; a change shows as one line per element."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.support import CORPUS, ROOT, WASLA, make_project


def _mapping_test(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "mapping", "test", "--config", str(project / "config"), *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def test_shipped_fixtures_pass() -> None:
    result = _mapping_test(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    fixtures = len(list(ROOT.glob("mappings/*/fixtures/*.hl7")))
    assert result.stdout.rstrip().endswith(f"{fixtures} passed, 0 failed")


def test_a_difference_is_named_by_resource_and_element(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    expected = project / "mappings/oru_r01/fixtures/ma-labo-3-groupes.json"
    bundle = orjson.loads(expected.read_bytes())
    obs = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Observation")
    bundle["entry"][obs]["resource"]["status"] = "preliminary"
    del bundle["entry"][0]["resource"]["gender"]
    expected.write_bytes(orjson.dumps(bundle))
    result = _mapping_test(project, "oru_r01")
    assert result.returncode == 1
    lines = [ln.strip() for ln in result.stdout.splitlines()]
    assert "FAIL    oru_r01/ma-labo-3-groupes" in result.stdout
    assert f'entry[{obs}] Observation.status: expected "preliminary", got "final"' in lines
    assert 'entry[0] Patient.gender: not expected, got "male"' in lines
    others = len(list(expected.parent.glob("*.hl7"))) - 1
    assert others >= 1 and lines[-1] == f"{others} passed, 1 failed"  # the other oru_r01 fixtures still pass


def test_update_writes_the_new_output(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    expected = project / "mappings/orders/fixtures/ORM-O01-01.json"
    expected.unlink()
    first = _mapping_test(project, "orders")
    assert first.returncode == 1 and "no expected output (ORM-O01-01.json)" in first.stdout
    updated = _mapping_test(project, "orders", "--update")
    assert updated.returncode == 0 and "updated orders/ORM-O01-01" in updated.stdout
    assert orjson.loads(expected.read_bytes()) == orjson.loads((ROOT / "mappings/orders/fixtures/ORM-O01-01.json")
                                                                .read_bytes())
    assert _mapping_test(project, "orders").returncode == 0


def test_unknown_mapping_is_one_line(tmp_path: Path) -> None:
    result = _mapping_test(ROOT, "nope")
    assert result.returncode == 1 and result.stderr.strip().startswith("error: no mapping nope (known: adt")
    assert "Traceback" not in result.stderr


# `wasla mapping new NAME --from FILE.hl7` (engine/mapping/scaffold.py)

_Z_SAMPLE = "\r".join([
    "MSH|^~\\&|DIALYSE|CLINIQUE-ATLAS|WASLA|MS|20261120101500||ZDS^Z01^ZDS_Z01|ZD0001|P|2.5",
    "PID|1||IPP300001^^^CLINIQUE-ATLAS^PI||BERRADA^Amine||19880412|M",
    "PV1|1|O|DIAL^2^^CLINIQUE-ATLAS||||||||||||||||V2026-0900^^^CLINIQUE-ATLAS^VN",
    "ZDS|1|SEANCE-42|240|HD^Hemodialyse^L",
    "OBX|1|NM|29463-7^Poids^LN||71.5|kg^^UCUM|||||F|||20261120100000",
    "ZDS|2|SEANCE-42|||FIN",
]) + "\r"


def _new(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "mapping", "new", *args, "--config", str(project / "config")], cwd=project,
                          capture_output=True, text=True, timeout=120)


def _loads_and_converts(project: Path, name: str, sample: Path) -> list[dict[str, str]]:
    from engine.hl7v2 import decode, parse
    from engine.mapping.fixtures import FIXTURE_NOW, fixture_converter

    converter = fixture_converter(project / "mappings", project / "config/schema", project / "nomenclatures/hl7v2-fhir")
    conversion = converter.convert(name, parse(decode(sample.read_bytes())), FIXTURE_NOW)
    assert orjson.loads(conversion.bundle)["entry"]
    return conversion.warnings


class TestMappingNew:
    def test_scaffold_from_a_corpus_message_loads_converts_and_lists_what_is_left(self, tmp_path: Path) -> None:
        """OMG^O19 (no shipped mapping): a resource per segment with a segment map, the rest as TODOs."""
        sample = CORPUS / "OMG-O19-01.hl7"
        if not sample.exists():
            pytest.skip("../shared/corpus is absent")
        project = make_project(tmp_path)
        result = _new(project, "omg_o19", "--from", str(sample))
        assert result.returncode == 0, result.stdout + result.stderr
        folder = project / "mappings/omg_o19"
        text = (folder / "mapping.yaml").read_text()
        assert "accepts: [OMG^O19]" in text
        for include in ("pid_patient", "pv1_encounter", "orc_obr_servicerequest", "spm_specimen", "obx_observation"):
            assert f"include: [{include}]" in text and include in result.stdout
        assert "for_each: ORDER " in text  # ORC and OBR: one ServiceRequest per ORDER group of OMG_O19
        assert 'TODO: map or explain' in text and "# - {ig: PID-18" in text
        assert (folder / "fixtures/OMG-O19-01.hl7").read_bytes() == sample.read_bytes()
        assert not list(folder.glob("fixtures/*.json"))
        assert "by hand" in (folder / "fixtures/README.md").read_text()
        check = subprocess.run([WASLA, "check", "--config", str(project / "config")], cwd=project,
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        warnings = _loads_and_converts(project, "omg_o19", folder / "fixtures/OMG-O19-01.hl7")
        assert any(w["code"] == "FIELDS_NOT_MAPPED" for w in warnings)
        tested = _mapping_test(project, "omg_o19")
        assert tested.returncode == 1 and "no expected output (OMG-O19-01.json)" in tested.stdout
        assert "warning: FIELDS_NOT_MAPPED " in tested.stdout
        family = sample.read_text().split("PID|")[1].split("|")[4].split("^")[0]
        assert family and family not in result.stdout + result.stderr and family not in text  # no PHI

    def test_scaffold_from_a_z_segment_message(self, tmp_path: Path) -> None:
        """A local message type with Z-segments: no reference structure, the Z fields are TODOs and reported."""
        project = make_project(tmp_path)
        sample = tmp_path / "dialyse-seance.hl7"
        sample.write_text(_Z_SAMPLE)
        result = _new(project, "dialyse", "--from", str(sample))
        assert result.returncode == 0, result.stdout + result.stderr
        text = (project / "mappings/dialyse/mapping.yaml").read_text()
        assert "accepts: [ZDS^Z01]" in text and "structure unknown" in text
        assert [ln.split()[1] for ln in result.stdout.splitlines() if ln.startswith("  resource ")] == [
            "patient", "encounter", "observation"]
        for n in range(1, 6):
            assert f'# ZDS-{n}: "TODO: map or explain"' in text
        assert "left to map: 5 field(s)" in result.stdout
        warnings = _loads_and_converts(project, "dialyse", project / "mappings/dialyse/fixtures/dialyse-seance.hl7")
        assert {"code": "FIELDS_NOT_MAPPED", "rule": "dialyse", "field": "ZDS",
                "detail": "valued in the message, read by no rule"} in warnings
        assert "BERRADA" not in result.stdout and "BERRADA" not in text

    def test_refuses_to_overwrite_a_mapping(self, tmp_path: Path) -> None:
        project = make_project(tmp_path)
        sample = tmp_path / "s.hl7"
        sample.write_text(_Z_SAMPLE)
        assert _new(project, "dialyse", "--from", str(sample)).returncode == 0
        before = (project / "mappings/dialyse/mapping.yaml").read_bytes()
        again = _new(project, "dialyse", "--from", str(sample))
        assert again.returncode == 1 and "mappings/dialyse already exists" in again.stderr
        assert (project / "mappings/dialyse/mapping.yaml").read_bytes() == before
        shipped = (project / "mappings/adt/mapping.yaml").read_bytes()
        assert _new(project, "adt", "--from", str(sample)).returncode == 1
        assert (project / "mappings/adt/mapping.yaml").read_bytes() == shipped

    def test_a_file_that_is_not_hl7_is_named_with_its_line(self, tmp_path: Path) -> None:
        project = make_project(tmp_path)
        bad = tmp_path / "bad.hl7"
        bad.write_text("MSH|^~\\&|A|B|||20261120||ORU^R01|1|P|2.5\nPID|1||X\n\nnot a segment at all\n")
        result = _new(project, "bad_one", "--from", str(bad))
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.strip() == f"error: {bad}:4: not an HL7 v2 message: segment 3 has no valid segment id " \
                                        "(expected 3 capitals or digits, the first a letter, then the field separator)"
        assert not (project / "mappings/bad_one").exists()

    def test_a_name_that_is_no_identifier_is_refused(self, tmp_path: Path) -> None:
        project = make_project(tmp_path)
        sample = tmp_path / "s.hl7"
        sample.write_text(_Z_SAMPLE)
        for name in ("Dialyse", "../escape", "1abc", "segments"):
            result = _new(project, name, "--from", str(sample))
            assert result.returncode == 1 and f"mapping name '{name}'" in result.stderr, name
        assert sorted(p.name for p in (project / "mappings").iterdir()) == sorted(
            p.name for p in (ROOT / "mappings").iterdir())
