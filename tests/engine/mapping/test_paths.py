"""A resource's `following:` segments (engine/mapping/paths.py): read after the segment the resource is made from."""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.engine.mapping.conftest import NOW

MSH = "MSH|^~\\&|PHARMA|CHU-IBN-SINA^^L|WASLA|DRS|20261120091500||RDS^O13^RDS_O13|T1|P|2.5.1"
PID = "PID|1||IPP-1^^^CHU-IBN-SINA^PI||Bennani^Samira"
ORC = "ORC|RE|P-1^CHU-IBN-SINA"


def _bundle(converter: Converter, *segments: str) -> list[dict[str, Any]]:
    text = "\r".join((MSH, PID, ORC, *segments)) + "\r"
    result = converter.convert("rds", parse(decode(text.encode())), NOW)
    return [e["resource"] for e in orjson.loads(result.bundle)["entry"]]


def _route(resource: dict[str, Any]) -> str:
    return str(resource["dosageInstruction"][0]["route"]["coding"][0]["code"])


class TestFollowing:
    def test_each_give_segment_reads_its_own_rxr(self, converter: Converter) -> None:
        """RXO, RXE and RXD each followed by an RXR: the request takes the RXE's, the dispense the RXD's."""
        res = _bundle(converter, "TQ1|1||BID", "RXO|AMOX^Amoxicilline^L", "RXR|IV^IV^HL70162",
                      "RXE||AMOX^Amoxicilline^L", "TQ1|1||TID", "RXR|PO^Oral^HL70162",
                      "RXD|1|AMOX^Amoxicilline^L|20261120", "RXR|NG^Nasogastric^HL70162")
        request = next(r for r in res if r["resourceType"] == "MedicationRequest")
        dispense = next(r for r in res if r["resourceType"] == "MedicationDispense")
        assert _route(request) == "PO"
        assert request["dosageInstruction"][0]["timing"]["code"]["coding"][0]["code"] == "TID"
        assert _route(dispense) == "NG"

    def test_without_its_own_the_group_s_first_is_read(self, converter: Converter) -> None:
        """An RXE with no TQ1 after it reads the order's TIMING TQ1 (before the RXO), as any path does."""
        res = _bundle(converter, "TQ1|1||BID", "RXO|AMOX^Amoxicilline^L", "RXE||AMOX^Amoxicilline^L",
                      "RXD|1|AMOX^Amoxicilline^L|20261120")
        request = next(r for r in res if r["resourceType"] == "MedicationRequest")
        assert request["dosageInstruction"][0]["timing"]["code"]["coding"][0]["code"] == "BID"

    def test_the_next_give_segment_stops_the_search(self, converter: Converter) -> None:
        """An RXD without its RXR does not take the next RXD's."""
        res = _bundle(converter, "RXE||AMOX^Amoxicilline^L", "RXD|1|AMOX^Amoxicilline^L|20261120",
                      "RXD|2|AMOX^Amoxicilline^L|20261121", "RXR|PO^Oral^HL70162")
        dispenses = [r for r in res if r["resourceType"] == "MedicationDispense"]
        assert "dosageInstruction" not in dispenses[0]
        assert _route(dispenses[1]) == "PO"
