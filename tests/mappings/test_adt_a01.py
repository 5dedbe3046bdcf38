"""ADT_A01 → Patient + Encounter, checked against the HL7 v2-to-FHIR IG and two independent validators.

Hand review of the expected fixtures (IG 1.0.0 rows):
- PID-3 CX → Identifier: CX.1 value, CX.5 type (0203), system from CX.4 under the configured base.
- PID-5 XPN → HumanName: XPN.1 family, XPN.2/3 given, XPN.5 prefix, XPN.7 use via 0200 (L → official).
- PID-7 → birthDate (date precision); PID-8 → gender via 0001 (M → male, F → female).
- PID-11 XAD → Address: XAD.1/2 line, 3 city, 5 postalCode, 6 country, XAD.7 via 0190 (M → type postal, H → use home).
- PID-13/14 XTN → telecom, use home/work only when XTN.2 is empty; XTN.3 Internet → email with XTN.4 as value.
- PV1-19 → Encounter.identifier (VN); PV1-2 → class via 0004 (I → v3 IMP) and status (I → in-progress)
  unless PV1-45 is valued (→ finished); PV1-44/45 → period start/end with the sender's or Africa/Casablanca offset.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.support import CORPUS, ROOT, TOOLS, WASLA

FIXTURES = ROOT / "mappings" / "adt_a01" / "fixtures"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def converter() -> Converter:
    return Converter(ROOT / "mappings", ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")


def _convert(converter: Converter, path: Path) -> bytes:
    return converter.convert("adt_a01", parse(decode(path.read_bytes())), NOW).bundle


def _validate_with_tool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOLS / "fhir-validate"), str(path)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.hl7")))
class TestFixtures:
    def test_matches_expected(self, converter: Converter, name: str) -> None:
        """The Bundle equals the hand-reviewed expected file."""
        got = orjson.loads(_convert(converter, FIXTURES / f"{name}.hl7"))
        assert got == orjson.loads((FIXTURES / f"{name}.json").read_bytes())

    def test_deterministic(self, converter: Converter, name: str) -> None:
        """Converting twice gives byte-identical output."""
        path = FIXTURES / f"{name}.hl7"
        assert _convert(converter, path) == _convert(converter, path)

    def test_valid_r4b_model(self, converter: Converter, name: str) -> None:
        """fhir.resources (R4B) accepts the Bundle and every resource in it."""
        bundle = Bundle.model_validate_json(_convert(converter, FIXTURES / f"{name}.hl7"))
        assert bundle.type == "transaction" and len(bundle.entry) == 3


class TestContent:
    def test_ids_are_business_keys(self, converter: Converter) -> None:
        """The Patient id depends on its identifier, not on the message: another control id, same Patient."""
        raw = (FIXTURES / "ADT01-23.hl7").read_bytes()
        a = orjson.loads(converter.convert("adt_a01", parse(decode(raw)), NOW).bundle)
        b = orjson.loads(converter.convert("adt_a01", parse(decode(raw.replace(b"|599102|", b"|599103|"))), NOW).bundle)
        assert a["entry"][0]["fullUrl"] == b["entry"][0]["fullUrl"]
        assert a["entry"][1]["fullUrl"] == b["entry"][1]["fullUrl"]
        assert a["id"] != b["id"]
        other = raw.replace(b"10006579^^^1^MR", b"10006580^^^1^MR")
        c = orjson.loads(converter.convert("adt_a01", parse(decode(other)), NOW).bundle)
        assert c["entry"][0]["fullUrl"] != a["entry"][0]["fullUrl"]

    def test_requests(self, converter: Converter) -> None:
        """Patient is a conditional create on its identifier; Encounter and Provenance are PUT by id."""
        b = orjson.loads(_convert(converter, FIXTURES / "ADT01-23.hl7"))
        pat, enc, prov = (e["request"] for e in b["entry"])
        assert pat == {"method": "POST", "url": "Patient",
                       "ifNoneExist": "identifier=https://fhir.wasla.ma/sid/1/mr|10006579"}
        assert enc["method"] == "PUT" and enc["url"] == "Encounter/" + b["entry"][1]["resource"]["id"]
        assert prov["method"] == "PUT" and prov["url"].startswith("Provenance/")

    def test_unmapped_code_is_reported(self, converter: Converter) -> None:
        """A sex code outside table 0001 is not guessed: gender is left out and a warning names the field."""
        raw = (FIXTURES / "ADT01-23.hl7").read_bytes().replace(b"|19241010|M|", b"|19241010|Q|")
        result = converter.convert("adt_a01", parse(decode(raw)), NOW)
        assert "gender" not in orjson.loads(result.bundle)["entry"][0]["resource"]
        assert result.warnings == [{"code": "CODE_UNMAPPED", "rule": "PID-8", "field": "PID-8",
                                    "detail": "not in v2-0001.administrative-gender"}]

    def test_bad_date_is_a_mapping_error(self, converter: Converter) -> None:
        """An impossible birth date fails with the rule and field, without echoing the value."""
        from engine.errors import MappingError

        raw = (FIXTURES / "ADT01-23.hl7").read_bytes().replace(b"|19241010|M|", b"|19241310|M|")
        with pytest.raises(MappingError) as info:
            converter.convert("adt_a01", parse(decode(raw)), NOW)
        assert str(info.value) == "rule PID-7 at PID-7: expected a valid calendar date"

    def test_corpus_adt_messages(self, converter: Converter) -> None:
        """Every ADT A01/A04/A08 of the public corpus converts to a Bundle fhir.resources accepts."""
        from engine.errors import MappingError, ParseError

        done = 0
        for path in sorted(CORPUS.glob("ADT*.hl7")):
            msg = parse(decode(path.read_bytes()))
            if msg.message_type not in ("ADT^A01", "ADT^A04", "ADT^A08"):
                continue
            try:
                bundle = converter.convert("adt_a01", msg, NOW).bundle
            except (MappingError, ParseError) as exc:  # pragma: no cover - reported with its file
                pytest.fail(f"{path.name}: {exc}")
            Bundle.model_validate_json(bundle)
            done += 1
        assert done >= 8


@pytest.mark.skipif(not (TOOLS / "fhir-validate").exists(), reason="../shared/tools is absent")
class TestOfficialValidator:
    def test_convert_command_output_validates(self, tmp_path: Path) -> None:
        """`wasla convert` on the corpus ADT01-23 prints a Bundle that fhir-validate accepts."""
        result = subprocess.run([WASLA, "convert", str(CORPUS / "ADT01-23.hl7")], cwd=ROOT,
                                capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        out = tmp_path / "ADT01-23.json"
        out.write_bytes(result.stdout)
        check = _validate_with_tool(out)
        assert check.returncode == 0 and "1 valid, 0 invalid" in check.stdout, check.stdout + check.stderr

    def test_fixtures_validate(self, tmp_path: Path) -> None:
        """Every expected fixture passes the official R4 schema and Medplum's validator."""
        for f in FIXTURES.glob("*.json"):
            shutil.copy(f, tmp_path / f.name)
        check = _validate_with_tool(tmp_path)
        assert check.returncode == 0 and "0 invalid" in check.stdout, check.stdout + check.stderr


class TestConvertCommand:
    def test_unconvertible_input(self, tmp_path: Path) -> None:
        """Input that is not HL7 v2 gives a one-line reason and a non-zero exit, no traceback."""
        bad = tmp_path / "bad.hl7"
        bad.write_bytes(b"hello")
        result = subprocess.run([WASLA, "convert", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert result.stderr.strip() == (f"error: {bad}: not an HL7 v2 message:"
                                          " message does not start with an MSH segment")

    def test_no_mapping_for_type(self) -> None:
        """A message type no mapping accepts is named in the one-line reason."""
        result = subprocess.run([WASLA, "convert", str(CORPUS / "ORU-R01-01.hl7")], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "no mapping accepts ORU^R01" in result.stderr and len(result.stderr.strip().splitlines()) == 1
