"""The oul (OUL^R22/R23/R24) and omg (OMG^O19) mappings: one condition per test (issue 25).

Sources: Microsoft FHIR-Converter 70fd328 data/Templates/Hl7v2/OUL_R22.liquid, OMG_O19.liquid,
Resource/_Specimen.liquid; the HL7 v2-to-FHIR IG 8c9b414 message map OML_O21 (for OMG_O19) and its segment maps.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only, resources
from tests.mappings.conftest import NOW

PID = "PID|1||IPP-1^^^CHU-TEST^PI||Test^Patient||19700101|F"


def _msh(kind: str, version: str = "2.5.1") -> str:
    return f"MSH|^~\\&|AUTO|LABO-TEST|WASLA|CHU-TEST|20261120093000||{kind}|T-1|P|{version}"


def _convert(converter: Converter, name: str, *segments: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result = converter.convert(name, parse(decode("\r".join(segments).encode() + b"\r")), NOW)
    return orjson.loads(result.bundle), result.warnings


def _url(bundle: dict[str, Any], res: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is res)


SPM1 = "SPM|1|S-1&CHU-TEST^S-1-L&LABO-TEST||SER^Serum^HL70487"
SPM2 = "SPM|2|S-2&CHU-TEST^S-2-L&LABO-TEST||BLD^Whole blood^HL70487"
OBR_A = "OBR|1|A-1^CHU-TEST|F-1^LABO-TEST|1558-6^Glucose^LN|||20261120073000||||||||||||||||||F"
OBX_GLU = "OBX|1|NM|1558-6^Glucose^LN||1.02|g/L^g/L^UCUM|||||F"


class TestOul:
    def test_one_order_on_two_specimens_is_one_request_and_two_results(self, converter: Converter) -> None:
        """R22: the same ORDER under two SPECIMEN groups is one ServiceRequest naming both tubes (duplicates:
        merge); each tube's result is its own Observation (the specimen is part of its key), pointing to its tube."""
        bundle, _ = _convert(converter, "oul", _msh("OUL^R22^OUL_R22"), PID, SPM1, OBR_A, OBX_GLU, SPM2, OBR_A,
                             OBX_GLU)
        specimens = resources(bundle, "Specimen")
        assert len(specimens) == 2
        request = only(bundle, "ServiceRequest")
        assert [s["reference"] for s in request["specimen"]] == [_url(bundle, s) for s in specimens]
        observations = resources(bundle, "Observation")
        assert len({o["id"] for o in observations}) == 2
        assert [o["specimen"]["reference"] for o in observations] == [_url(bundle, s) for s in specimens]

    def test_v251_and_v28_give_the_same_resources(self, converter: Converter) -> None:
        """hl7apy names v2.5.1's RESULT `OBXTCDSIDNTE_SUPPGRP`; engine/hl7v2/groups.py renames it, so a 2.5.1 lab
        automation message makes the Observation a 2.8 one does."""
        segs = (PID, SPM1, OBR_A, "ORC|SC|A-1^CHU-TEST|F-1^LABO-TEST||CM", OBX_GLU)
        old, _ = _convert(converter, "oul", _msh("OUL^R22^OUL_R22", "2.5.1"), *segs)
        new, _ = _convert(converter, "oul", _msh("OUL^R22^OUL_R22", "2.8"), *segs)
        assert [e["fullUrl"] for e in old["entry"][:-1]] == [e["fullUrl"] for e in new["entry"][:-1]]
        assert only(old, "Observation")["valueQuantity"]["value"] == 1.02

    def test_sac_makes_a_container_with_its_capacity(self, converter: Converter) -> None:
        """_Specimen.liquid: container.identifier ← SAC-3, capacity ← SAC-21 with SAC-24's unit."""
        sac = "SAC|||C-1^LABO-TEST" + "|" * 18 + "5|||mL^millilitre^UCUM"
        bundle, _ = _convert(converter, "oul", _msh("OUL^R22^OUL_R22"), PID, SPM1, sac, OBR_A, OBX_GLU)
        (container,) = only(bundle, "Specimen")["container"]
        assert container["identifier"][0]["value"] == "C-1"
        assert container["capacity"] == {"value": 5, "unit": "millilitre", "system": "http://unitsofmeasure.org",
                                         "code": "mL"}

    def test_a_field_no_rule_reads_is_warned(self, converter: Converter) -> None:
        """No silent drop: SAC-6 (specimen source) has no rule and is not in ignore: → FIELDS_NOT_MAPPED."""
        _, warnings = _convert(converter, "oul", _msh("OUL^R22^OUL_R22"), PID, SPM1, "SAC|||C-1|||X", OBR_A,
                               OBX_GLU)
        assert any(w["code"] == "FIELDS_NOT_MAPPED" and "SAC-6" in w["field"] for w in warnings), warnings

    def test_r24_specimen_observation_names_the_specimen(self, converter: Converter) -> None:
        """OUL_R22.liquid: an OBX of the SPECIMEN group → Observation.specimen = that Specimen, no basedOn. (In R24
        an OBX after SPM is the specimen's by the grammar; the ORDER's results come after its SAC containers.)"""
        bundle, _ = _convert(converter, "oul", _msh("OUL^R24^OUL_R24", "2.8"), PID, OBR_A, SPM1,
                             "OBX|1|CWE|HEMOL^Hemolysis^L||N^No^L||||||F", "SAC|||C-1", OBX_GLU)
        specimen_obs, result = resources(bundle, "Observation")
        assert specimen_obs["specimen"]["reference"] == _url(bundle, only(bundle, "Specimen"))
        assert "basedOn" not in specimen_obs and "specimen" not in result
        assert result["basedOn"][0]["reference"] == _url(bundle, only(bundle, "ServiceRequest"))


