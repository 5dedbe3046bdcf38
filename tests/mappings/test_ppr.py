"""The `ppr` mapping beyond LinuxForHealth's tests: v2.3.1 grouping, notes per group, the delete (issue 25)."""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only, resources
from tests.mappings.conftest import NOW


def _convert(converter: Converter, version: str, trigger: str, *segments: str) -> dict[str, Any]:
    text = "\r".join([f"MSH|^~\\&|SIS|CSU-A|||20261118103000||PPR^{trigger}|C1|P|{version}",
                      "PID|1||IPP-1^^^CSU-A^PI", *segments]) + "\r"
    bundle: dict[str, Any] = orjson.loads(converter.convert("ppr", parse(decode(text.encode())), NOW).bundle)
    return bundle


def test_v231_problem_observations_are_the_problems(converter: Converter) -> None:
    """hl7apy names the problem's OBX group PATHWAY_OBSERVATION in v2.3.1 (PROBLEM_OBSERVATION elsewhere): both
    give the Condition its evidence, and an OBX's NTE stays the Observation's, never the Condition's note."""
    for version in ("2.3.1", "2.5"):
        b = _convert(converter, version, "PC1", "PRB|AD|20261118|E11.9^Diabete^I10|PB-1", "NTE|1||sur le probleme",
                     "OBX|1|NM|4548-4^HbA1c^LN||7.8|%||||||F", "NTE|1||sur le resultat")
        c, o = only(b, "Condition"), only(b, "Observation")
        assert c["note"] == [{"text": "sur le probleme"}] and o["note"] == [{"text": "sur le resultat"}]
        assert len(c["evidence"]) == 1, version


def test_prb1_delete_in_a_pc2_and_a_resolved_pc3(converter: Converter) -> None:
    """PRB-1 DE marks the problem entered-in-error whatever the trigger; a PC3 never has a clinicalStatus (R4 con-5),
    not even the resolved one PRB-9 would give."""
    b = _convert(converter, "2.5", "PC2", "PRB|DE|20261118|E11.9^Diabete^I10|PB-1")
    assert only(b, "Condition")["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    b = _convert(converter, "2.5", "PC3", "PRB|AD|20261118|E11.9^Diabete^I10|PB-1|||||20261120")
    c = only(b, "Condition")
    assert c["verificationStatus"]["coding"][0]["code"] == "entered-in-error" and "clinicalStatus" not in c
    assert c["abatementDateTime"] == "2026-11-20"


def test_two_problems_two_conditions_each_with_its_observation(converter: Converter) -> None:
    """One Condition per PROBLEM group; each Condition's evidence is its own group's Observation."""
    b = _convert(converter, "2.5", "PC1",
                 "PRB|AD|20261118|E11.9^Diabete^I10|PB-1", "OBX|1|NM|4548-4^HbA1c^LN||7.8|%||||||F",
                 "PRB|AD|20261118|I10^HTA^I10|PB-2", "OBX|1|NM|8480-6^PAS^LN||150|mm[Hg]||||||F")
    urls = {e["resource"]["code"]["coding"][0]["code"]: e["fullUrl"] for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation"}
    conds = {c["code"]["coding"][0]["code"]: c for c in resources(b, "Condition")}
    assert conds["E11.9"]["evidence"][0]["detail"][0]["reference"] == urls["4548-4"]
    assert conds["I10"]["evidence"][0]["detail"][0]["reference"] == urls["8480-6"]
