"""The `siu` mapping (SIU S12–S17, S26 → Appointment), issue 25: identity across triggers, status from SCH-25
(IG FillerStatusCodes[Appointment]) else from the trigger, timing from SCH-11 (IG TQ[Appointment]) else TQ1,
minutesDuration only in minutes (IG SCH-9 row)."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from engine.errors import MappingError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import CORPUS, ROOT

FIXTURES = ROOT / "mappings/siu/fixtures"
S12 = (FIXTURES / "ma-siu-s12-consultation.hl7").read_bytes()


def _appointment(converter: Converter, raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result = converter.convert("siu", parse(decode(raw)), NOW)
    entry = next(e for e in orjson.loads(result.bundle)["entry"] if e["resource"]["resourceType"] == "Appointment")
    return entry, result.warnings


def _edit(raw: bytes, segment: str, field: int, value: str) -> bytes:
    """`raw` with field `field` of its first `segment` set to `value` (padded with empty fields)."""
    out = []
    for line in raw.decode().split("\r"):
        if line.startswith(segment + "|"):
            parts = line.split("|")
            parts += [""] * (field + 1 - len(parts))
            parts[field] = value
            line = "|".join(parts).rstrip("|")
        out.append(line)
    return "\r".join(out).encode()


def _trigger(raw: bytes, trigger: str) -> bytes:
    return raw.replace(b"SIU^S12^SIU_S12", f"SIU^{trigger}^SIU_S12".encode())


def test_the_cancel_rewrites_the_booking(converter: Converter) -> None:
    """The Appointment's id is keyed on SCH-1 (else SCH-2): the S15 PUTs the Appointment the S12 made."""
    booked, _ = _appointment(converter, S12)
    cancelled, _ = _appointment(converter, (FIXTURES / "ma-siu-s15-annulation.hl7").read_bytes())
    assert booked["request"] == cancelled["request"] == {"method": "PUT", "url": booked["request"]["url"]}
    assert (booked["resource"]["status"], cancelled["resource"]["status"]) == ("booked", "cancelled")


def test_the_filler_id_keys_it_when_the_placer_id_is_absent(converter: Converter) -> None:
    by_placer, _ = _appointment(converter, S12)
    by_filler, _ = _appointment(converter, _edit(S12, "SCH", 1, ""))
    again, _ = _appointment(converter, _edit(_edit(S12, "SCH", 1, ""), "MSH", 9, "OTHER-CONTROL-ID"))
    assert by_filler["request"]["url"] != by_placer["request"]["url"]
    assert by_filler["request"]["url"] == again["request"]["url"]


@pytest.mark.parametrize(("trigger", "status"), [
    ("S12", "booked"), ("S13", "booked"), ("S14", "booked"), ("S15", "cancelled"), ("S16", "cancelled"),
    ("S17", "entered-in-error"), ("S26", "noshow")])
def test_without_sch25_the_trigger_gives_the_status(converter: Converter, trigger: str, status: str) -> None:
    """No IG row: status is 1..1, so an SCH without SCH-25 takes the trigger's meaning (v2-0003.appointment-status)."""
    entry, _ = _appointment(converter, _trigger(_edit(S12, "SCH", 25, ""), trigger))
    assert entry["resource"]["status"] == status


@pytest.mark.parametrize(("code", "status"), [
    ("Pending", "pending"), ("Waitlist", "waitlist"), ("Booked", "booked"), ("Started", "checked-in"),
    ("Complete", "fulfilled"), ("Cancelled", "cancelled"), ("Deleted", "entered-in-error"), ("Noshow", "noshow")])
def test_sch25_wins_over_the_trigger(converter: Converter, code: str, status: str) -> None:
    """IG FillerStatusCodes[Appointment], row by row (an S14 sent with each filler status)."""
    entry, _ = _appointment(converter, _trigger(_edit(S12, "SCH", 25, f"{code}^{code}^HL70278"), "S14"))
    assert entry["resource"]["status"] == status


def test_a_filler_status_without_ig_target_falls_to_the_trigger(converter: Converter) -> None:
    """IG: Discontinued (Dc), Blocked, Overbook have no target: CODE_UNMAPPED, then the trigger (S16 → cancelled)."""
    entry, warnings = _appointment(converter, _trigger(_edit(S12, "SCH", 25, "Dc"), "S16"))
    assert entry["resource"]["status"] == "cancelled"
    assert any(w["code"] == "CODE_UNMAPPED" and w["field"] == "SCH-25" for w in warnings)


