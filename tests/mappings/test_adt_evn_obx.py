"""ADT OBX → Observation (IG ADT_A01 OBSERVATION.OBX, OBX[Observation]) and EVN → Provenance (IG EVN[Provenance]),
issue 22."""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW

MSH = "MSH|^~\\&|HIS|CLINIQUE-TEST|WASLA|MS|20261120090000||ADT^A01^ADT_A01|T-EVN-1|P|2.5"
EVN = ("EVN|A01|20261120090500|20261120100000|01^Patient request^HL70062|OP-77^TEST^Operateur^^^^^^CLINIQUE-TEST"
       "|20261120085500")
PID = "PID|1||IPP-1^^^CLINIQUE-TEST^PI||TEST^Evn||19700101|M"
PV1 = "PV1|1|I|MED^12^1^CLINIQUE-TEST||||||||||||||||V-1^^^CLINIQUE-TEST^VN"
OBX = "OBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|60-100|N|||F|||20261120084500"


def _resources(converter: Converter, *segments: str) -> list[dict[str, Any]]:
    raw = "\r".join(segments).encode()
    bundle = orjson.loads(converter.convert("adt", parse(decode(raw)), NOW).bundle)
    return [e["resource"] for e in bundle["entry"]]


def _full_urls(converter: Converter, *segments: str) -> dict[str, dict[str, Any]]:
    raw = "\r".join(segments).encode()
    bundle = orjson.loads(converter.convert("adt", parse(decode(raw)), NOW).bundle)
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def test_obx_observation_subject_and_encounter(converter: Converter) -> None:
    by_url = _full_urls(converter, MSH, EVN, PID, PV1, OBX)
    obs = [r for r in by_url.values() if r["resourceType"] == "Observation"]
    assert len(obs) == 1
    assert obs[0]["code"]["coding"][0]["code"] == "8867-4"
    assert obs[0]["valueQuantity"]["value"] == 72
    assert obs[0]["status"] == "final"
    assert by_url[obs[0]["subject"]["reference"]]["resourceType"] == "Patient"
    assert by_url[obs[0]["encounter"]["reference"]]["resourceType"] == "Encounter"
    assert "category" not in obs[0]  # the IG ADT_A01 map gives no category


def test_obx_without_pv1_has_no_encounter(converter: Converter) -> None:
    obs = [r for r in _resources(converter, MSH, EVN, PID, OBX) if r["resourceType"] == "Observation"]
    assert len(obs) == 1
    assert "encounter" not in obs[0]


def test_evn_is_the_event_provenance(converter: Converter) -> None:
    """IG EVN[Provenance]: EVN-2 → recorded, EVN-4 → reason, EVN-5 → agent.who, EVN-6 → occurredDateTime; the
    target is the Patient and the Encounter (the IG's MessageHeader is not built)."""
    by_url = _full_urls(converter, MSH, EVN, PID, PV1, OBX)
    event = next(r for r in by_url.values() if r["resourceType"] == "Provenance" and "activity" not in r)
    kinds = sorted(by_url[t["reference"]]["resourceType"] for t in event["target"])
    assert kinds == ["Encounter", "Patient"]
    assert event["recorded"] == "2026-11-20T09:05:00+01:00"
    assert event["occurredDateTime"] == "2026-11-20T08:55:00+01:00"
    assert event["reason"][0]["coding"][0]["code"] == "01"
    assert by_url[event["agent"][0]["who"]["reference"]]["resourceType"] == "Practitioner"


def test_a_time_to_the_minute_is_still_an_instant(converter: Converter) -> None:
    """EVN-2 and MSH-7 to the minute: recorded gets :00 seconds, never left out (Provenance.recorded is 1..1)."""
    msh = MSH.replace("20261120090000", "202611200900")
    resources = _resources(converter, msh, "EVN|A01|202611200905", PID, PV1)
    event = next(r for r in resources if r["resourceType"] == "Provenance" and "activity" not in r)
    assert event["recorded"] == "2026-11-20T09:05:00+01:00"
