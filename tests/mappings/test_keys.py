"""Business keys mean what they say: every number is scoped by who issued it (issue 22).

Resource ids are UUIDv5 of business keys; a key without its namespace merges different people's data.
Expected behaviour from the IG's identifier rows (CX[Identifier]: CX.4 → system; EI[Identifier]:
EI.2/EI.3 → system) and the engine's README ("Resource ids").
"""

from __future__ import annotations

import orjson
import pytest

from channels.csvfile import Layout, Row, rows
from engine.errors import MappingError
from engine.hl7v2 import parse
from engine.mapping import Converter
from engine.mapping.csvmap import find_csvmap
from tests.mappings.conftest import NOW
from tests.support import ROOT


def _lab(app: str, facility: str, ipp: str, name: str, filler: str = "2000", placer: str = "1000") -> str:
    return "\r".join([
        f"MSH|^~\\&|{app}|{facility}|HIS|CHU|20261201101010+0100||ORU^R01^ORU_R01|CTL1|P|2.5.1",
        f"PID|1||{ipp}^^^^PI||{name}^TEST||19800101|M",
        f"ORC|RE|{placer}|{filler}",
        f"OBR|1|{placer}|{filler}|GLU^Glucose^L|||20261201090000|||||||||||||||20261201100000|||F",
        "OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|3.9-6.1|N|||F",
    ])


