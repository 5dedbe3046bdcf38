"""Building a Claim from a claim's resources: netting, pricing, the care team, diagnoses, references."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from engine.claims.build import ClaimOptions, build_claim, claim_id, keys_of
from engine.claims.tariff import Priced, Reason
from tests.engine.claims.claims_support import NABM, NGAP, charge, coverage, encounter, entry, patient, practitioner

OPTIONS = ClaimOptions("https://fhir.wasla.ma", "123456780", "public", "CNSS")
VALUES = {"C": Decimal("50"), "B": Decimal("0.90"), "Z": Decimal("9")}


class _Tariff:
    """A test pricer: written forms only, the values above; anything else is not priced."""

    def price(self, system: str, code: str, *, sector: str, on: date) -> Priced | Reason:
        letter, coef = code[0], Decimal(code[1:] or "1")
        if letter not in VALUES:
            return Reason("ACT_UNKNOWN", "", "not an act of the test tariff", "nomenclatures/ma-ngap/codes.csv")
        return Priced(system, code, "", letter, coef, VALUES[letter], (VALUES[letter] * coef).quantize(Decimal("0.01")))

    def insurer(self, code: str) -> str | None:
        return "Caisse nationale de sécurité sociale" if code == "CNSS" else None


def _base() -> list[dict[str, Any]]:
    return [patient(), encounter(), *coverage(), practitioner("111111118"), practitioner("222222226")]


def _build(*charges: dict[str, Any], version: int = 1, extra: tuple[dict[str, Any], ...] = ()) -> Any:
    return build_claim([*_base(), *extra, *charges], OPTIONS, _Tariff(), claim="c1", version=version,
                       created="2026-11-05T10:00:00Z")


def _items(built: Any) -> list[tuple[str, float, float]]:
    claim = built.bundle["entry"][0]["resource"]
    return [(i["productOrService"]["coding"][0]["code"], i["quantity"]["value"], i["net"]["value"])
            for i in claim.get("item", [])]


def test_a_credit_of_another_day_reverses_the_same_acts_latest_charge() -> None:
    """A credit of another day reverses the same acts latest charge."""
    built = _build(charge("1", NGAP, "C", "2026-11-03"), charge("2", NGAP, "C", "2026-11-04"),
                   charge("3", NGAP, "C", "2026-11-06", kind="CD"))
    assert _items(built) == [("C", 1.0, 50.0)]
    assert built.bundle["entry"][0]["resource"]["item"][0]["servicedDate"] == "2026-11-03"
    assert built.reasons == []


def test_a_credit_with_nothing_to_reverse_is_a_reason_not_a_silent_drop() -> None:
    """A credit with nothing to reverse is a reason not a silent drop."""
    built = _build(charge("1", NGAP, "C", "2026-11-03"), charge("2", NABM, "B120", "2026-11-03", kind="CD"))
    assert [r.code for r in built.reasons] == ["CREDIT_UNMATCHED"]
    assert _items(built) == [("C", 1.0, 50.0)]


def test_quantities_and_coefficients_multiply() -> None:
    """Quantities and coefficients multiply."""
    built = _build(charge("1", NABM, "B40", "2026-11-03", qty=3), charge("2", NGAP, "Z15", "2026-11-03"))
    assert _items(built) == [("B40", 3.0, 108.0), ("Z15", 1.0, 135.0)]  # 3 × 40 × 0.90; 15 × 9
    assert built.total == Decimal("243.00")


def test_an_unpriced_act_keeps_no_price_and_says_which_item() -> None:
    """An unpriced act keeps no price and says which item."""
    built = _build(charge("1", NGAP, "C", "2026-11-03"), charge("2", NGAP, "X9", "2026-11-04"))
    assert [(r.code, r.where) for r in built.reasons] == [("ACT_UNKNOWN", "item[1].productOrService")]
    assert "unitPrice" not in built.bundle["entry"][0]["resource"]["item"][1]


def test_the_claim_names_patient_provider_insurer_coverage_and_care_team() -> None:
    """The claim names patient provider insurer coverage and care team."""
    built = _build(charge("1", NGAP, "C", "2026-11-03"))
    bundle = built.bundle
    claim = bundle["entry"][0]["resource"]
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    assert urls[claim["provider"]["reference"]]["identifier"] == [
        {"system": "https://fhir.wasla.ma/sid/ma/inpe", "value": "123456780"}]
    assert urls[claim["insurer"]["reference"]]["identifier"][0]["value"] == "CNSS"
    assert urls[claim["insurance"][0]["coverage"]["reference"]]["resourceType"] == "Coverage"
    assert urls[claim["patient"]["reference"]]["resourceType"] == "Patient"
    team = {urls[t["provider"]["reference"]]["identifier"][0]["value"]: t["role"]["coding"][0]["code"]
            for t in claim["careTeam"]}
    assert team == {"111111118": "primary", "222222226": "other"}  # the prescriber (FT1-21, OP) is primary
    # every urn:uuid reference resolves inside the Bundle (a transaction resolves nothing outside it)
    refs = [r for r in orjson.dumps(bundle).decode().split('"reference":"')[1:]]
    assert all(r.split('"')[0] in urls for r in refs if r.startswith("urn:uuid:"))
    # Patients, Practitioners and Organizations are created only if missing: the feed stays their master
    methods = {e["resource"]["resourceType"]: e["request"]["method"] for e in bundle["entry"]}
    assert methods["Patient"] == "POST" and methods["Practitioner"] == "POST" and methods["Claim"] == "PUT"


def test_icd10_diagnoses_from_conditions_once_each() -> None:
    """Icd10 diagnoses from conditions once each."""
    cond = entry({"resourceType": "Condition", "id": "50000000-0000-5000-8000-000000000001",
                  "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
                  "subject": {"reference": patient()["fullUrl"]}})
    ch = charge("1", NGAP, "C", "2026-11-03")
    ch["resource"]["reason"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}]
    claim = _build(ch, extra=(cond,)).bundle["entry"][0]["resource"]
    assert claim["diagnosis"] == [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [
        {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}}]


def test_a_reference_to_a_resource_no_message_brought_is_a_reason() -> None:
    """A reference to a resource no message brought is a reason."""
    cov = coverage()[1]
    cov["resource"]["policyHolder"] = {"reference": "urn:uuid:99999999-0000-5000-8000-000000000000"}
    built = build_claim([patient(), encounter(), coverage()[0], cov, practitioner("111111118"),
                         practitioner("222222226"), charge("1", NGAP, "C", "2026-11-03")], OPTIONS, _Tariff(),
                        claim="c1", version=1, created="2026-11-05T10:00:00Z")
    assert [r.code for r in built.reasons] == ["REFERENCE_UNRESOLVED"]


def test_same_resources_same_bytes_and_a_correction_names_the_prior_version() -> None:
    """Same resources same bytes and a correction names the prior version."""
    one = _build(charge("1", NGAP, "C", "2026-11-03"), charge("2", NABM, "B120", "2026-11-03"))
    two = _build(charge("2", NABM, "B120", "2026-11-03"), charge("1", NGAP, "C", "2026-11-03"))
    assert orjson.dumps(one.bundle) == orjson.dumps(two.bundle)
    corrected = _build(charge("1", NGAP, "C", "2026-11-03"), version=2).bundle["entry"][0]["resource"]
    assert corrected["related"][0]["claim"]["identifier"]["value"] == "c1/1"
    assert corrected["related"][0]["relationship"]["coding"][0]["code"] == "prior"


def test_keys_follow_group_by_and_a_charge_alone_leads_through_its_references() -> None:
    """Keys follow group by and a charge alone leads through its references."""
    fse = entry({"resourceType": "Account", "id": "60000000-0000-5000-8000-000000000001", "identifier": [
        {"type": {"coding": [{"code": "FSE"}]}, "system": "https://fhir.wasla.ma/sid/ma/fse", "value": "F1"}]})
    assert keys_of([encounter(), fse], ("fse", "visit", "account")) == [
        "fse:https://fhir.wasla.ma/sid/ma/fse|F1", "visit:https://fhir.wasla.ma/sid/test/vn|V1"]
    assert keys_of([encounter(), fse], ("visit",)) == ["visit:https://fhir.wasla.ma/sid/test/vn|V1"]
    alone = charge("1", NGAP, "C", "2026-11-03")
    alone["resource"]["context"] = {"identifier": {"system": "https://fhir.wasla.ma/sid/test/vn", "value": "V1"}}
    assert keys_of([alone], ("visit", "account")) == ["visit:https://fhir.wasla.ma/sid/test/vn|V1"]
    assert claim_id("claims", "visit:x|V1") == claim_id("claims", "visit:x|V1") != claim_id("other", "visit:x|V1")


def test_payments_adjustments_and_withdrawn_charges_are_not_acts() -> None:
    """FT1-6 PY (payment), CO (co-payment), AJ (adjustment) and a ChargeItem entered-in-error bill nothing."""
    withdrawn = charge("5", NGAP, "C", "2026-11-03")
    withdrawn["resource"]["status"] = "entered-in-error"
    built = _build(charge("1", NGAP, "C", "2026-11-03"), charge("2", NGAP, "C", "2026-11-03", kind="PY"),
                   charge("3", NGAP, "C", "2026-11-03", kind="CO"), charge("4", NGAP, "C", "2026-11-03", kind="AJ"),
                   withdrawn)
    assert _items(built) == [("C", 1.0, 50.0)] and built.reasons == []


def test_a_credit_written_with_a_space_reverses_the_same_act() -> None:
    """`Z 15` and `Z15` are one act (NGAP's written form allows the space)."""
    built = _build(charge("1", NGAP, "Z 15", "2026-11-03"), charge("2", NGAP, "Z15", "2026-11-03", kind="CD"),
                   charge("3", NGAP, "C", "2026-11-03"))
    assert _items(built) == [("C", 1.0, 50.0)] and built.reasons == []


def test_a_charge_without_a_transaction_id_is_a_reason() -> None:
    """Without FT1-2 the same charge sent again cannot be recognised: the claim waits for the sender's number."""
    unnumbered = charge("1", NGAP, "C", "2026-11-03")
    unnumbered["resource"]["identifier"] = []
    built = _build(unnumbered, charge("2", NABM, "B120", "2026-11-03"))
    assert [(r.code, r.where) for r in built.reasons] == [("TRANSACTION_ID_MISSING", "ChargeItem[0].identifier")]
    assert _items(built) == [("B120", 1.0, 108.0)]
