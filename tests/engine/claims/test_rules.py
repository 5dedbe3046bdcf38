"""engine/claims/rules.py: the shipped rules.yaml applied to a Claim Bundle (contract sections 3-4), and load
errors of a bad rules.yaml. Amounts come from the TEST rows of conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.claims import Reason, Rules, TariffBook, check
from engine.errors import ConfigError
from tests.engine.claims.conftest import claim_bundle
from tests.support import ROOT

SCHEMA = ROOT / "config" / "schema" / "claim-rules.schema.json"
SHIPPED = ROOT / "nomenclatures" / "ma-tnr" / "rules.yaml"


def _res(bundle: dict[str, Any], full_url: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == full_url)


def _claim(bundle: dict[str, Any]) -> dict[str, Any]:
    return _res(bundle, "Claim/c1")


def _set_price(b: dict[str, Any], unit: float, net: float, total: float) -> None:
    item = _claim(b)["item"][0]
    item["unitPrice"]["value"], item["net"]["value"] = unit, net
    _claim(b)["total"]["value"] = total


# Each mutation breaks one rule; the expected reasons are (code, where).
BREAKS: dict[str, tuple[Callable[[dict[str, Any]], object], list[tuple[str, str]]]] = {
    "created missing": (lambda b: _claim(b).pop("created"), [("REQUIRED_MISSING", "created")]),
    "billablePeriod missing": (lambda b: _claim(b).update(billablePeriod={}),
                               [("REQUIRED_MISSING", "billablePeriod.start")]),
    "insurance empty": (lambda b: _claim(b).update(insurance=[]), [("REQUIRED_MISSING", "insurance")]),
    "coverage reference missing": (lambda b: _claim(b)["insurance"][0].pop("coverage"),
                                   [("REQUIRED_MISSING", "insurance[0].coverage")]),
    "item net missing": (lambda b: (_claim(b)["item"][1].pop("net"), _claim(b).update(total={"value": 60.0,
                                                                                              "currency": "MAD"})),
                         [("REQUIRED_MISSING", "item[1].net")]),
    "claim type": (lambda b: _claim(b)["type"]["coding"][0].update(code="pharmacy"),
                   [("CLAIM_TYPE_INVALID", "type")]),
    "provider INPE format": (lambda b: _res(b, "urn:uuid:provider")["identifier"][0].update(value="12345"),
                             [("IDENTIFIER_INVALID", "provider.identifier")]),
    "provider INPE missing": (lambda b: _res(b, "urn:uuid:provider").pop("identifier"),
                              [("REQUIRED_MISSING", "provider.identifier")]),
    "provider reference dangling": (lambda b: _claim(b)["provider"].update(reference="urn:uuid:nothing"),
                                    [("REQUIRED_MISSING", "provider")]),
    "careTeam INPE format": (lambda b: _res(b, "urn:uuid:doc")["identifier"][0].update(value="ABCDEFGHI"),
                             [("IDENTIFIER_INVALID", "careTeam[0].provider.identifier")]),
    "coverage registration empty": (lambda b: (_res(b, "urn:uuid:coverage")["identifier"][0].update(value=" "),),
                                    [("IDENTIFIER_INVALID", "insurance[0].coverage.identifier")]),
    "coverage registration missing": (lambda b: (_res(b, "urn:uuid:coverage").pop("identifier"),
                                                 _res(b, "urn:uuid:coverage").pop("subscriberId")),
                                      [("REQUIRED_MISSING", "insurance[0].coverage.identifier")]),
    "insurer is ANAM": (lambda b: _res(b, "urn:uuid:insurer")["identifier"][0].update(value="ANAM"),
                        [("INSURER_UNKNOWN", "insurer")]),
    "insurer without AMO code": (lambda b: _res(b, "urn:uuid:insurer").pop("identifier"),
                                 [("REQUIRED_MISSING", "insurer.identifier")]),
    "unit price": (lambda b: _set_price(b, 70.0, 70.0, 124.0), [("PRICE_MISMATCH", "item[0].unitPrice")]),
    "net": (lambda b: (_claim(b)["item"][1]["net"].update(value=50.0), _claim(b)["total"].update(value=110.0)),
            [("PRICE_MISMATCH", "item[1].net")]),
    "total": (lambda b: _claim(b)["total"].update(value=100.0), [("TOTAL_MISMATCH", "total")]),
    "currency": (lambda b: _claim(b)["item"][0]["unitPrice"].update(currency="EUR"),
                 [("CURRENCY_INVALID", "item[0].unitPrice")]),
    "unknown act": (lambda b: _claim(b)["item"][0]["productOrService"]["coding"][0].update(code="XYZ-999"),
                    [("ACT_UNKNOWN", "item[0].productOrService")]),
    "not an act nomenclature": (lambda b: _claim(b)["item"][0]["productOrService"]["coding"][0].update(
        system="http://loinc.org"), [("ACT_UNKNOWN", "item[0].productOrService")]),
    "no tariff on that date": (lambda b: _claim(b)["item"][0].update(servicedDate="2019-06-01"),
                               [("TARIFF_MISSING", "item[0].productOrService")]),
}


class TestCheck:
    def test_a_valid_claim_passes(self, valid_bundle: dict[str, Any], book: TariffBook, rules: Rules) -> None:
        """The conftest Bundle breaks no rule: no reason."""
        assert check(valid_bundle, book, rules, sector="public") == []

    @pytest.mark.parametrize("name", sorted(BREAKS))
    def test_each_rule_failing_alone(self, name: str, valid_bundle: dict[str, Any], book: TariffBook,
                                     rules: Rules) -> None:
        """One broken rule gives exactly its reason, at the element at fault."""
        mutate, expected = BREAKS[name]
        mutate(valid_bundle)
        got = check(valid_bundle, book, rules, sector="public")
        assert [(r.code, r.where) for r in got] == expected, got

    def test_the_fix_names_the_file_to_edit(self, valid_bundle: dict[str, Any], book: TariffBook,
                                            rules: Rules) -> None:
        """A missing tariff says tariffs.csv; an unknown act the act table; an unknown insurer ma-amo."""
        BREAKS["no tariff on that date"][0](valid_bundle)
        assert [r.fix for r in check(valid_bundle, book, rules, sector="public")] == [
            "nomenclatures/ma-tnr/tariffs.csv"]
        b = claim_bundle(insurer="ANAM")
        assert [r.fix for r in check(b, book, rules, sector="public")] == ["nomenclatures/ma-amo/codes.csv"]

    def test_the_tariff_is_the_sector_s(self, valid_bundle: dict[str, Any], book: TariffBook, rules: Rules) -> None:
        """The private sector has no C and prices B at 1.10: TARIFF_MISSING and PRICE_MISMATCH (33.00 billed 27)."""
        got = check(valid_bundle, book, rules, sector="private")
        assert [(r.code, r.where) for r in got] == [("TARIFF_MISSING", "item[0].productOrService"),
                                                    ("PRICE_MISMATCH", "item[1].unitPrice")]
        assert "33.00" in got[1].message

    def test_an_uncertain_format_warns_unless_the_rules_reject_warnings(self, valid_bundle: dict[str, Any],
                                                                        book: TariffBook, tmp_path: Path) -> None:
        """The CNSS registration's format is unverified (confidence U): 8 digits passes, unless reject lists warning."""
        _res(valid_bundle, "urn:uuid:coverage")["identifier"][0]["value"] = "12345678"
        assert check(valid_bundle, book, Rules.load(SHIPPED), sector="public") == []
        text = SHIPPED.read_text(encoding="utf-8").replace(
            "also: subscriberId        # Coverage.subscriberId holds the registration when no identifier does\n"
            "    reject: [invalid]", "also: subscriberId\n    reject: [invalid, warning]")
        (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
        got = check(valid_bundle, book, Rules.load(tmp_path / "rules.yaml"), sector="public")
        assert [(r.code, r.where) for r in got] == [("IDENTIFIER_INVALID", "insurance[0].coverage.identifier")]

    def test_subscriber_id_stands_for_the_identifier(self, valid_bundle: dict[str, Any], book: TariffBook,
                                                    rules: Rules) -> None:
        """A Coverage with only subscriberId passes; its value is validated like the identifier."""
        _res(valid_bundle, "urn:uuid:coverage").pop("identifier")
        assert check(valid_bundle, book, rules, sector="public") == []

    def test_a_credit_line_keeps_the_tariff_price(self, valid_bundle: dict[str, Any], book: TariffBook,
                                                  rules: Rules) -> None:
        """A credit (quantity -1, negative net) of the C consultation: priced as the act, netted against the total."""
        _claim(valid_bundle)["item"].append({
            "sequence": 3, "productOrService": {"coding": [{"system": "https://fhir.wasla.ma/CodeSystem/ma-ngap",
                                                            "code": "C"}]},
            "servicedDate": "2026-03-01", "quantity": {"value": -1}, "unitPrice": {"value": 60.0, "currency": "MAD"},
            "net": {"value": -60.0, "currency": "MAD"}})
        _claim(valid_bundle)["total"]["value"] = 54.0
        assert check(valid_bundle, book, rules, sector="public") == []

    def test_a_bundle_without_claim(self, book: TariffBook, rules: Rules) -> None:
        """No Claim entry: one REQUIRED_MISSING, no exception."""
        assert check({"resourceType": "Bundle", "entry": []}, book, rules, sector="public") == [
            Reason("REQUIRED_MISSING", "Claim", "the Bundle holds no Claim", "")]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.text(st.characters(categories=["L"]), min_size=6, max_size=20),
           birth=st.dates().map(str),
           inpe=st.one_of(st.from_regex(r"[0-9]{9}", fullmatch=True), st.text("0123456789ABCxyz", min_size=6,
                                                                             max_size=12)),
           doc_inpe=st.text("0123456789ABCxyz", min_size=6, max_size=12),
           registration=st.text("0123456789ABCxyz -", min_size=6, max_size=14))
    def test_no_patient_data_in_any_reason(self, book: TariffBook, rules: Rules, name: str, birth: str, inpe: str,
                                           doc_inpe: str, registration: str) -> None:
        """Random names, dates of birth and identifier values never appear in a reason's text."""
        b = claim_bundle(patient_name=name, birth_date=birth, provider_inpe=inpe, practitioner_inpe=doc_inpe,
                         registration=registration)
        BREAKS["unit price"][0](b)
        reasons = check(b, book, rules, sector="private")
        assert reasons
        text = "\n".join(f"{r.code} {r.where} {r.message} {r.fix}" for r in reasons)
        for value in (name, birth, inpe, doc_inpe, registration.strip()):
            assert value not in text


