"""Helpers of the claims tests: a project with a claims channel and destination, a test tariff, and
Bundles of charges as a billing feed's conversion gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.support import make_project

BASE = "https://fhir.wasla.ma"
NGAP = f"{BASE}/CodeSystem/ma-ngap"
NABM = f"{BASE}/CodeSystem/ma-nabm"
INPE = f"{BASE}/sid/ma/inpe"
# TEST VALUES, not a tariff: the public-sector key-letter values a third party transcribed (research note,
# "indicative, do not ship"), used here only so that the hand computations below have numbers.
TEST_TARIFF = ("key_letter,sector,value_mad,valid_from,valid_until,convention,source,status\n"
               "C,public,50.00,2007-05-01,,test,tests only,indicative\n"
               "B,public,0.90,2007-05-01,,test,tests only,indicative\n"
               "Z,public,9.00,2007-05-01,,test,tests only,indicative\n")


def claims_project(tmp: Path, *, outputs: str = "", extra: str = "", tariff: str = TEST_TARIFF,
                   feeds: str = "adt-mllp") -> Path:
    """The shipped project plus a claims channel (`claims-amo`) and destination (`claims`) fed by `feeds`."""
    project = make_project(tmp)
    cfg = project / "config"
    (cfg / "channels" / "claims-amo.yaml").write_text(
        "description: AMO claims\ninput:\n  claims: {}\npipeline: {}\noutput:\n" + (outputs or "  - archive-ndjson\n"))
    (cfg / "destinations" / "claims.yaml").write_text(
        "description: claims stage\nclaims:\n  channel: claims-amo\n  provider_inpe: \"123456780\"\n"
        f"  sector: public\n  tick_s: 0.2\n{extra}route:\n  channels: [{feeds}]\n")
    (project / "nomenclatures" / "ma-tnr").mkdir(exist_ok=True)
    (project / "nomenclatures" / "ma-tnr" / "tariffs.csv").write_text(tariff)
    return project


def entry(resource: dict[str, Any], method: str = "PUT") -> dict[str, Any]:
    rid = resource["id"]
    return {"fullUrl": f"urn:uuid:{rid}", "resource": resource,
            "request": {"method": method, "url": f"{resource['resourceType']}/{rid}"}}


def patient(n: int = 1) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:00000000-0000-5000-8000-00000000000{n}",
            "resource": {"resourceType": "Patient", "id": f"00000000-0000-5000-8000-00000000000{n}",
                         "identifier": [{"system": f"{BASE}/sid/test/pi", "value": f"IPP{n}"}]},
            "request": {"method": "PUT", "url": f"Patient?identifier={BASE}/sid/test/pi|IPP{n}"}}


def practitioner(inpe: str) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:10000000-0000-5000-8000-{inpe:0>12}",
            "resource": {"resourceType": "Practitioner", "id": f"10000000-0000-5000-8000-{inpe:0>12}",
                         "identifier": [{"system": INPE, "value": inpe}]},
            "request": {"method": "PUT", "url": f"Practitioner?identifier={INPE}|{inpe}"}}


def encounter(visit: str = "V1", cls: str = "IMP") -> dict[str, Any]:
    return entry({"resourceType": "Encounter", "id": f"20000000-0000-5000-8000-{visit:0>12}", "status": "in-progress",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
                  "identifier": [{"system": f"{BASE}/sid/test/vn", "value": visit}],
                  "subject": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"}})


def coverage() -> list[dict[str, Any]]:
    org = {"fullUrl": "urn:uuid:30000000-0000-5000-8000-000000000001",
           "resource": {"resourceType": "Organization", "id": "30000000-0000-5000-8000-000000000001",
                        "identifier": [{"value": "CNSS"}], "name": "CNSS"},
           "request": {"method": "PUT", "url": "Organization?identifier=CNSS"}}
    cov = entry({"resourceType": "Coverage", "id": "30000000-0000-5000-8000-000000000002", "status": "active",
                 "subscriberId": "123456789",
                 "beneficiary": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"},
                 "payor": [{"reference": org["fullUrl"]}]})
    return [org, cov]


def charge(tid: str, system: str, code: str, day: str, *, qty: float = 1, kind: str = "CG",
           prescriber: str = "111111118", performer: str = "222222226", visit: str = "V1") -> dict[str, Any]:
    return entry({"resourceType": "ChargeItem", "id": f"40000000-0000-5000-8000-{tid:0>12}", "status": "billable",
                  "identifier": [{"value": tid}],
                  "code": {"coding": [{"system": system, "code": code}]},
                  "subject": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"},
                  "context": {"reference": f"urn:uuid:20000000-0000-5000-8000-{visit:0>12}"},
                  "occurrenceDateTime": day, "quantity": {"value": qty},
                  "extension": [{"url": f"{BASE}/StructureDefinition/charge-transaction-type",
                                 "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0017",
                                                 "code": kind}}],
                  "performer": [{"actor": {"reference": practitioner(performer)["fullUrl"]}},
                                {"function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0912",
                                                          "code": "OP"}]},
                                 "actor": {"reference": practitioner(prescriber)["fullUrl"]}}]})


def bundle(*entries: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)})


def dft(tid: str, system: str, code: str, day: str = "2026-11-03", visit: str = "V1", **kw: Any) -> bytes:
    """The conversion of a DFT^P03 with one FT1: patient, visit, coverage, practitioners, the charge."""
    return bundle(patient(), encounter(visit), *coverage(), practitioner("111111118"), practitioner("222222226"),
                  charge(tid, system, code, day, visit=visit, **kw))
