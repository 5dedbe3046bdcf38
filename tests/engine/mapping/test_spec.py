"""The typed rule tree of a mapping file (engine/mapping/spec.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.yamlfile import load_yaml
from engine.errors import ConfigErrors
from engine.mapping.compiler import compile_mapping
from engine.mapping.spec import parse_mapping, parse_segment_map
from tests.support import ROOT

_MAPPING = """\
kind: MessageMap
name: demo
version: 1.0.0
accepts: [ADT^A01]
resources:
  - name: patient
    type: Patient
    id: [PID-3]
    request: put
    rules:
      - {from: PID-8, to: gender, vocab: v2-0001.administrative-gender}
      - {id: the-code, to: active, value: null}
      - to: value[x]
        switch: OBX-2
        cases:
          NM|SN: {from: OBX-5, to: valueQuantity, as: NM.Quantity}
"""


def _write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "mappings" / "demo" / "mapping.yaml"
    file.parent.mkdir(parents=True)
    file.write_text(text)
    return file


class TestParse:
    def test_every_node_knows_its_file_line_and_column(self, tmp_path: Path) -> None:
        """A rule, a switch case and a resource each carry the YAML position they were read from."""
        tree = parse_mapping(load_yaml(_write(tmp_path, _MAPPING), display="demo.yaml"))
        patient = tree.resources[0]
        gender, fixed, switch = patient.rules
        assert (patient.where.file, patient.where.line, patient.where.column) == ("demo.yaml", 6, 5)
        assert (gender.where.line, gender.where.column) == (11, 9)
        assert (switch.cases[0][1].where.line, switch.cases[0][1].where.column) == (16, 18)
        assert switch.where.at("switch").line == 14

    def test_rule_fields_are_typed(self, tmp_path: Path) -> None:
        """`from:` becomes a tuple, the kind of producer is listed, and a null `value:` is still a value."""
        tree = parse_mapping(load_yaml(_write(tmp_path, _MAPPING)))
        gender, fixed, switch = tree.resources[0].rules
        assert gender.sources == ("PID-8",) and not gender.sources_listed and gender.kinds == ("vocab",)
        assert gender.label == "gender"
        assert fixed.kinds == ("value",) and fixed.value is None and fixed.label == "the-code"
        assert switch.is_switch and [code for code, _ in switch.cases] == ["NM|SN"]
        assert not switch.has_default

    def test_segment_maps_parse_to_the_same_rule_nodes(self) -> None:
        """Every shipped segment map parses, its rules pointing into its own file."""
        for file in sorted((ROOT / "mappings" / "segments").glob("*.yaml")):
            tree = parse_segment_map(load_yaml(file, display=file.name))
            assert tree.rules and all(r.where.file == file.name for r in tree.rules)


class TestErrors:
    def test_a_problem_is_reported_at_the_rule_key_it_concerns(self, tmp_path: Path) -> None:
        """An unknown converter is reported at the line and column of `as:`, with its dotted path."""
        text = _MAPPING.replace("as: NM.Quantity", "as: NM.Nothing").replace("type: Patient", "type: Observation")
        file = _write(tmp_path, text)
        with pytest.raises(ConfigErrors) as info:
            compile_mapping(file, ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir",
                            display="demo.yaml")
        lines = str(info.value).splitlines()
        assert lines[0] == ("demo.yaml:11:27: resources[0].rules[0].to: "
                            "Observation has no element 'gender' (FHIR R4 Observation)")
        assert lines[-1].startswith(
            "demo.yaml:16:55: resources[0].rules[2].cases.NM|SN.as: unknown converter 'NM.Nothing' (known: ")


_EACH = """\
kind: MessageMap
name: demo
version: 1.0.0
accepts: [MDM^T02]
resources:
  - name: document
    type: DocumentReference
    id: [TXA-12.1]
    request: put
    rules:
      - to: "content[]"
        each_segment: OBSERVATION/OBX
        fields:
          - {from: OBX-5, to: attachment, as: ED.Attachment}
"""


class TestEachSegmentGroup:
    def test_group_slash_segment_is_kept_as_written(self, tmp_path: Path) -> None:
        """`each_segment: GROUP/SEG` stays a string; `true` stays a boolean (issue 25)."""
        rule = parse_mapping(load_yaml(_write(tmp_path, _EACH))).resources[0].rules[0]
        assert rule.each_segment == "OBSERVATION/OBX"
        assert parse_mapping(load_yaml(_write(tmp_path / "b", _EACH.replace("OBSERVATION/OBX", "true")))
                             ).resources[0].rules[0].each_segment is True

    def test_group_slash_segment_without_fields_names_its_segment(self, tmp_path: Path) -> None:
        """Without fields:, GROUP/SEG reads one value per segment: the 'from' path must name that segment."""
        text = _EACH.replace("""        fields:
          - {from: OBX-5, to: attachment, as: ED.Attachment}
""", "        from: TXA-5\n        as: ED.Attachment\n").replace('"content[]"', "content[].attachment")
        with pytest.raises(ConfigErrors, match="reads OBX segments: its 'from' path must name OBX"):
            compile_mapping(_write(tmp_path, text), ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir",
                            display="demo.yaml")

    def test_every_group_form_is_kept(self, tmp_path: Path) -> None:
        """*/SEG (every such segment in scope, whatever its group) parses and compiles with fields:."""
        text = _EACH.replace("OBSERVATION/OBX", "'*/OBX'")
        assert parse_mapping(load_yaml(_write(tmp_path, text))).resources[0].rules[0].each_segment == "*/OBX"
        compile_mapping(_write(tmp_path / "b", text), ROOT / "config" / "schema",
                        ROOT / "nomenclatures" / "hl7v2-fhir", display="demo.yaml")

    def test_a_malformed_group_path_is_refused_by_the_schema(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigErrors, match="each_segment"):
            compile_mapping(_write(tmp_path, _EACH.replace("OBSERVATION/OBX", "OBSERVATION-OBX")),
                            ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir", display="demo.yaml")
