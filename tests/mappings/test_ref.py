"""The `ref` mapping (REF^I12, REF^I14 → ServiceRequest): the rules of MS FHIR-Converter's REF templates
(Resource/_ServiceRequest.liquid, RF1 and PRD branches) the fixtures do not show on their own (issue 25)."""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only, resources
from tests.mappings.conftest import NOW


def _msg(trigger: str, rf1: str, *extra: str) -> str:
    return "\r".join([
        f"MSH|^~\\&|SIS-CS|CSU-A^^L|WASLA|CHU-B|20261120093000+0100||REF^{trigger}^REF_I12|C1|P|2.8",
        rf1,
        "PRD|RP^Referring Provider^HL70286|Alaoui^Samira|||||MG-1^INPE",
        "PRD|RT^Referred to Provider^HL70286|Berrada^Samir|||||CH-2^INPE",
        "PRD|PP^Primary Care Provider^HL70286|Tazi^Omar|||||MG-3^INPE",
        "PID|1||IPP-1^^^CSU-A^PI||Bennani^Khadija",
        *extra,
    ]) + "\r"


def _convert(converter: Converter, text: str) -> dict[str, Any]:
    bundle: dict[str, Any] = orjson.loads(converter.convert("ref", parse(decode(text.encode())), NOW).bundle)
    return bundle


def _by_url(bundle: dict[str, Any], url: str) -> dict[str, Any]:
    (res,) = [e["resource"] for e in bundle["entry"] if e["fullUrl"] == url]
    return res


def test_requester_is_the_rp_provider_and_performer_the_rt(converter: Converter) -> None:
    """MS SR: PRD-1 RP → requester, RT → performer; another role is made but not referenced."""
    b = _convert(converter, _msg("I12", "RF1|A^Accepted^HL70283||||||||||||||||||||||||"))
    sr = only(b, "ServiceRequest")
    assert _by_url(b, sr["requester"]["reference"])["name"][0]["family"] == "Alaoui"
    assert [_by_url(b, p["reference"])["name"][0]["family"] for p in sr["performer"]] == ["Berrada"]
    assert sorted(p["name"][0]["family"] for p in resources(b, "Practitioner")) == ["Alaoui", "Berrada", "Tazi"]
    assert sr["status"] == "active"


def test_status_by_trigger_and_rf1(converter: Converter) -> None:
    """MS SR: I12 RF1-1 through RequestStatus (R → revoked), RF1-1 empty → active, RF1-25 D → entered-in-error;
    I14 RF1-1 R → revoked, otherwise entered-in-error; an unknown RF1-1 → unknown (status is 1..1)."""
    cases = [("I12", "R", "", "revoked"), ("I12", "", "", "active"), ("I12", "A", "D", "entered-in-error"),
             ("I12", "Z", "", "unknown"), ("I14", "R", "", "revoked"), ("I14", "A", "", "entered-in-error")]
    for trigger, status, action, expected in cases:
        rf1 = f"RF1|{status}||||||||||||||||||||||||{action}"
        assert only(_convert(converter, _msg(trigger, rf1)), "ServiceRequest")["status"] == expected, (trigger, status)


def test_the_cancel_rewrites_the_referral(converter: Converter) -> None:
    """An I14 of the same RF1-6 is the same ServiceRequest (PUT on one id)."""
    rf1 = "RF1|P||||||REF-9^CSU-A|20261120"
    a = only(_convert(converter, _msg("I12", rf1)), "ServiceRequest")
    c = only(_convert(converter, _msg("I14", rf1)), "ServiceRequest")
    assert a["id"] == c["id"] and (a["status"], c["status"]) == ("on-hold", "entered-in-error")


def test_diagnoses_are_the_reasons_and_procedures_are_made(converter: Converter) -> None:
    """DG1 → Condition (IG DG1[Condition]), the ServiceRequest's reasonReference; PR1 → Procedure (PR1[Procedure])."""
    b = _convert(converter, _msg("I12", "RF1|A||||||REF-9^CSU-A", "DG1|1||I50.9^Insuffisance cardiaque^I10",
                                 "PR1|1||76164006^Biopsy of colon^SCT||20261101"))
    cond, proc, sr = only(b, "Condition"), only(b, "Procedure"), only(b, "ServiceRequest")
    assert cond["code"]["coding"][0]["code"] == "I50.9" and proc["code"]["coding"][0]["code"] == "76164006"
    assert _by_url(b, sr["reasonReference"][0]["reference"]) == cond
