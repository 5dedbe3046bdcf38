"""Segment grouping by the message's reference structure (engine/hl7v2/groups.py)."""

from __future__ import annotations

from engine.hl7v2 import parse
from engine.hl7v2.groups import structure_name


def _msg(*segments: str, msh9: str = "ORU^R01^ORU_R01", version: str = "2.5.1") -> str:
    return "\r".join([f"MSH|^~\\&|LIS|LAB|||20261120||{msh9}|1|P|{version}", *segments])


def _groups(text: str, name: str) -> list[list[str]]:
    msg = parse(text)
    tree = msg.tree
    return [[tree.names[i] for i in range(g.start, g.end)] for g in tree.by_name.get(name, [])]


def test_each_obx_stays_with_its_obr_across_a_z_segment() -> None:
    text = _msg("PID|1||1", "OBR|1||A|X", "OBX|1|NM|a||1", "ZLB|1|x", "OBX|2|NM|b||2", "NTE|1||n",
                "OBR|2||B|Y", "OBX|1|NM|c||3")
    assert _groups(text, "ORDER_OBSERVATION") == [["OBR", "OBX", "ZLB", "OBX", "NTE"], ["OBR", "OBX"]]
    assert _groups(text, "OBSERVATION") == [["OBX", "ZLB"], ["OBX", "NTE"], ["OBX"]]


def test_z_segment_is_kept_in_the_innermost_group() -> None:
    msg = parse(_msg("PID|1||1", "ZPI|1|x", "OBR|1||A|X", "OBX|1|NM|a||1"))
    tree = msg.tree
    z = tree.names.index("ZPI")
    assert tree.of_segment[z].name == "PATIENT"
    assert sum(len(g.segments) for g in _all(tree.root)) == len(msg.segments)


def test_unexpected_segment_is_kept_not_dropped() -> None:
    msg = parse(_msg("PID|1||1", "OBR|1||A|X", "OBX|1|NM|a||1", "AL1|1|DA|x"))
    tree = msg.tree
    assert tree.of_segment[tree.names.index("AL1")].name == "OBSERVATION"


def test_nearest_reads_own_group_then_enclosing() -> None:
    msg = parse(_msg("PID|1||1", "OBR|1||A|X", "OBX|1|NM|a||1", "OBR|2||B|Y", "OBX|1|NM|b||2"))
    tree = msg.tree
    second_obs = tree.by_name["OBSERVATION"][1]
    assert msg.segments[tree.nearest("OBR", second_obs)].field(3).text == "B"  # type: ignore[index]
    assert tree.nearest("PID", second_obs) == 1


def test_event_structure_from_table_0354_when_msh_9_3_is_absent() -> None:
    assert structure_name("ADT", "A04", "") == "ADT_A01"
    assert structure_name("ADT", "A40", "") == "ADT_A39"
    assert structure_name("ADT", "A04", "ADT_A01") == "ADT_A01"
    msg = parse(_msg("EVN|A04", "PID|1||1", "PV1|1|O", msh9="ADT^A04", version="2.3"))
    assert msg.tree.structure == "ADT_A01"


def test_unknown_structure_groups_flat_and_keeps_everything() -> None:
    msg = parse(_msg("PID|1||1", "ZZZ|1", msh9="XYZ^Q99"))
    assert msg.tree.structure == "" and msg.tree.root.segments == [0, 1, 2]


def _all(g):  # type: ignore[no-untyped-def]
    yield g
    for c in g.children:
        yield from _all(c)


def test_a17_swap_makes_one_patient_group_per_pid_pv1_pair() -> None:
    """hl7apy lays ADT_A17 out flat; each PID opens its own PATIENT group (issue 25), so each PV1 sees its PID."""
    text = _msg("EVN|A17", "PID|1||1", "PV1|1|I", "PID|2||2", "PD1|", "PV1|1|I", "OBX|1|NM|a||1",
                msh9="ADT^A17^ADT_A17", version="2.5")
    assert _groups(text, "PATIENT") == [["PID", "PV1"], ["PID", "PD1", "PV1", "OBX"]]
    assert parse(text).tree.by_name["PATIENT"][0].repeats


def test_a47_identifier_changes_are_one_group_each() -> None:
    text = _msg("EVN|A47", "PID|1||1", "MRG|9", "PID|2||2", "MRG|8", msh9="ADT^A47", version="2.5")
    assert parse(text).tree.structure == "ADT_A30"
    assert _groups(text, "PATIENT") == [["PID", "MRG"], ["PID", "MRG"]]