def _bundle(converter: Converter, text: str, policy: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    return orjson.loads(converter.convert("oru_r01", parse(text), NOW, policy).bundle)


def _ids(bundle: dict) -> dict[str, set[str]]:  # type: ignore[type-arg]
    out: dict[str, set[str]] = {}
    for e in bundle["entry"]:
        r = e["resource"]
        out.setdefault(r["resourceType"], set()).add(e["request"]["url"] if e["request"]["method"] == "PUT"
                                                      else e["request"]["ifNoneExist"])
    return out


def test_two_labs_two_patients_same_order_numbers_share_no_resource(converter: Converter) -> None:
    a = _ids(_bundle(converter, _lab("LABA", "CLINIQUE-A", "1234", "ALPHA")))
    b = _ids(_bundle(converter, _lab("LABB", "CLINIQUE-B", "1234", "BETA")))
    for rtype in set(a) | set(b):
        if rtype == "Provenance":
            continue
        assert not (a.get(rtype, set()) & b.get(rtype, set())), rtype
    assert "ServiceRequest" in a and "DiagnosticReport" in a and "Observation" in a


def test_the_same_lab_twice_keeps_its_ids(converter: Converter) -> None:
    """A corrected result is the same resource: same sender, same order, same code."""
    first = _ids(_bundle(converter, _lab("LABA", "CLINIQUE-A", "1234", "ALPHA")))
    again = _ids(_bundle(converter, _lab("LABA", "CLINIQUE-A", "1234", "ALPHA").replace("|5.4|", "|5.6|")))
    assert first == again


def test_an_order_number_is_scoped_by_its_assigning_authority_first(converter: Converter) -> None:
    """EI.2 names the authority: two applications of one facility sending the same lab's number agree."""
    one = _lab("APP1", "CHU", "1234", "ALPHA", filler="2000^LABCENTRAL")
    two = _lab("APP2", "CHU", "1234", "ALPHA", filler="2000^LABCENTRAL")
    assert _ids(_bundle(converter, one))["DiagnosticReport"] == _ids(_bundle(converter, two))["DiagnosticReport"]
    unscoped = _lab("APP2", "CHU", "1234", "ALPHA")
    assert _ids(_bundle(converter, one))["DiagnosticReport"] != _ids(_bundle(converter, unscoped))["DiagnosticReport"]


def test_an_identifier_without_any_namespace_fails_instead_of_merging_patients(converter: Converter) -> None:
    text = _lab("", "", "1234", "ALPHA", filler="2000^LABX", placer="1000^LABX")
    with pytest.raises(MappingError, match=r"PID-3\[1\] has no namespace"):
        converter.convert("oru_r01", parse(text), NOW)


def test_the_channel_sender_scopes_identifiers_without_cx4(converter: Converter) -> None:
    text = _lab("", "", "1234", "ALPHA", filler="2000^LABX", placer="1000^LABX")
    bundle = _bundle(converter, text, {"sender": "HOPITAL-X"})
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["request"]["ifNoneExist"] == "identifier=https://fhir.wasla.ma/sid/hopital-x/pi|1234"
    other = _bundle(converter, text, {"sender": "HOPITAL-Y"})
    assert _ids(bundle)["Patient"] != _ids(other)["Patient"]


def test_an_unscoped_order_number_without_sender_fails(converter: Converter) -> None:
    text = _lab("", "", "1234^^^HOPA", "ALPHA")
    with pytest.raises(MappingError, match="no namespace"):
        converter.convert("oru_r01", parse(text), NOW)


def test_a_cx_without_type_takes_the_channel_default_with_a_warning(converter: Converter) -> None:
    text = _lab("LABA", "CLINIQUE-A", "1234", "ALPHA").replace("1234^^^^PI", "1234")
    conv = converter.convert("oru_r01", parse(text), NOW, {"default_identifier_type": "PI"})
    patient = next(e["resource"] for e in orjson.loads(conv.bundle)["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "PI"
    assert patient["identifier"][0]["system"].endswith("/clinique-a/pi")
    assert any(w["code"] == "IDENTIFIER_TYPE_DEFAULTED" for w in conv.warnings)
    assert "1234" not in orjson.dumps(conv.warnings).decode()


# The lab of mappings/csv_lab/fixtures/resultats.csv, request LAB-6001, sending the same results as ORU^R01:
# OBX in the other order, set IDs different, and the order number scoped by the lab (OBR-3.2), as the CSV map does.
ORU_OF_THE_CSV = "\r".join([
    "MSH|^~\\&|SIL|LABO-AL-AMAL|WASLA|WASLA|20261121080000||ORU^R01^ORU_R01|ORU-6001|P|2.5.1",
    "PID|1||IPP445566^^^LABO-AL-AMAL^PI||ZZTEST^Amina||19900101|F",
    "ORC|RE||LAB-6001^LABO-AL-AMAL|||CM",
    "OBR|1||LAB-6001^LABO-AL-AMAL|BILAN^Bilan de laboratoire^L|||202611210700|||||||||||||||||F",
    "OBX|7|NM|CREA^Créatinine^L||9.8|mg/L^mg/L^L|6-12||||F|||202611210700",
    "OBX|8|NM|GLY^Glycémie à jeun^L||5,40|mmol/l^mmol/l^L|3.9-6.1||||F|||202611210700",
])


def test_the_same_results_as_oru_and_as_csv_have_the_same_observation_ids(converter: Converter) -> None:
    csvmap = find_csvmap(ROOT / "mappings", "csv_lab", ROOT / "config/schema")
    group = [r.values for r in rows(ROOT / "mappings/csv_lab/fixtures/resultats.csv", Layout())
             if isinstance(r, Row) and r.values["numero_demande"] == "LAB-6001"]
    assert len(group) == 2
    er7 = csvmap.to_v2(group, sender="LABO-AL-AMAL", application="CSV", control_id="LAB-6001",
                       date_formats=("%d/%m/%Y %H:%M", "%d/%m/%Y"))
    from_csv = _bundle(converter, er7)
    from_oru = _bundle(converter, ORU_OF_THE_CSV)

    def observations(b: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {e["resource"]["code"]["coding"][0]["code"]: e["resource"]["id"] for e in b["entry"]
                if e["resource"]["resourceType"] == "Observation"}

    assert observations(from_csv) == observations(from_oru)
    assert set(observations(from_csv)) == {"GLY", "CREA"}
    # one row missing from the file: the other result keeps its id
    alone = _bundle(converter, csvmap.to_v2(group[1:], sender="LABO-AL-AMAL", application="CSV",
                                            control_id="LAB-6001", date_formats=("%d/%m/%Y %H:%M", "%d/%m/%Y")))
    assert observations(alone)["CREA"] == observations(from_csv)["CREA"]


def _csv_and_oru(converter: Converter, order: str) -> tuple[bytes, bytes]:
    """Request `order` as the lab's CSV export (through csv_lab, with its create_only) and as its ORU, whose
    report is richer: a real panel code (OBR-4) the CSV does not have."""
    csvmap = find_csvmap(ROOT / "mappings", "csv_lab", ROOT / "config/schema")
    group = [dict(r.values, numero_demande=order) for r in rows(ROOT / "mappings/csv_lab/fixtures/resultats.csv",
                                                                 Layout())
             if isinstance(r, Row) and r.values["numero_demande"] == "LAB-6001"]
    er7 = csvmap.to_v2(group, sender="LABO-AL-AMAL", application="CSV", control_id=order,
                       date_formats=("%d/%m/%Y %H:%M", "%d/%m/%Y"))
    from_csv = converter.convert("oru_r01", parse(er7), NOW,
                                 requests=dict.fromkeys(csvmap.create_only, "conditional-create")).bundle
    oru = ORU_OF_THE_CSV.replace("LAB-6001", order).replace("BILAN^Bilan de laboratoire^L", "24323-8^Panel^LN")
    return from_csv, converter.convert("oru_r01", parse(oru), NOW).bundle


def test_a_csv_export_after_the_oru_leaves_the_oru_report_and_order_as_they_are(
        converter: Converter, fhir_base: str) -> None:
    """The thinner CSV report used to replace the ORU's (same id, PUT). The ORU stays the master of the report and
    the order (PUT by id); the CSV map creates them only where none exists (create_only: a conditional create on
    their identifier): on a real FHIR server, ORU then CSV leaves one DiagnosticReport with the ORU's panel code,
    one ServiceRequest, and the two Observations once (same ids). The other order (the CSV first, then an ORU of
    the same request) gives two reports with one identifier: the CSV's was created with a server id; see the
    README's csv_lab row."""
    import uuid

    import httpx

    order = f"LAB-{uuid.uuid4().hex[:10]}"
    from_csv, from_oru = _csv_and_oru(converter, order)
    for bundle in (from_oru, from_csv):  # the ORU first, then the lab's CSV export of the same request
        r = httpx.post(fhir_base, content=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=30)
        assert r.status_code == 200, r.text[:500]

    def found(kind: str, search: str) -> list[dict]:  # type: ignore[type-arg]
        r = httpx.get(f"{fhir_base}/{kind}", params={"identifier": search}, timeout=30)
        return [e["resource"] for e in r.json().get("entry", [])]

    ident = f"https://fhir.wasla.ma/sid/labo-al-amal/fill|{order}"
    (report,) = found("DiagnosticReport", ident)
    assert report["code"]["coding"][0]["code"] == "24323-8"
    assert len(found("ServiceRequest", ident)) == 1
    assert len(report["result"]) == 2


def test_the_channel_sender_scopes_an_unscoped_order_number_when_msh3_msh4_are_empty(converter: Converter) -> None:
    """An EI without EI.2/EI.3 is scoped by MSH-3^MSH-4, else by the channel's sender, as a CX is (issue 25:
    the PPR corpus samples have neither)."""
    text = _lab("", "", "1234^^^HOPA", "ALPHA")
    a = _ids(_bundle(converter, text, {"sender": "HOPITAL-X"}))
    b = _ids(_bundle(converter, text, {"sender": "HOPITAL-Y"}))
    assert a["DiagnosticReport"] != b["DiagnosticReport"]
    scoped = _ids(_bundle(converter, _lab("LAB", "", "1234^^^HOPA", "ALPHA"), {"sender": "HOPITAL-X"}))
    assert scoped["DiagnosticReport"] != a["DiagnosticReport"]   # MSH-3 first, the channel's sender after