class TestOmg:
    ORC = "ORC|NW|D-1^CHU-TEST|||SC"
    OBR = "OBR|1|D-1^CHU-TEST||11524-6^ECG^LN"

    def test_order_observations_are_supporting_info(self, converter: Converter) -> None:
        """OML_O21 6.4.7.1: ServiceRequest[1].supportingInfo = Observation[1]; Observation.subject = Patient."""
        bundle, _ = _convert(converter, "omg", _msh("OMG^O19^OMG_O19"), PID, self.ORC, self.OBR,
                             "OBX|1|NM|8480-6^SBP^LN||150|mm[Hg]^mm[Hg]^UCUM|||||F")
        obs = only(bundle, "Observation")
        assert only(bundle, "ServiceRequest")["supportingInfo"] == [{"reference": _url(bundle, obs)}]
        assert obs["subject"]["reference"] == _url(bundle, only(bundle, "Patient")) and "basedOn" not in obs

    def test_prior_result_makes_nothing_and_is_warned(self, converter: Converter) -> None:
        """OML_O21 6.4.10.*: no target. The prior order's ORC/OBR/OBX make no resource and each is warned."""
        bundle, warnings = _convert(converter, "omg", _msh("OMG^O19^OMG_O19", "2.8"), PID, self.ORC, self.OBR,
                                    "PV1|1|O", "ORC|RE|OLD-1^CHU-TEST", "OBR|1|OLD-1^CHU-TEST||11524-6^ECG^LN",
                                    "OBX|1|ST|22637-3^Conclusion^LN||Normal||||||F")
        assert [s["identifier"][0]["value"] for s in resources(bundle, "ServiceRequest")] == ["D-1"]
        assert not resources(bundle, "Observation")
        assert {w["field"] for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"} >= {"ORC[2]", "OBX[1]"}, warnings

    def test_two_orders_two_requests(self, converter: Converter) -> None:
        """A second ORC is a new ORDER (not a PRIOR_RESULT of the first): two ServiceRequests, distinct ids."""
        bundle, _ = _convert(converter, "omg", _msh("OMG^O19^OMG_O19", "2.8"), PID, self.ORC, self.OBR,
                             "ORC|NW|D-2^CHU-TEST|||SC", "OBR|1|D-2^CHU-TEST||11529-5^Pathology^LN")
        requests = resources(bundle, "ServiceRequest")
        assert [r["identifier"][0]["value"] for r in requests] == ["D-1", "D-2"]
        assert len({r["id"] for r in requests}) == 2

    def test_a_prior_results_patient_is_warned_not_refused(self, converter: Converter) -> None:
        """A PID in PRIOR_RESULT.PATIENT_PRIOR (OML_O21 6.4.10.1.2, no target) is not a second patient: the message
        converts and that PID is named SEGMENT_NOT_MAPPED."""
        bundle, warnings = _convert(converter, "omg", _msh("OMG^O19^OMG_O19", "2.8"), PID, self.ORC, self.OBR,
                                    PID, "ORC|RE|OLD-1^CHU-TEST", "OBR|1|OLD-1^CHU-TEST||11524-6^ECG^LN",
                                    "OBX|1|ST|22637-3^Conclusion^LN||Normal||||||F")
        assert len(resources(bundle, "Patient")) == 1
        assert {"PID[2]", "OBX[1]"} <= {w["field"] for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"}

    def test_a_prior_result_segment_is_named_once(self, converter: Converter) -> None:
        """The prior OBX is named by the segment-kind check and by the per-occurrence coverage: once, not twice."""
        _, warnings = _convert(converter, "omg", _msh("OMG^O19^OMG_O19", "2.8"), PID, self.ORC, self.OBR,
                               "PV1|1|O", "ORC|RE|OLD-1^CHU-TEST", "OBR|1|OLD-1^CHU-TEST||11524-6^ECG^LN",
                               "OBX|1|ST|22637-3^Conclusion^LN||Normal||||||F")
        named = [w["field"] for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"]
        assert len(named) == len(set(named)) and "OBX[1]" in named, named
