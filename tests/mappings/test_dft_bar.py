"""The `dft` and `bar` mappings (issue 26, charges in): what the claim stage reads from a converted Bundle
(/work/notes/claims-contract.md §1), checked against the sources independently of the fixtures' expected JSON,
the variants a hospital sends (no FT1-10, `""`, repeated FT1-20, several FT1 and IN1, no FT1-2, several visits),
and the CSV billing export giving the same ids as the DFT of the same visit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.csvfile import Layout, Row, rows
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from engine.mapping.csvmap import find_csvmap
from tests.mappings.bundles import only, resources
from tests.mappings.conftest import NOW
from tests.support import ROOT

BASE = "https://fhir.wasla.ma"
FIXTURE = ROOT / "mappings/dft/fixtures/ma-dft-p03-consultation.hl7"


def _convert(converter: Converter, text: str, mapping: str = "dft") -> tuple[dict[str, Any], list[str]]:
    result = converter.convert(mapping, parse(decode(text.encode())), NOW)
    bundle: dict[str, Any] = orjson.loads(result.bundle)
    return bundle, [w["code"] for w in result.warnings]


def _lines() -> list[str]:
    return FIXTURE.read_bytes().decode().strip("\r").split("\r")


def _with(replace: dict[str, str] | None = None, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> str:
    """The Moroccan fixture with whole segments replaced (by their first 8 characters), dropped or added."""
    out = []
    for line in _lines():
        if any(line.startswith(p) for p in drop):
            continue
        out.append(next((v for k, v in (replace or {}).items() if line.startswith(k)), line))
    return "\r".join(out + list(add)) + "\r"


def _by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def _ext(charge: dict[str, Any]) -> str:
    (ext,) = [x for x in charge["extension"] if x["url"] == f"{BASE}/StructureDefinition/charge-transaction-type"]
    assert ext["valueCoding"]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0017"
    return str(ext["valueCoding"]["code"])


def _charges(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["identifier"][0]["value"]: c for c in resources(bundle, "ChargeItem") if "identifier" in c}


def _performers(bundle: dict[str, Any], charge: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(INPE system, INPE value, function code or '') per performer."""
    urls = _by_url(bundle)
    out = []
    for p in charge.get("performer", []):
        ident = urls[p["actor"]["reference"]]["identifier"][0]
        out.append((ident["system"], ident["value"], p.get("function", {}).get("coding", [{}])[0].get("code", "")))
    return out


@pytest.fixture(scope="module")
def bundle(converter: Converter) -> dict[str, Any]:
    bundle, warnings = _convert(converter, FIXTURE.read_bytes().decode())
    assert warnings == []  # every valued field read or ignored on purpose, the INPE and CNSS ids valid
    return bundle