class TestLoad:
    def _load(self, tmp_path: Path, text: str, *, schema: Path | None = None) -> ConfigError:
        (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            Rules.load(tmp_path / "rules.yaml", schema=schema)
        return err.value

    def test_the_shipped_rules_follow_the_schema(self) -> None:
        """nomenclatures/ma-tnr/rules.yaml loads, checked against config/schema/claim-rules.schema.json."""
        r = Rules.load(SHIPPED, schema=SCHEMA)
        assert r.currency == "MAD" and r.acts == {"ma-ngap": True, "ma-nabm": True}
        assert [i.system for i in r.identifiers] == ["inpe", "inpe", "cnss"]

    @pytest.mark.parametrize(("old", "new", "line", "what"), [
        ("kind: ClaimRules", "kind: Rules", 7, "kind"),
        ("currency: MAD", "currency: dirham", 9, "currency"),
        ('price_tolerance: "0.00"', 'price_tolerance: "-1"', 11, "price_tolerance"),
        ("  - billablePeriod.start", "  - billablePeriod..start", 21, "required[5]"),
        ("    reject: [invalid]\n  - path: careTeam", "    reject: [maybe]\n  - path: careTeam", 40, "reject"),
        ("  ma-nabm: {written_form: true}", "  ma-nabm: {written_form: yes please}", 62, "acts.ma-nabm"),
    ])
    def test_a_bad_value_is_reported_at_its_line(self, tmp_path: Path, old: str, new: str, line: int,
                                                 what: str) -> None:
        """Without the schema too, each bad value is a ConfigError at rules.yaml's line, naming the field."""
        text = SHIPPED.read_text(encoding="utf-8")
        assert old in text
        e = self._load(tmp_path, text.replace(old, new, 1))
        assert (e.line, e.file.endswith("rules.yaml")) == (line, True) and what in str(e), str(e)

    def test_the_schema_catches_an_unknown_key(self, tmp_path: Path) -> None:
        """A misspelt key is reported by the schema with a suggestion."""
        text = SHIPPED.read_text(encoding="utf-8").replace("claim_types:", "claim_type:")
        e = self._load(tmp_path, text, schema=SCHEMA)
        assert "claim_type" in str(e)

    def test_an_unknown_identifier_system_is_reported_at_its_rule(self, tmp_path: Path, book: TariffBook,
                                                                  valid_bundle: dict[str, Any]) -> None:
        """A rule naming an identifier system or act code set the nomenclatures lack: against() lists both at
        their lines, and check() refuses to run."""
        text = SHIPPED.read_text(encoding="utf-8").replace("system: cnss", "system: cnss-typo").replace(
            "  ma-nabm: {written_form: true}", "  ma-nabm: {written_form: true}\n  ma-ccam: {written_form: false}")
        (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
        rules = Rules.load(tmp_path / "rules.yaml")
        assert [(e.line, "cnss-typo" in e.message or "ma-ccam" in e.message) for e in rules.against(book)] == [
            (46, True), (63, True)]
        with pytest.raises(ConfigError, match="cnss-typo"):
            check(valid_bundle, book, rules, sector="public")