def test_a24_link_makes_one_patient_group_per_record() -> None:
    """hl7apy lays ADT_A24 (and ADT_A37) out flat; each PID opens its own PATIENT group, so a PV1 sees one patient."""
    for msh9 in ("ADT^A24^ADT_A24", "ADT^A37^ADT_A37"):
        text = _msg("EVN|A24", "PID|1||1", "PD1|", "PV1|1|O", "PID|2||2", msh9=msh9, version="2.5")
        assert _groups(text, "PATIENT") == [["PID", "PD1", "PV1"], ["PID"]]


def test_v251_supplementary_groups_take_the_standards_names() -> None:
    """hl7apy's v2.5.1 OUL_R22 calls RESULT `OBXTCDSIDNTE_SUPPGRP` (issue 25): a 2.5.1 lab automation message
    groups as a 2.5 or 2.8 one does, each result in its own RESULT under its ORDER under its SPECIMEN."""
    text = _msg("PID|1||1", "SPM|1|S1", "OBX|1|CWE|HEMOL||N", "SAC|||C1", "OBR|1|A||X", "ORC|SC|A",
                "OBX|1|NM|a||1", "NTE|1||n", "SPM|2|S2", "OBR|1|B||Y", "OBX|1|NM|b||2", msh9="OUL^R22^OUL_R22")
    assert _groups(text, "SPECIMEN") == [["SPM", "OBX", "SAC", "OBR", "ORC", "OBX", "NTE"], ["SPM", "OBR", "OBX"]]
    assert _groups(text, "RESULT") == [["OBX", "NTE"], ["OBX"]]
    assert not [n for n in parse(text).tree.by_name if "SUPPGRP" in n]


def test_v251_oul_r24_specimen_and_patient_groups_are_named() -> None:
    text = _msg("PID|1||1", "PV1|1|O", "OBR|1|A||X", "SPM|1|S1", "SAC|||C1", "OBX|1|NM|a||1",
                msh9="OUL^R24^OUL_R24")
    tree = parse(text).tree
    assert _groups(text, "PATIENT") == [["PID"]] and _groups(text, "VISIT") == [["PV1"]]
    assert _groups(text, "SPECIMEN") == [["SPM", "SAC"]] and _groups(text, "RESULT") == [["OBX"]]
    assert tree.of_segment[tree.names.index("SAC")].name == "CONTAINER"


def test_v251_mdm_observation_group_is_named() -> None:
    """MDM_T02 v2.5.1: hl7apy's `OBXNTE_SUPPGRP` is the standard's OBSERVATION (mdm's each_segment: OBSERVATION/OBX)."""
    text = _msg("EVN|T02", "PID|1||1", "PV1|1|O", "TXA|1|CN", "OBX|1|TX|x||a", "OBX|2|TX|x||b",
                msh9="MDM^T02^MDM_T02")
    assert _groups(text, "OBSERVATION") == [["OBX"], ["OBX"]]


def test_a_second_orc_is_a_new_order_not_a_prior_result() -> None:
    """OMG_O19/OML_O21: PRIOR_RESULT may begin with ORC, so greedily a second order's ORC became the first one's
    prior result (issue 25). Only PID/PV1 open PRIOR_RESULT; inside it, ORC opens ORDER_PRIOR as the standard says."""
    text = _msg("PID|1||1", "ORC|NW|A", "OBR|1|A||X", "SPM|1|S1", "ORC|NW|B", "OBR|1|B||Y", "OBX|1|NM|a||1",
                "PV1|1|O", "ORC|RE|P", "OBR|1|P||Z", "OBX|1|NM|p||9", msh9="OMG^O19^OMG_O19", version="2.8")
    assert _groups(text, "ORDER") == [["ORC", "OBR", "SPM"],
                                      ["ORC", "OBR", "OBX", "PV1", "ORC", "OBR", "OBX"]]
    assert _groups(text, "PRIOR_RESULT") == [["PV1", "ORC", "OBR", "OBX"]]
    assert _groups(text, "OBSERVATION_PRIOR") == [["OBX"]]


def test_oul_v28_result_right_after_orc_is_a_result_not_a_document() -> None:
    """OUL_R22 v2.7+: COMMON_ORDER.ORDER_DOCUMENT is OBX [PRT] TXA. Greedily the order's first result OBX, right after
    ORC, became a document and was lost (issue 25); it opens ORDER_DOCUMENT only when its TXA follows."""
    text = _msg("PID|1||1", "SPM|1|S1", "OBR|1|A||X", "ORC|SC|A", "OBX|1|NM|a||1", "OBX|2|NM|b||2",
                "OBR|2|B||Y", "ORC|SC|B", "OBX|1|ED|doc||x", "PRT|1", "TXA|1|CN", "OBX|1|NM|c||3",
                msh9="OUL^R22^OUL_R22", version="2.8")
    assert _groups(text, "RESULT") == [["OBX"], ["OBX"], ["OBX"]]
    assert _groups(text, "ORDER_DOCUMENT") == [["OBX", "PRT", "TXA"]]
