"""The last gate: nothing empty, no HL7 null, no required element missing leaves the mapping (issue 22)."""

from __future__ import annotations

import orjson
import pytest

from engine.errors import MappingError
from engine.hl7v2 import parse
from engine.mapping import Converter
from engine.mapping.gate import check_bundle
from tests.engine.mapping.conftest import NOW


def _bundle(*resources: dict) -> dict:  # type: ignore[type-arg]
    return {"resourceType": "Bundle", "id": "b", "type": "transaction", "timestamp": "2026-12-01T10:00:00Z",
            "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r, "request": {"method": "POST", "url": "x"}}
                      for i, r in enumerate(resources)]}


OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"}}


def test_a_valid_resource_passes() -> None:
    check_bundle(_bundle(OBS, {"resourceType": "Patient"}))


@pytest.mark.parametrize(("resource", "path"), [
    ({**OBS, "valueString": ""}, "Observation.valueString"),
    ({**OBS, "valueString": '""'}, "Observation.valueString"),
    ({**OBS, "identifier": [{"value": ""}]}, "Observation.identifier[0].value"),
    ({**OBS, "note": []}, "Observation.note"),
    ({**OBS, "code": {}}, "Observation.code"),
    ({"resourceType": "Observation", "status": "final"}, "Observation.code"),
    ({"resourceType": "ServiceRequest", "status": "active", "intent": "order"}, "ServiceRequest.subject"),
    ({"resourceType": "Provenance", "recorded": "2026-12-01T10:00:00Z", "agent": [{"who": {"display": "w"}}]},
     "Provenance.target"),
    ({**OBS, "component": [{"valueString": "x"}]}, "Observation.component[0].code"),
    ({"resourceType": "Patient", "extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
])
def test_the_gate_names_the_element(resource: dict, path: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(MappingError) as err:
        check_bundle(_bundle({"resourceType": "Patient"}, resource))
    assert err.value.field == path
    assert "entry 2" in str(err.value)


MSH = "MSH|^~\\&|LABA|CLINIQUE-A|HIS|CHU|20261201101010+0100||{type}|{ctl}|P|2.5.1"


def test_an_empty_control_id_gives_no_empty_identifier(converter: Converter) -> None:
    text = "\r".join([MSH.format(type="ADT^A01^ADT_A01", ctl=""), "PID|1||1234^^^CLINIQUE-A^PI||DOE^J",
                      "PV1|1|I"])
    a = orjson.loads(converter.convert("adt", parse(text), NOW).bundle)
    assert "identifier" not in a
    prov = next(e["resource"] for e in a["entry"] if e["resource"]["resourceType"] == "Provenance")
    assert "identifier" not in prov["entity"][0]["what"] and prov["target"]
    other = text.replace("DOE^J", "DOE^K")
    b = orjson.loads(converter.convert("adt", parse(other), NOW).bundle)
    assert a["id"] != b["id"], "two messages without MSH-10 never share a Bundle id"
    null_id = text.replace("ADT_A01||P", 'ADT_A01|""|P')  # MSH-10 sent as the HL7 null
    assert 'ADT_A01|""|P' in null_id
    c = orjson.loads(converter.convert("adt", parse(null_id), NOW).bundle)
    assert "identifier" not in c and c["id"] != a["id"] and '""' not in orjson.dumps(c).decode()


@pytest.mark.parametrize(("mapping", "mtype"), [("adt", "ADT^A01^ADT_A01"), ("oru_r01", "ORU^R01^ORU_R01"),
                                                 ("orders", "ORM^O01^ORM_O01")])
def test_a_message_with_nothing_but_msh_fails_with_a_reason(converter: Converter, mapping: str, mtype: str) -> None:
    with pytest.raises(MappingError, match="nothing to convert"):
        converter.convert(mapping, parse(MSH.format(type=mtype, ctl="C1")), NOW)


def test_an_order_without_patient_fails_naming_the_missing_subject(converter: Converter) -> None:
    text = "\r".join([MSH.format(type="ORM^O01^ORM_O01", ctl="C1"), "ORC|NW|1000|||||||20261201",
                      "OBR|1|1000||GLU^Glucose^L"])
    with pytest.raises(MappingError) as err:
        converter.convert("orders", parse(text), NOW)
    assert err.value.field == "ServiceRequest.subject"


@pytest.mark.parametrize(("resource", "path"), [
    ({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
      "location": [{"status": "active"}]}, "Encounter.location[0].location"),
    ({**OBS, "component": [{"code": {"text": "a"}}, {"valueString": "x"}]}, "Observation.component[1].code"),
    ({"resourceType": "Patient", "extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
])
def test_the_per_message_gate_sees_a_required_element_missing_one_level_down(resource: dict, path: str) -> None:  # type: ignore[type-arg]
    """The property test found a ZBE movement without PV1-3 giving Encounter.location[] without its location:
    the per-message check (not only the fixtures' full walk) must stop it, naming the element."""
    from engine.mapping.gate import check_serialized

    bundle = _bundle(resource)
    with pytest.raises(MappingError) as exc:
        check_serialized(bundle, orjson.dumps(bundle))
    assert exc.value.field == path


def test_a_movement_without_a_location_writes_no_location_entry(converter: Converter) -> None:
    """ZBE (IHE PAM FR) with PV1-3 empty: nothing to place on Encounter.location (location is 1..1 there)."""
    msg = parse("MSH|^~\\&|HIS|CHU-IBN-SINA|WASLA|DEST|20261201101010||ADT^A01^ADT_A01|C1|P|2.5\r"
                "PID|1||X5^^^CHU^PI||BENNANI^A\rPV1|1|I||||||||||||||||V1^^^CHU^VN\r"
                "ZBE|M1^CHU-IBN-SINA|20261201101010||INSERT|N||UF^^^^^^UF^^^4001")
    bundle = orjson.loads(converter.convert("adt", msg, NOW).bundle)
    (enc,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    assert "location" not in enc


APPOINTMENT = {"resourceType": "Appointment", "participant": [{"status": "accepted", "actor": {"display": "x"}}]}


@pytest.mark.parametrize(("status", "timed", "ok"), [
    ("booked", False, False), ("noshow", False, False), ("booked", True, True),
    ("proposed", False, True), ("cancelled", False, True), ("waitlist", False, True),
])
def test_appointment_app3(status: str, timed: bool, ok: bool) -> None:
    """FHIR R4 app-3: start and end, unless proposed, cancelled or waitlist; the sender's data can break it."""
    resource = {**APPOINTMENT, "status": status}
    if timed:
        resource |= {"start": "2026-12-15T09:30:00+01:00", "end": "2026-12-15T10:00:00+01:00"}
    bundle = _bundle(OBS, resource)
    if ok:
        check_bundle(bundle)
        return
    with pytest.raises(MappingError, match=r"Appointment breaks invariant app-3: .* \(entry 2\)"):
        check_bundle(bundle)
