"""The HL7 v2 → FHIR vocabulary maps the mappings use, row by row against the IG's tables.

Expected rows: the HL7 v2-to-FHIR IG 1.0.0 vocabulary maps as transcribed and checked in
../shared/research/anchors-mapping.md §6.1. Local deviations are the ones `_meta.yaml` declares,
listed here too so that an undeclared change fails.
"""

from __future__ import annotations

import pytest

from engine.nomenclature.vocab import load_vocab
from tests.support import ROOT

VOCAB = ROOT / "nomenclatures" / "hl7v2-fhir"

IG = {
    "v2-0001.administrative-gender": {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other",
                                      "N": "other"},
    "v2-0085.observation-status": {"A": "amended", "C": "corrected", "D": "entered-in-error", "F": "final",
                                   "P": "preliminary", "W": "entered-in-error", "X": "cancelled"},
    "v2-0123.diagnostic-report-status": {"O": "registered", "I": "registered", "S": "registered", "P": "preliminary",
                                         "R": "partial", "C": "corrected", "F": "final", "X": "cancelled"},
    "v2-0004.encounter-status": {**dict.fromkeys("EIORBCN", "in-progress"), "P": "planned", "U": "unknown"},
    "v2-0003.encounter-status": {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "planned",
                                 "A05": "planned", "A08": "unknown", "A11": "cancelled", "A13": "in-progress"},
    "v2-0038.request-status": {"CA": "revoked", "DC": "revoked", "RP": "revoked", "CM": "completed",
                               "ER": "entered-in-error", "HD": "on-hold", "IP": "active", "SC": "active"},
    "v2-0200.name-use": {"L": "official", "R": "official", "D": "usual", "M": "maiden", "N": "nickname",
                         "MSK": "anonymous", "NAV": "temp", "TEMP": "temp", "BAD": "old"},
    "v2-0201.contact-point-use": {"PRN": "home", "WPN": "work", "PRS": "mobile"},
    "v2-0127.allergy-category": {"DA": "medication", "FA": "food", "EA": "environment", "PA": "environment",
                                 "LA": "environment", "AA": "biologic"},
    "v2-0128.allergy-criticality": {"SV": "high", "MI": "low"},
    "v2-0136.boolean": {"Y": "true", "N": "false"},
    "v2-0485.request-priority": {"S": "stat", "A": "asap", "R": "routine"},
    "v2-0007.admission-type": {c: c for c in "AELRNUC"},
    "v2-0069.service-type": {"MED": "382", "SUR": "SUR", "URO": "222", "PUL": "PUL", "CAR": "CAR"},
}
# Deviations _meta.yaml declares (the IG has no target; the FHIR element is 1..1 or the code is in use).
LOCAL = {
    "v2-0085.observation-status": {"R": "preliminary", "S": "preliminary", "I": "registered", "O": "registered",
                                   "U": "final"},
    "v2-0123.diagnostic-report-status": {"A": "partial", "M": "corrected"},
    "v2-0003.encounter-status": {"A06": "in-progress", "A07": "in-progress", "A12": "in-progress",
                                 # MS FHIR-Converter Resource/_Encounter.liquid (issue 25)
                                 "A14": "planned", "A15": "in-progress", "A16": "in-progress",
                                 "A25": "in-progress", "A26": "in-progress", "A27": "cancelled",
                                 # trigger semantics (table 0003): tracking, leave of absence, delete visit
                                 "A09": "in-progress", "A10": "in-progress", "A21": "onleave",
                                 "A22": "in-progress", "A23": "entered-in-error", "A38": "cancelled",
                                 # delete person information: the visit goes with the record (issue 25)
                                 "A29": "entered-in-error"},
}


@pytest.mark.parametrize("name", sorted(IG))
def test_map_matches_the_ig(name: str) -> None:
    vm = load_vocab(VOCAB, name)
    got = {code: targets[0].code for code, targets in vm.rows.items()}
    expected = {**IG[name], **LOCAL.get(name, {})}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert {k: got.get(k) for k in expected} == expected
    assert extra == {}, f"rows neither in the IG nor declared as local deviations: {extra}"


def test_0202_cp_is_a_mobile_phone() -> None:
    """The IG's multi-target row: CP sets ContactPoint.system = phone and use = mobile."""
    targets = load_vocab(VOCAB, "v2-0202.contact-point-system").lookup("CP")
    assert {(t.system.rsplit("/", 1)[-1], t.code) for t in targets} == {("contact-point-system", "phone"),
                                                                         ("contact-point-use", "mobile")}


def test_0078_is_the_identity_into_v3_interpretation() -> None:
    vm = load_vocab(VOCAB, "v2-0078.observation-interpretation")
    assert all(t[0].code == code and t[0].system.endswith("v3-ObservationInterpretation")
               for code, t in vm.rows.items())
    assert {"H", "L", "N", "A", "HH", "LL"} <= set(vm.rows)


def test_0004_class_uses_v3_act_codes() -> None:
    vm = load_vocab(VOCAB, "v2-0004.encounter-class")
    assert {c: vm.lookup(c)[0].code for c in ("E", "I", "O", "P")} == {"E": "EMER", "I": "IMP", "O": "AMB",
                                                                       "P": "PRENC"}


def test_0006_religion_only_where_the_ig_gives_a_target() -> None:
    """IG Religion (HL7 Concept Map_ Religion): 58 v2-0006 codes into v3-ReligiousAffiliation; the 37 the IG
    leaves without a target (C, BUD, AME, JEW, MOT, OTH, VAR …) are not rows, so they stay CODE_UNMAPPED."""
    vm = load_vocab(VOCAB, "v2-0006.religion")
    assert len(vm.rows) == 58
    assert all(t[0].system.endswith("v3-ReligiousAffiliation") for t in vm.rows.values())
    assert {c: vm.lookup(c)[0].code for c in ("MOS", "MSU", "CAT", "A", "ATH")} == {
        "MOS": "1023", "MSU": "1049", "CAT": "1041", "A": "1007", "ATH": "1007"}
    assert not any(vm.lookup(c) for c in ("C", "BUD", "AME", "JEW", "MOT", "OTH", "VAR"))
