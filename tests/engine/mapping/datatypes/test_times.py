"""engine/mapping/datatypes/times.py: NM.endAfter, a period's end from its start and a duration (IG AIL-9, AIP-9,
AIG-11 → participant.period.end = start + duration), read through the siu mapping."""

from __future__ import annotations

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT

S12 = (ROOT / "mappings/siu/fixtures/ma-siu-s12-consultation.hl7").read_bytes().decode()


def _location(converter: Converter, ail_6_to_10: str) -> tuple[dict[str, str], list[str]]:
    """The AIL participant's period, with AIL-6 … AIL-10 replaced."""
    lines = S12.split("\r")
    i = next(k for k, line in enumerate(lines) if line.startswith("AIL|"))
    fields = lines[i].split("|")[:6]
    lines[i] = "|".join(fields + ail_6_to_10.split("|"))
    result = converter.convert("siu", parse(decode("\r".join(lines).encode())), NOW)
    appointment = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
                       if e["resource"]["resourceType"] == "Appointment")
    (period,) = [p["period"] for p in appointment["participant"] if "period" in p and "actor" in p
                 and p["actor"]["reference"] in {e["fullUrl"] for e in orjson.loads(result.bundle)["entry"]
                                                 if e["resource"]["resourceType"] == "Location"}]
    return period, [w["code"] for w in result.warnings]


@pytest.mark.parametrize(("fields", "end"), [
    ("20261215093000+0100|||45|min^Minutes^ISO", "2026-12-15T10:15:00+01:00"),
    ("20261215093000+0100|||45", "2026-12-15T10:15:00+01:00"),               # no unit: minutes
    ("20261215233000+0100|||2|h^Hours^ISO", "2026-12-16T01:30:00+01:00"),     # across midnight
    ("20261215093000+0100|||90|s", "2026-12-15T09:31:30+01:00"),
    ("202612150930|||30|min", "2026-12-15T10:00:00+01:00"),                    # the message's zone
])
def test_end_is_start_plus_duration(converter: Converter, fields: str, end: str) -> None:
    period, _ = _location(converter, fields)
    assert period["end"] == end


def test_no_end_from_a_date_alone_or_an_unknown_unit(converter: Converter) -> None:
    period, _ = _location(converter, "20261215|||30|min")
    assert "end" not in period
    period, warnings = _location(converter, "20261215093000+0100|||30|mL^milliliter^UCUM")
    assert "end" not in period and "VALUE_INVALID" in warnings
