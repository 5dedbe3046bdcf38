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

import subprocess
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import CORPUS, ROOT, TOOLS, WASLA

FIXTURES = ROOT / "mappings" / "adt" / "fixtures"


def _convert(converter: Converter, path: Path) -> bytes:
    return converter.convert("adt", parse(decode(path.read_bytes())), NOW).bundle


def _validate_with_tool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOLS / "fhir-validate"), str(path)], capture_output=True, text=True, timeout=300)


def _of(bundle: dict, rtype: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


class TestContent:
    def test_ids_are_business_keys(self, converter: Converter) -> None:
        """The Patient id depends on its identifier, not on the message: another control id, same Patient."""
        raw = (FIXTURES / "ADT01-23.hl7").read_bytes()
        a = orjson.loads(converter.convert("adt", parse(decode(raw)), NOW).bundle)
        b = orjson.loads(converter.convert("adt", parse(decode(raw.replace(b"|599102|", b"|599103|"))), NOW).bundle)
        assert a["entry"][0]["fullUrl"] == b["entry"][0]["fullUrl"]
        assert a["entry"][1]["fullUrl"] == b["entry"][1]["fullUrl"]
        assert a["id"] != b["id"]
        other = raw.replace(b"10006579^^^1^MR", b"10006580^^^1^MR")
        c = orjson.loads(converter.convert("adt", parse(decode(other)), NOW).bundle)
        assert c["entry"][0]["fullUrl"] != a["entry"][0]["fullUrl"]

    def test_requests(self, converter: Converter) -> None:
        """Patient is a conditional update on its identifier (the HIS is the master: an A08 updates it);
        Encounter and Provenance are PUT by id."""
        b = orjson.loads(_convert(converter, FIXTURES / "ADT01-23.hl7"))
        pat, enc, prov = (_of(b, t)[0]["request"] for t in ("Patient", "Encounter", "Provenance"))
        assert pat == {"method": "PUT", "url": "Patient?identifier=https://fhir.wasla.ma/sid/1/mr|10006579"}
        assert enc["method"] == "PUT" and enc["url"] == "Encounter/" + _of(b, "Encounter")[0]["resource"]["id"]
        assert prov["method"] == "PUT" and prov["url"].startswith("Provenance/")

    def test_unmapped_code_is_reported(self, converter: Converter) -> None:
        """A sex code outside table 0001 is not guessed: gender is left out and a warning names the field."""
        raw = (FIXTURES / "ADT01-23.hl7").read_bytes().replace(b"|19241010|M|", b"|19241010|Q|")
        result = converter.convert("adt", parse(decode(raw)), NOW)
        assert "gender" not in orjson.loads(result.bundle)["entry"][0]["resource"]
        assert {"code": "CODE_UNMAPPED", "rule": "PID-8", "field": "PID-8",
                "detail": "not in v2-0001.administrative-gender", "code_map": "v2-0001.administrative-gender",
                "local_code": "Q"} in result.warnings
        before = converter.convert("adt", parse(decode((FIXTURES / "ADT01-23.hl7").read_bytes())), NOW)
        assert len(result.warnings) == len(before.warnings) + 1

    def test_bad_date_loses_the_element_not_the_message(self, converter: Converter) -> None:
        """An impossible birth date is left out with a VALUE_INVALID warning naming rule and field, without
        echoing the value; with the channel's `unmapped_codes: reject` it fails the message instead."""
        from engine.errors import MappingError

        raw = (FIXTURES / "ADT01-23.hl7").read_bytes().replace(b"|19241010|M|", b"|19241310|M|")
        conv = converter.convert("adt", parse(decode(raw)), NOW)
        patient = next(e["resource"] for e in orjson.loads(conv.bundle)["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        assert "birthDate" not in patient
        assert {"code": "VALUE_INVALID", "rule": "PID-7", "field": "PID-7",
                "detail": "expected a valid calendar date"} in conv.warnings
        assert "1924" not in orjson.dumps(conv.warnings).decode()
        with pytest.raises(MappingError) as info:
            converter.convert("adt", parse(decode(raw)), NOW, {"unmapped_codes": "reject"})
        assert str(info.value) == "rule PID-7 at PID-7: expected a valid calendar date"

    def test_corpus_adt_messages(self, converter: Converter) -> None:
        """Every ADT A01/A04/A08 of the public corpus converts to a Bundle fhir.resources accepts.

        (tests/mappings/test_corpus.py runs every covered type through the official validator.)"""
        from engine.errors import MappingError, ParseError

        done = 0
        for path in sorted(CORPUS.glob("ADT*.hl7")):
            msg = parse(decode(path.read_bytes()))
            if msg.message_type not in ("ADT^A01", "ADT^A04", "ADT^A08"):
                continue
            try:
                bundle = converter.convert("adt", msg, NOW).bundle
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


class TestTriggers:
    """What each trigger changes, checked against the IG's Event[EncounterStatus] map and the A39/A40 merge rows."""

    @pytest.mark.parametrize(("fixture", "status"), [
        ("ADT-A02-01", "in-progress"), ("ADT-A03-01", "finished"), ("ADT-A04-01", "planned"),
        ("ADT-A05-01", "planned"), ("ADT-A11-01", "cancelled"), ("ADT-A13-01", "in-progress"),
        # issue 25: MS FHIR-Converter Resource/_Encounter.liquid (A14 planned, A27 cancelled), trigger
        # semantics (A21 leave of absence onleave, A23 delete visit entered-in-error)
        ("ADT-A14-01", "planned"), ("ADT-A27-01", "cancelled"), ("ma-a21-leave", "onleave"),
        ("ma-a23-delete-visit", "entered-in-error"),
    ])
    def test_encounter_status_follows_the_event(self, converter: Converter, fixture: str, status: str) -> None:
        raw = (FIXTURES / f"{fixture}.hl7").read_bytes()
        msg = parse(decode(raw))
        if msg.first("PV1") and msg.first("PV1").field(45).text:  # type: ignore[union-attr]
            status = "finished"  # PV1-45 (discharge time) wins, as the IG's PV1-45 row says
        b = orjson.loads(converter.convert("adt", msg, NOW).bundle)
        assert _of(b, "Encounter")[0]["resource"]["status"] == status

    def test_a40_links_survivor_and_merged(self, converter: Converter) -> None:
        b = orjson.loads(_convert(converter, FIXTURES / "ADT-A40-01.hl7"))
        survivor, merged = (e for e in _of(b, "Patient"))
        assert survivor["resource"]["link"] == [{"type": "replaces", "other": {"reference": merged["fullUrl"]}}]
        assert merged["resource"]["link"] == [{"type": "replaced-by", "other": {"reference": survivor["fullUrl"]}}]
        assert merged["resource"]["active"] is False
        assert merged["request"]["method"] == "POST" and "ifNoneExist" in merged["request"]

    def test_a17_swap_keeps_each_visit_with_its_patient(self, converter: Converter) -> None:
        """IG ADT_A17 map: PID[Patient] and PV1[Encounter] twice, Encounter[n].subject = Patient[n]."""
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a17-swap.hl7"))
        patients = {e["fullUrl"]: e["resource"]["name"][0]["family"] for e in _of(b, "Patient")}
        visits = {e["resource"]["identifier"][0]["value"]: patients[e["resource"]["subject"]["reference"]]
                  for e in _of(b, "Encounter")}
        assert visits == {"V2026-0101": "BENNANI", "V2026-0102": "TAZI"}
        assert {e["resource"]["status"] for e in _of(b, "Encounter")} == {"in-progress"}  # from PV1-2, not A17

    def test_a47_pairs_each_new_identifier_with_its_own_old_one(self, converter: Converter) -> None:
        """Two PID/MRG pairs: each surviving Patient replaces its own MRG-1 record, never the other's."""
        b = orjson.loads(_convert(converter, FIXTURES / "ADT-A47-02.hl7"))
        links = [(e["fullUrl"], e["resource"]["link"]) for e in _of(b, "Patient")]
        survivors = [(u, lk) for u, lk in links if lk[0]["type"] == "replaces"]
        assert len(survivors) == 2 and all(len(lk) == 1 for _, lk in links)
        for url, lk in survivors:
            merged = next(x for x in _of(b, "Patient") if x["fullUrl"] == lk[0]["other"]["reference"])
            assert merged["resource"]["link"] == [{"type": "replaced-by", "other": {"reference": url}}]

    def test_a45_moves_every_visit_to_the_pid_patient(self, converter: Converter) -> None:
        b = orjson.loads(_convert(converter, FIXTURES / "ADT-A45-02.hl7"))
        (patient,) = _of(b, "Patient")
        encounters = _of(b, "Encounter")
        assert len(encounters) == 2
        assert all(e["resource"]["subject"]["reference"] == patient["fullUrl"] for e in encounters)

    def test_a60_iam_allergies_and_a_deleted_one(self, converter: Converter) -> None:
        """IG IAM[AllergyIntolerance]; IAM-6 D (delete) is entered-in-error without clinicalStatus (ait-2)."""
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a60-allergies.hl7"))
        added, deleted = (e["resource"] for e in _of(b, "AllergyIntolerance"))
        assert added["clinicalStatus"]["coding"][0]["code"] == "active" and added["criticality"] == "high"
        assert added["category"] == ["medication"] and added["reaction"][0]["manifestation"][0]["text"] == "urticaire"
        assert "clinicalStatus" not in deleted
        assert deleted["verificationStatus"]["coding"][0]["code"] == "entered-in-error"

    def test_a54_new_attending_without_a_status_from_the_trigger(self, converter: Converter) -> None:
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a54-attending.hl7"))
        enc = _of(b, "Encounter")[0]["resource"]
        assert enc["status"] == "in-progress"  # PV1-2 I: A54 is not in the trigger → status map
        assert [p["type"][0]["coding"][0]["code"] for p in enc["participant"]] == ["ATND"]

    def test_a24_links_the_two_records_both_ways(self, converter: Converter) -> None:
        """A24: two Patients, each `link.type = seealso` the other (R4 link-type), the visit with the first PID."""
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a24-link.hl7"))
        first, second = _of(b, "Patient")
        assert first["resource"]["link"] == [{"type": "seealso", "other": {"reference": second["fullUrl"]}}]
        assert second["resource"]["link"] == [{"type": "seealso", "other": {"reference": first["fullUrl"]}}]
        assert all(p["request"]["method"] == "PUT" and "?identifier=" in p["request"]["url"] for p in (first, second))
        (enc,) = _of(b, "Encounter")
        assert enc["resource"]["subject"] == {"reference": first["fullUrl"]}
        assert enc["resource"]["status"] == "in-progress"  # from PV1-2 O: A24 says nothing of the visit

    def test_a24_of_one_record_twice_links_nothing(self, converter: Converter) -> None:
        """The same PID-3 twice is one Patient (merged): it is never linked to itself."""
        raw = (FIXTURES / "ma-a24-link.hl7").read_bytes().replace(b"IPP200077", b"IPP200003")
        b = orjson.loads(converter.convert("adt", parse(decode(raw)), NOW).bundle)
        (patient,) = _of(b, "Patient")
        assert "link" not in patient["resource"]

    def test_a37_writes_both_records_without_the_link(self, converter: Converter) -> None:
        """A37: the same two Patients, replaced (conditional update) without `link`, so the A24's link is gone."""
        linked = orjson.loads(_convert(converter, FIXTURES / "ma-a24-link.hl7"))
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a37-unlink.hl7"))
        patients = _of(b, "Patient")
        assert [p["fullUrl"] for p in patients] == [p["fullUrl"] for p in _of(linked, "Patient")]
        assert [p["request"] for p in patients] == [p["request"] for p in _of(linked, "Patient")]
        assert not any("link" in p["resource"] for p in patients)

    def test_a29_marks_the_person_not_to_be_used(self, converter: Converter) -> None:
        """A29: Patient active false (R4 Patient.active), visit and observations entered-in-error, even with
        PV1-45; a conditional update, never a DELETE, and no shared Practitioner or Location is touched."""
        b = orjson.loads(_convert(converter, FIXTURES / "ma-a29-delete-person.hl7"))
        (patient,) = _of(b, "Patient")
        assert patient["resource"]["active"] is False and patient["request"]["method"] == "PUT"
        assert _of(b, "Encounter")[0]["resource"]["status"] == "entered-in-error"
        assert {o["resource"]["status"] for o in _of(b, "Observation")} == {"entered-in-error"}
        assert all(e["request"]["method"] != "DELETE" for e in b["entry"])
        a28 = (FIXTURES / "ma-a29-delete-person.hl7").read_bytes().replace(b"ADT^A29", b"ADT^A28")
        kept = orjson.loads(converter.convert("adt", parse(decode(a28)), NOW).bundle)
        assert "active" not in _of(kept, "Patient")[0]["resource"]
        assert _of(kept, "Observation")[0]["resource"]["status"] == "final"

    def test_latin1_names_and_moroccan_identifiers(self, converter: Converter) -> None:
        """MSH-18 8859/1 is decoded as Latin-1: French accents survive; CIN (NNMAR) and IPP (PI) kept apart."""
        raw = (FIXTURES / "ma-clinique-latin1.hl7").read_bytes()
        assert "é".encode("latin-1") in raw and "é".encode() not in raw
        b = orjson.loads(_convert(converter, FIXTURES / "ma-clinique-latin1.hl7"))
        pat = _of(b, "Patient")[0]["resource"]
        assert pat["name"][0]["given"] == ["Hélène", "Marie-Thérèse"]
        assert [i["type"]["coding"][0]["code"] for i in pat["identifier"]] == ["PI", "NNMAR"]
        assert _of(b, "AllergyIntolerance")[0]["resource"]["criticality"] == "high"
        cond = _of(b, "Condition")[0]["resource"]
        assert cond["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"

    def test_a28_without_visit_makes_no_encounter(self, converter: Converter) -> None:
        """PV1-2 = N (not applicable) is a registration without a visit: no Encounter."""
        raw = (FIXTURES / "ma-chu-admission.hl7").read_bytes().replace(b"ADT^A01^ADT_A01", b"ADT^A28^ADT_A05")
        raw = raw.replace(b"PV1|1|I|", b"PV1|1|N|")
        b = orjson.loads(converter.convert("adt", parse(decode(raw)), NOW).bundle)
        assert not _of(b, "Encounter") and _of(b, "Patient")


class TestPamFr:
    """IHE PAM FR conventions French HIS software sends in Moroccan hospitals: PID-32 and the ZBE movement."""

    RAW = (FIXTURES / "ma-pam-transfert.hl7").read_bytes()

    def _bundle(self, converter: Converter, raw: bytes) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
        result = converter.convert("adt", parse(decode(raw)), NOW)
        return orjson.loads(result.bundle), result.warnings

    def _zbe(self, **fields: str) -> bytes:
        lines = self.RAW.split(b"\r")
        zbe = next(i for i, ln in enumerate(lines) if ln.startswith(b"ZBE"))
        parts = lines[zbe].decode().split("|")
        for n, value in fields.items():
            parts[int(n[1:])] = value
        lines[zbe] = "|".join(parts).encode()
        return b"\r".join(lines)

    def test_identity_reliability_becomes_the_fr_core_extension(self, converter: Converter) -> None:
        b, _ = self._bundle(converter, self.RAW)
        patient = _of(b, "Patient")[0]["resource"]
        assert patient["extension"] == [{
            "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
            "extension": [{"url": "identityStatus", "valueCoding": {
                "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445", "code": "VALI",
                "display": "Identité validée"}}]}]

    def test_an_unknown_reliability_code_is_reported_and_writes_no_extension(self, converter: Converter) -> None:
        b, warnings = self._bundle(converter, self.RAW.replace(b"|VALI\r", b"|DOUT\r"))
        assert "extension" not in _of(b, "Patient")[0]["resource"]
        assert {"code": "CODE_UNMAPPED", "rule": "PID-32 (IHE PAM FR)", "field": "PID-32",
                "detail": "not in ihe-fr-0445.identity-reliability", "code_map": "ihe-fr-0445.identity-reliability",
                "local_code": "DOUT"} in warnings

    def test_the_movement_is_the_current_location_with_its_own_start(self, converter: Converter) -> None:
        b, _ = self._bundle(converter, self.RAW)
        enc = _of(b, "Encounter")[0]["resource"]
        names = {e["fullUrl"]: e["resource"].get("name") for e in _of(b, "Location")}
        history = [(names[loc["location"]["reference"]], loc["status"], loc.get("period")) for loc in enc["location"]]
        assert history == [("MED 112 1", "completed", None),
                           ("CHIR 204 2", "active", {"start": "2026-11-20T14:30:00+01:00"})]

    def test_a_historic_movement_is_completed(self, converter: Converter) -> None:
        b, _ = self._bundle(converter, self._zbe(f5="Y"))
        assert _of(b, "Encounter")[0]["resource"]["location"][1]["status"] == "completed"

    def test_a_cancelled_movement_writes_no_location(self, converter: Converter) -> None:
        b, _ = self._bundle(converter, self._zbe(f4="CANCEL"))
        locations = _of(b, "Encounter")[0]["resource"]["location"]
        assert [loc["status"] for loc in locations] == ["completed"]  # only PV1-6, the prior location

    def test_without_zbe_pv1_3_is_the_active_location(self, converter: Converter) -> None:
        raw = b"\r".join(ln for ln in self.RAW.split(b"\r") if not ln.startswith(b"ZBE"))
        b, _ = self._bundle(converter, raw)
        locations = _of(b, "Encounter")[0]["resource"]["location"]
        found = sorted((loc["status"], "period" in loc) for loc in locations)
        assert found == [("active", False), ("completed", False)]


class TestIdentifierSystems:
    """PID-3 identifiers the registry knows get its URI and are validated; a bad one is flagged, not dropped."""

    RAW = (FIXTURES / "ma-chu-admission.hl7").read_bytes()

    def _convert(self, converter: Converter, raw: bytes) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
        result = converter.convert("adt", parse(decode(raw)), NOW)
        return orjson.loads(result.bundle), result.warnings

    def test_a_cin_gets_the_registry_uri(self, converter: Converter) -> None:
        b, warnings = self._convert(converter, self.RAW)
        ids = _of(b, "Patient")[0]["resource"]["identifier"]
        assert ids[1]["system"] == "https://fhir.wasla.ma/sid/ma/cin"
        assert not [w for w in warnings if w["code"].startswith("IDENTIFIER_")]

    def test_a_malformed_cin_is_kept_and_flagged_without_its_value(self, converter: Converter) -> None:
        b, warnings = self._convert(converter, self.RAW.replace(b"AB123456^^^MA-DGSN", b"12-34^^^MA-DGSN"))
        assert _of(b, "Patient")[0]["resource"]["identifier"][1]["value"] == "12-34"
        flagged = [w for w in warnings if w["code"] == "IDENTIFIER_SUSPECT"]
        assert flagged == [{"code": "IDENTIFIER_SUSPECT", "rule": "PID-3", "field": "PID-3[*]",
                            "detail": "cin: expected ^[A-Z]{1,2}[0-9]{5,6}$", "identifier_system": "cin"}]
        assert b"12-34" not in orjson.dumps(warnings)

    def test_tag_policy_marks_the_identifier_itself(self, converter: Converter) -> None:
        raw = self.RAW.replace(b"AB123456^^^MA-DGSN", b"12-34^^^MA-DGSN")
        result = converter.convert("adt", parse(decode(raw)), NOW, {"invalid_identifiers": "tag"})
        ident = _of(orjson.loads(result.bundle), "Patient")[0]["resource"]["identifier"][1]
        assert ident["extension"] == [{"url": "https://fhir.wasla.ma/StructureDefinition/identifier-check",
                                       "valueCode": "warning"}]
        plain = converter.convert("adt", parse(decode(raw)), NOW)
        assert "extension" not in _of(orjson.loads(plain.bundle), "Patient")[0]["resource"]["identifier"][1]


@pytest.mark.parametrize("version", ["2.5.1", "2.8"])
def test_a60_notes_stay_with_their_allergy(converter: Converter, version: str) -> None:
    """Each IAM's NTE is that allergy's note (MS ADT_A60.liquid), whatever the version: v2.5.1's ADT_A60 has no
    ADVERSE_REACTION_GROUP, so the message is read with v2.8's shape; before, every allergy got every note."""
    segs = [f"MSH|^~\\&|HIS|CHU|EHR|CHU|20260101120000||ADT^A60^ADT_A60|C1|P|{version}", "EVN|A60|20260101120000",
            "PID|1||123^^^CHU^MR||DOE^JOHN||19800101|M",
            "IAM|1|FA^Food allergy^HL70127|P1^Peanut^L|||A^Add^HL70206|1", "NTE|1||note about peanut",
            "IAM|2|DA^Drug allergy^HL70127|PEN^Penicillin^L|||A^Add^HL70206|2", "NTE|1||note about penicillin"]
    bundle = orjson.loads(converter.convert("adt", parse("\r".join(segs)), NOW).bundle)
    notes = {r["code"]["coding"][0]["code"]: [n["text"] for n in r.get("note", [])]
             for r in (e["resource"] for e in bundle["entry"]) if r["resourceType"] == "AllergyIntolerance"}
    assert notes == {"P1": ["note about peanut"], "PEN": ["note about penicillin"]}
