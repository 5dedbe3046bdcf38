"""A copy of the shipped nomenclatures with TEST rows in the act tables and tariffs (labelled as test values,
not tariffs), and a Claim Bundle that passes every rule of the shipped rules.yaml against them."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.claims import Rules, TariffBook
from tests.support import ROOT

__all__ = ["BASE", "book", "claim_bundle", "nomenclatures", "rules", "valid_bundle"]

BASE = "https://fhir.wasla.ma"
FOLDERS = ("ma-lettres-cles", "ma-amo", "identifier-systems", "ma-ngap", "ma-nabm", "ma-tnr")
TEST = "TEST VALUE (not a tariff)"

# Test values only: no row here is a Moroccan tariff.
TARIFFS = f"""key_letter,sector,value_mad,valid_from,valid_until,convention,source,status
C,public,50.00,2020-01-01,2025-12-31,{TEST},{TEST},indicative
C,public,60,2026-01-01,,{TEST},{TEST},indicative
B,public,"0,90",2020-01-01,,{TEST},{TEST},indicative
B,private,1.10,2020-01-01,,{TEST},{TEST},indicative
K,private,13.5,2020-01-01,,{TEST},{TEST},indicative
Z,public,9,2020-01-01,,{TEST},{TEST},indicative
Cs,public,75,2020-01-01,,{TEST},{TEST},indicative
KE,public,10,2020-01-01,,{TEST},{TEST},indicative
D,public,0.125,2020-01-01,,{TEST},{TEST},indicative
"""
NGAP = """code,display,key_letter,coefficient
TEST-ECHO,TEST act: echography,KE,"1,5"
TEST-CONS,TEST act: consultation,C,1
"""
NABM = """code,display,key_letter,coefficient
TEST-GLY,TEST act: glycaemia,B,30
"""


@pytest.fixture
def nomenclatures(tmp_path: Path) -> Path:
    """tmp_path/nomenclatures: the shipped folders the book reads, with the TEST rows above."""
    out = tmp_path / "nomenclatures"
    for name in FOLDERS:
        shutil.copytree(ROOT / "nomenclatures" / name, out / name)
    (out / "ma-tnr" / "tariffs.csv").write_text(TARIFFS, encoding="utf-8")
    (out / "ma-ngap" / "codes.csv").write_text(NGAP, encoding="utf-8")
    (out / "ma-nabm" / "codes.csv").write_text(NABM, encoding="utf-8")
    return out


@pytest.fixture
def book(nomenclatures: Path) -> TariffBook:
    return TariffBook.load(nomenclatures, base=BASE)


@pytest.fixture
def rules() -> Rules:
    return Rules.load(ROOT / "nomenclatures" / "ma-tnr" / "rules.yaml",
                      schema=ROOT / "config" / "schema" / "claim-rules.schema.json")


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}


def _money(value: float) -> dict[str, Any]:
    return {"value": value, "currency": "MAD"}


def claim_bundle(*, patient_name: str = "Test Patient", birth_date: str = "1980-01-01",
                 provider_inpe: str = "123456789", practitioner_inpe: str = "987654321",
                 registration: str = "111222333",
                 insurer: str = "CNSS") -> dict[str, Any]:
    """A Claim transaction Bundle (contract section 4) that the shipped rules accept with the TEST tariffs: a
    consultation in NGAP's written form `C` (60.00, public sector, 2026) and two TEST-GLY of the NABM table
    (B × 30 at 0.90 = 27.00 each); total 114.00."""
    patient = {"resourceType": "Patient", "name": [{"text": patient_name}], "birthDate": birth_date}
    org = {"resourceType": "Organization", "identifier": [{"system": f"{BASE}/sid/ma/inpe", "value": provider_inpe}]}
    amo = {"resourceType": "Organization", "identifier": [{"system": f"{BASE}/sid/ma/amo", "value": insurer}]}
    doc = {"resourceType": "Practitioner", "name": [{"text": "Dr " + patient_name}],
           "identifier": [{"system": f"{BASE}/sid/ma/inpe", "value": practitioner_inpe}]}
    coverage = {"resourceType": "Coverage", "status": "active", "subscriberId": registration,
                "beneficiary": {"reference": "urn:uuid:patient"},
                "identifier": [{"system": f"{BASE}/sid/ma/cnss-immatriculation", "value": registration}]}
    ngap, nabm = f"{BASE}/CodeSystem/ma-ngap", f"{BASE}/CodeSystem/ma-nabm"
    claim = {
        "resourceType": "Claim", "id": "c1", "identifier": [{"system": f"{BASE}/sid/ma/claim", "value": "1"}],
        "status": "active", "use": "claim",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
        "patient": {"reference": "urn:uuid:patient"},
        "billablePeriod": {"start": "2026-03-01", "end": "2026-03-02"}, "created": "2026-03-03",
        "provider": {"reference": "urn:uuid:provider"}, "insurer": {"reference": "urn:uuid:insurer"},
        "priority": {"coding": [{"code": "normal"}]},
        "careTeam": [{"sequence": 1, "provider": {"reference": "urn:uuid:doc"}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "urn:uuid:coverage"}}],
        "item": [
            {"sequence": 1, "productOrService": {"coding": [{"system": ngap, "code": "C"}]},
             "servicedDate": "2026-03-01", "quantity": {"value": 1}, "unitPrice": _money(60.00),
             "net": _money(60.00), "careTeamSequence": [1]},
            {"sequence": 2, "productOrService": {"coding": [{"system": nabm, "code": "TEST-GLY"}]},
             "servicedDate": "2026-03-02", "quantity": {"value": 2}, "unitPrice": _money(27.00),
             "net": _money(54.00), "careTeamSequence": [1]},
        ],
        "total": _money(114.00),
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Claim/c1", "resource": claim, "request": {"method": "PUT", "url": "Claim/c1"}},
        _entry("urn:uuid:patient", patient), _entry("urn:uuid:provider", org), _entry("urn:uuid:insurer", amo),
        _entry("urn:uuid:doc", doc), _entry("urn:uuid:coverage", coverage)]}


@pytest.fixture
def valid_bundle() -> dict[str, Any]:
    return copy.deepcopy(claim_bundle())