def test_timing_from_tq1_only_when_sch11_gives_none(converter: Converter) -> None:
    """IG TQ[Appointment]: TQ.4 → start, TQ.5 → end; TQ1-7/TQ1-8 (no IG row) only as a fallback."""
    tq1 = b"\rTQ1|1||||||20261216110000+0100|20261216113000+0100\rNTE|"
    entry, _ = _appointment(converter, _edit(S12, "SCH", 11, "").replace(b"\rNTE|", tq1, 1))
    assert (entry["resource"]["start"], entry["resource"]["end"]) == ("2026-12-16T11:00:00+01:00",
                                                                    "2026-12-16T11:30:00+01:00")
    entry, _ = _appointment(converter, S12)
    assert (entry["resource"]["start"], entry["resource"]["end"]) == ("2026-12-15T09:30:00+01:00",
                                                                    "2026-12-15T10:00:00+01:00")


def test_minutes_duration_only_in_minutes(converter: Converter) -> None:
    """IG SCH-9 → minutesDuration "If SCH-10 indicates units of minutes"."""
    entry, _ = _appointment(converter, S12)
    assert entry["resource"]["minutesDuration"] == 30
    entry, _ = _appointment(converter, _edit(S12, "SCH", 10, "s^seconds^ISO"))
    assert "minutesDuration" not in entry["resource"]


@pytest.mark.skipif(not CORPUS.exists() and not os.environ.get("CI"), reason="../shared/corpus is absent")
@pytest.mark.parametrize(("name", "status"), [
    ("SIU-S12-02.hl7", "booked"), ("SIU-S13-01.hl7", "booked"), ("SIU-S14-02.hl7", "booked"),
    ("SIU-S15-01.hl7", "cancelled"), ("SIU-S16-02.hl7", "cancelled"), ("SIU-S17-01.hl7", "entered-in-error"),
    ("SIU-S26-01.hl7", "noshow")])
def test_corpus_statuses(converter: Converter, name: str, status: str) -> None:
    raw = (CORPUS / name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    entry, _ = _appointment(converter, raw)
    resource = entry["resource"]
    assert resource["status"] == status
    assert all(p["status"] for p in resource["participant"])  # 1..1 in R4, whatever AIL/AIP-12 say


def _resources(converter: Converter, mapping: str, raw: bytes) -> list[dict[str, Any]]:
    return list(orjson.loads(converter.convert(mapping, parse(decode(raw)), NOW).bundle)["entry"])


def test_sch26_names_the_order_without_rewriting_it(converter: Converter) -> None:
    """IG SIU_S12: IF SCH-26 or SCH-27 VALUED → ServiceRequest (SCH[ServiceRequest]: identifier, intent order,
    status active, subject the Patient) and Appointment.basedOn to it; none without them. Conditional create
    on the PLAC identifier the orders mapping writes from ORC-2: an ORM's ServiceRequest is never replaced."""
    assert not [e for e in _resources(converter, "siu", S12) if e["resource"]["resourceType"] == "ServiceRequest"]
    entries = _resources(converter, "siu", _edit(S12, "SCH", 26, "1101^GHHPlacer"))
    (sr,) = [e for e in entries if e["resource"]["resourceType"] == "ServiceRequest"]
    appointment = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Appointment")
    assert appointment["basedOn"] == [{"reference": sr["fullUrl"]}]
    assert (sr["resource"]["status"], sr["resource"]["intent"]) == ("active", "order")
    assert sr["request"]["method"] == "POST"
    orm = _resources(converter, "orders", (ROOT / "mappings/orders/fixtures/ORM-O01-01.hl7").read_bytes())
    ordered = next(e for e in orm if e["resource"]["resourceType"] == "ServiceRequest")
    placer = next(i for i in ordered["resource"]["identifier"] if i["type"]["coding"][0]["code"] == "PLAC")
    assert sr["request"]["ifNoneExist"] == f"identifier={placer['system']}|{placer['value']}"


@pytest.mark.parametrize(("trigger", "fails"), [("S12", True), ("S26", True), ("S15", False)])
def test_an_appointment_without_timing_is_refused_unless_cancelled(converter: Converter, trigger: str,
                                                                   fails: bool) -> None:
    """No SCH-11.4/.5 and no TQ1: a booked (or no-show) Appointment would break FHIR R4 app-3, so the message
    fails at the gate with the invariant named (replayable); a cancellation without timing is valid FHIR."""
    raw = _trigger(_edit(_edit(S12, "SCH", 11, ""), "SCH", 25, ""), trigger)
    assert b"\rTQ1|" not in raw
    if fails:
        with pytest.raises(MappingError, match="Appointment breaks invariant app-3"):
            _appointment(converter, raw)
    else:
        entry, _ = _appointment(converter, raw)
        assert entry["resource"]["status"] == "cancelled" and "start" not in entry["resource"]