class TestMoroccanFixture:
    """mappings/dft/fixtures/ma-dft-p03-consultation.hl7, element by element (fixtures/README.md's table)."""

    def test_one_chargeitem_per_ft1_the_credit_included(self, bundle: dict[str, Any]) -> None:
        charges = _charges(bundle)
        assert sorted(charges) == ["TRX-88001", "TRX-88002", "TRX-88003", "TRX-88004"]
        assert {k: _ext(c) for k, c in charges.items()} == {"TRX-88001": "CG", "TRX-88002": "CG", "TRX-88003": "CG",
                                                            "TRX-88004": "CD"}
        for c in charges.values():
            assert c["status"] == "billable"
            assert c["identifier"] == [{"system": f"{BASE}/sid/chu-ibn-rochd/charge-transaction",
                                        "value": c["identifier"][0]["value"]}]
            assert c["occurrenceDateTime"] == "2026-11-20" and c["quantity"] == {"value": 1}

    def test_ids_are_the_account_and_the_transaction(self, converter: Converter, bundle: dict[str, Any]) -> None:
        ids = {c["id"] for c in resources(bundle, "ChargeItem")}
        assert len(ids) == 4
        # not the message: another control id and time, the same charges (a resend, or a CSV export, overwrites)
        msh = _lines()[0].replace("DFT-20261120-0001", "X-2").replace("20261120143000", "20261121080000")
        again, _ = _convert(converter, _with({"MSH|": msh}))
        assert {c["id"] for c in resources(again, "ChargeItem")} == ids
        # another account number: other charges (the key is [PID-18, FT1-2])
        pid = next(line for line in _lines() if line.startswith("PID|")).replace("CPT-2026-004211", "CPT-2026-9")
        other, _ = _convert(converter, _with({"PID|": pid}))
        assert not {c["id"] for c in resources(other, "ChargeItem")} & ids

    def test_codes_in_the_ngap_and_nabm_systems_as_sent(self, bundle: dict[str, Any]) -> None:
        codes = {k: c["code"]["coding"][0] for k, c in _charges(bundle).items()}
        assert (codes["TRX-88001"]["system"], codes["TRX-88001"]["code"]) == (f"{BASE}/CodeSystem/ma-ngap", "C")
        assert (codes["TRX-88002"]["system"], codes["TRX-88002"]["code"]) == (f"{BASE}/CodeSystem/ma-nabm", "B120")
        assert (codes["TRX-88003"]["system"], codes["TRX-88003"]["code"]) == (f"{BASE}/CodeSystem/ma-ngap", "Z15")

    def test_unit_price_and_reason(self, bundle: dict[str, Any]) -> None:
        charges = _charges(bundle)
        assert charges["TRX-88002"]["priceOverride"] == {"value": 132.0, "currency": "MAD"}
        assert charges["TRX-88001"]["reason"] == [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10",
                                                                "code": "I10",
                                                                "display": "Hypertension essentielle (primitive)"}]}]

    def test_performer_and_prescriber_by_inpe(self, bundle: dict[str, Any]) -> None:
        inpe = f"{BASE}/sid/ma/inpe"
        assert _performers(bundle, _charges(bundle)["TRX-88002"]) == [(inpe, "987654321", ""),
                                                                       (inpe, "123456789", "OP")]
        assert _performers(bundle, _charges(bundle)["TRX-88004"]) == [(inpe, "123456789", "")]

    def test_subject_context_account(self, bundle: dict[str, Any]) -> None:
        urls = _by_url(bundle)
        for c in resources(bundle, "ChargeItem"):
            assert urls[c["subject"]["reference"]]["resourceType"] == "Patient"
            assert urls[c["context"]["reference"]]["identifier"][0]["value"] == "V2026-118734"
            (acct,) = c["account"]
            assert urls[acct["reference"]]["identifier"][0]["value"] == "CPT-2026-004211"

    def test_account_coverage_payor_condition(self, bundle: dict[str, Any]) -> None:
        account = only(bundle, "Account")
        assert account["status"] == "active"
        assert account["identifier"][0]["type"]["coding"][0]["code"] == "AN"
        coverage = only(bundle, "Coverage")
        assert coverage["subscriberId"] == "112233445"
        assert {"system": f"{BASE}/sid/ma/cnss-immatriculation", "value": "112233445"}.items() <= \
            coverage["identifier"][1].items()
        payor = _by_url(bundle)[coverage["payor"][0]["reference"]]
        assert payor["identifier"][0]["system"] == f"{BASE}/sid/ma/amo" and payor["identifier"][0]["value"] == "CNSS"
        assert only(bundle, "Condition")["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"


FT1_1 = "FT1|1|TRX-88001||20261120||CG|C^Consultation^NGAP|||{q}||80.00&MAD|||||||I10^^I10|{perf}"
K = "123456789^BENANI^Karim^^^Dr^^^INPE^^^^PRN"
T = "987654321^TAZI^Salma^^^Dr^^^INPE^^^^PRN"


class TestVariants:
    def test_missing_quantity_is_left_out(self, converter: Converter) -> None:
        bundle, _ = _convert(converter, _with({"FT1|1|": FT1_1.format(q="", perf=K)}))
        assert "quantity" not in _charges(bundle)["TRX-88001"]

    def test_null_values_leave_elements_out(self, converter: Converter) -> None:
        ft1 = 'FT1|1|TRX-88001||20261120||CG|C^Consultation^NGAP|||""||""|||||||""|' + K
        bundle, _ = _convert(converter, _with({"FT1|1|": ft1}))
        charge = _charges(bundle)["TRX-88001"]
        assert not {"quantity", "priceOverride", "reason"} & set(charge)
        assert _ext(charge) == "CG"

    def test_repeated_performers(self, converter: Converter) -> None:
        bundle, _ = _convert(converter, _with({"FT1|1|": FT1_1.format(q="1", perf=f"{K}~{T}")}))
        assert [v for _, v, _ in _performers(bundle, _charges(bundle)["TRX-88001"])] == ["123456789", "987654321"]

    def test_several_in1_give_several_coverages_on_the_account(self, converter: Converter) -> None:
        cnops = ("IN1|2|AMO-FP^AMO fonctionnaires^L|CNOPS^^^AMO^NIIP|"
                 "Caisse nationale des organismes de prévoyance sociale")
        bundle, _ = _convert(converter, _with(add=(cnops,)))
        coverages = resources(bundle, "Coverage")
        assert len(coverages) == 2 and len({c["id"] for c in coverages}) == 2
        assert len(only(bundle, "Account")["coverage"]) == 2
        payors = {o["identifier"][0]["value"] for o in resources(bundle, "Organization") if "identifier" in o}
        assert payors == {"CNSS", "CNOPS"}

    def test_without_transaction_id_the_key_is_the_message_and_set_id(self, converter: Converter) -> None:
        ft1 = "FT1|1|||20261120||CG|C^Consultation^NGAP|||1||80.00&MAD|||||||I10^^I10|" + K
        bundle, warnings = _convert(converter, _with({"FT1|1|": ft1}))
        unnumbered = [c for c in resources(bundle, "ChargeItem") if "identifier" not in c]
        assert len(unnumbered) == 1 and "BUSINESS_KEY_MISSING" not in warnings
        # the same message again: the same id; another set ID: another charge
        again, _ = _convert(converter, _with({"FT1|1|": ft1}))
        assert [c["id"] for c in resources(again, "ChargeItem") if "identifier" not in c] == [unnumbered[0]["id"]]
        other, _ = _convert(converter, _with({"FT1|1|": ft1.replace("FT1|1|", "FT1|7|")}))
        assert [c["id"] for c in resources(other, "ChargeItem") if "identifier" not in c] != [unnumbered[0]["id"]]

    def test_a_bad_amount_is_reported_not_guessed(self, converter: Converter) -> None:
        ft1 = "FT1|1|TRX-88001||20261120||CG|C^Consultation^NGAP|||1||quatre-vingts&MAD|||||||I10^^I10|" + K
        bundle, warnings = _convert(converter, _with({"FT1|1|": ft1}))
        assert "priceOverride" not in _charges(bundle)["TRX-88001"] and "VALUE_INVALID" in warnings


    def test_a_malformed_inpe_is_kept_and_flagged(self, converter: Converter) -> None:
        ft1 = FT1_1.format(q="1", perf="12345^X^Y^^^^^^INPE^^^^PRN")
        bundle, warnings = _convert(converter, _with({"FT1|1|": ft1}))
        assert _performers(bundle, _charges(bundle)["TRX-88001"]) == [(f"{BASE}/sid/ma/inpe", "12345", "")]
        assert "IDENTIFIER_INVALID" in warnings


class TestBar:
    def test_several_visits_one_encounter_each_on_the_account(self, converter: Converter) -> None:
        bundle, _ = _convert(converter, (ROOT / "mappings/bar/fixtures/BAR-P01-02.hl7").read_bytes().decode(), "bar")
        account = only(bundle, "Account")
        encounters = resources(bundle, "Encounter")
        assert sorted(e["identifier"][0]["value"] for e in encounters) == ["40007715", "40007716"]
        urls = _by_url(bundle)
        assert all(urls[e["account"][0]["reference"]] is account for e in encounters)
        for c in resources(bundle, "Condition"):  # each diagnosis on its own visit
            assert c["encounter"]["reference"] in {e["fullUrl"] for e in bundle["entry"]
                                                   if e["resource"]["resourceType"] == "Encounter"}

    @pytest.mark.parametrize(("trigger", "status"), [("P01", "active"), ("P02", "active"), ("P05", "active"),
                                                     ("P06", "inactive"), ("P12", "inactive")])
    def test_account_status_by_trigger(self, converter: Converter, trigger: str, status: str) -> None:
        text = (ROOT / "mappings/bar/fixtures/ma-bar-p06-fin-compte.hl7").read_bytes().decode()
        text = text.replace("BAR^P06^BAR_P06", f"BAR^{trigger}^BAR_{trigger}").replace("EVN|P06", f"EVN|{trigger}")
        bundle, _ = _convert(converter, text, "bar")
        assert only(bundle, "Account")["status"] == status

    def test_the_bar_account_is_the_dft_account(self, converter: Converter) -> None:
        bar, _ = _convert(converter, (ROOT / "mappings/bar/fixtures/ma-bar-p06-fin-compte.hl7").read_bytes().decode(),
                          "bar")
        dft, _ = _convert(converter, FIXTURE.read_bytes().decode())
        assert only(bar, "Account")["id"] == only(dft, "Account")["id"]


@pytest.fixture(scope="module")
def pair(converter: Converter) -> tuple[dict[str, Any], dict[str, Any]]:
    m = find_csvmap(ROOT / "mappings", "csv_billing", ROOT / "config/schema")
    group = [r.values for r in rows(ROOT / "mappings/csv_billing/fixtures/actes.csv", Layout())
             if isinstance(r, Row)]
    assert all(m.check(v, ("%d/%m/%Y",)) is None for v in group)
    # the channel's sender names the facility the DFT comes from (its MSH-4 and the CX-4 of its numbers)
    er7 = m.to_v2(group, sender="CHU-IBN-ROCHD", application="CSV", control_id="V2026-118734",
                  date_formats=("%d/%m/%Y",))
    csv, _ = _convert(converter, er7, m.mapping)
    dft, _ = _convert(converter, FIXTURE.read_bytes().decode())
    return dft, csv


class TestCsvBilling:
    """The same visit as a DFT^P03 (the Moroccan fixture) and as CSV rows (mappings/csv_billing/fixtures)."""

    def test_same_chargeitems(self, pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
        dft, csv = pair
        a, b = _charges(dft), _charges(csv)
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k]["id"] == b[k]["id"]
            assert a[k]["identifier"] == b[k]["identifier"]
            assert [(c["system"], c["code"]) for c in a[k]["code"]["coding"]] == \
                [(c["system"], c["code"]) for c in b[k]["code"]["coding"]]
            for element in ("quantity", "occurrenceDateTime", "priceOverride", "status", "extension"):
                assert a[k][element] == b[k][element], element
            assert _performers(dft, a[k]) == _performers(csv, b[k])

    def test_same_account_encounter_patient_coverage(self, pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
        dft, csv = pair
        for rtype in ("Account", "Encounter", "Coverage", "Condition"):
            assert only(dft, rtype)["id"] == only(csv, rtype)["id"], rtype
        for rtype in ("Account", "Encounter"):
            assert only(dft, rtype)["identifier"] == only(csv, rtype)["identifier"], rtype
        # the export has no plan id (IN1-2): the insured's registration is what the claim needs
        assert only(dft, "Coverage")["identifier"][1] == only(csv, "Coverage")["identifier"][0]
        assert only(dft, "Coverage")["subscriberId"] == only(csv, "Coverage")["subscriberId"] == "112233445"
        urls_a, urls_b = _by_url(dft), _by_url(csv)
        assert {k for k, v in urls_a.items() if v["resourceType"] in ("Patient", "Practitioner")} == \
            {k for k, v in urls_b.items() if v["resourceType"] in ("Patient", "Practitioner")}


_TX = st.from_regex(r"\A[A-Z0-9][A-Z0-9-]{0,7}\Z")
_FT1_FIELD = st.sampled_from(["", '""', "1", "2.5", "x"])


@st.composite
def _dft(draw: st.DrawFn) -> tuple[str, int, int]:
    """A DFT^P03 of the Moroccan fixture's visit with 1-6 generated FT1 (some without FT1-2) and 0-3 IN1."""
    ft1s, numbered = [], set()
    for i in range(1, draw(st.integers(1, 6)) + 1):
        tx = draw(st.one_of(st.just(""), _TX))
        if tx:
            numbered.add(tx)
        kind = draw(st.sampled_from(["CG", "CD", "PY", "AJ", "CO", ""]))
        perf = "~".join(draw(st.lists(st.sampled_from([K, T, '""', ""]), max_size=3)))
        code = f"{draw(st.sampled_from(['C', 'B120', 'Z 15', '']))}^^{draw(st.sampled_from(['NGAP', 'NABM']))}"
        ft1s.append(f"FT1|{i}|{tx}||{draw(st.sampled_from(['20261120', '', '2026']))}||{kind}|{code}"
                    f"|||{draw(_FT1_FIELD)}||{draw(_FT1_FIELD)}&MAD|||||||I10^^I10|{perf}|"
                    f"{draw(st.sampled_from([K, '']))}")
    unnumbered = sum(1 for f in ft1s if f.split("|")[2] == "")
    in1s = [f"IN1|{i}||{draw(st.sampled_from(['CNSS', 'CNOPS', '']))}^^^AMO^NIIP|Caisse {i}" + "|" * 45
            + f"{draw(st.sampled_from(['112233445', '']))}^^^CNSS^SB" for i in range(1, draw(st.integers(0, 3)) + 1)]
    lines = [line for line in _lines() if not line.startswith(("FT1|", "IN1|"))]
    dg1 = next(i for i, line in enumerate(lines) if line.startswith("DG1|"))
    text = "\r".join(lines[:dg1] + ft1s + lines[dg1:] + in1s) + "\r"
    return text, len(numbered), unnumbered


@given(_dft())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_ft1_is_one_chargeitem_and_ids_are_stable(converter: Converter, case: tuple[str, int, int]) -> None:
    text, numbered, unnumbered = case
    bundle, _ = _convert(converter, text)
    charges = resources(bundle, "ChargeItem")
    # one ChargeItem per distinct transaction id (a repeated FT1-2 is the same charge: occurrence-2), one per other FT1
    assert len([c for c in charges if "identifier" not in c]) == unnumbered
    assert len({c["identifier"][0]["value"] for c in charges if "identifier" in c}) == numbered
    assert len({c["id"] for c in charges}) == len(charges)
    assert all(c["status"] == "billable" and c["subject"] and c["context"] for c in charges)
    again, _ = _convert(converter, text)
    assert again == bundle  # deterministic
