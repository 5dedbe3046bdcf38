"""Claims end to end on RabbitMQ and PostgreSQL, to the real FHIR server (../shared/tools/fhir-server):
HL7 v2 billing over MLLP → the claims stage → one FHIR Claim, checked by hand and by fhir-validate; a
visit sent twice makes no second Claim; a kill -9 of the worker loses no charge and doubles none."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from engine.store import Journal
from tests.delivery_support import send_all
from tests.engine.claims.claims_support import claims_project
from tests.fhirserver import server_search
from tests.support import TOOLS, free_port, start_engine, stop_engine, wait_port

_IN1_49 = 49


def _reset(fhir_base: str) -> None:
    httpx.post(fhir_base.removesuffix("/fhir") + "/_admin/reset", timeout=30).raise_for_status()


def _head(mtype: str, control: str, when: str = "20261103100000") -> str:
    return (f"MSH|^~\\&|HIS|CHU-IBN-SINA|WASLA|MS|{when}||{mtype}|{control}|P|2.5\r"
            f"EVN|{mtype.split('^')[1]}|{when}\r"
            "PID|1||IPP000001^^^CHU-IBN-SINA^PI||ALAMI^Karim^^^^^L||19850214|M||||||||||ACC000001^^^CHU-IBN-SINA^AN\r")


def _pv1(discharged: str = "") -> str:
    fields = ["PV1", "1", "I", "CARDIO^101^A^CHU-IBN-SINA"] + [""] * 15 + ["V000001^^^CHU-IBN-SINA^VN"]
    fields += [""] * (44 - len(fields)) + ["20261103090000", discharged]
    return "|".join(fields) + "\r"


def _in1() -> str:
    fields = ["IN1", "1", "AMO^AMO", "CNSS^^^AMO^NIIP", "CNSS"] + [""] * (_IN1_49 - 5) + ["123456789^^^CNSS^SB"]
    return "|".join(fields) + "\r"


def adt(trigger: str, control: str, discharged: str = "") -> bytes:
    return (_head(f"ADT^{trigger}^ADT_A01", control) + _pv1(discharged) + _in1()).encode()


def dft(control: str, tid: str, code: str, system: str, day: str, kind: str = "CG", qty: str = "1") -> bytes:
    """A DFT^P03 of one act: FT1-20 the doctor who performed it, FT1-21 the prescriber (INPE)."""
    ft1 = ["FT1", "1", tid, "", day, "", kind, f"{code}^^{system}", "", "", qty] + [""] * 8 + [
        "I10^Hypertension essentielle^I10", "222222226^BENNANI^Amina^^^^^^INPE^^^^PRN",
        "111111118^TAZI^Omar^^^^^^INPE^^^^PRN"]
    return (_head("DFT^P03^DFT_P03", control) + _pv1() + "|".join(ft1) + "\r" + _in1()
            + f"DG1|1||I10^Hypertension essentielle^I10||{day}|F\r").encode()


def visit(prefix: str) -> list[bytes]:
    """Admission, a consultation C, a lab panel B120, an X-ray Z15, a credit reversing the X-ray, discharge."""
    return [adt("A01", f"{prefix}1"),
            dft(f"{prefix}2", "T0001", "C", "NGAP", "20261103"),
            dft(f"{prefix}3", "T0002", "B120", "NABM", "20261103"),
            dft(f"{prefix}4", "T0003", "Z15", "NGAP", "20261104"),
            dft(f"{prefix}5", "T0004", "Z15", "NGAP", "20261104", kind="CD"),
            adt("A03", f"{prefix}6", discharged="20261105100000")]


# Hand computation with the test tariff of claims_support (C 50.00, B 0.90, Z 9.00 MAD, public sector):
#   C     1 × (50.00 × 1)   =  50.00
#   B120  1 × (0.90 × 120)  = 108.00
#   Z15   1 × (9.00 × 15) − the same credited back = nothing to bill
EXPECTED_ITEMS = [("B120", 1.0, 108.0, 108.0), ("C", 1.0, 50.0, 50.0)]
EXPECTED_TOTAL = float(Decimal("50.00") + Decimal("108.00"))


def _project(tmp: Path, fhir_base: str, broker: str, store: str) -> tuple[Path, int]:
    port = free_port()
    project = claims_project(tmp, outputs="  - fhir\n", feeds="billing")
    cfg = project / "config"
    (cfg / "destinations" / "fhir.yaml").write_text(
        f"description: insurer FHIR server\nfhir:\n  base_url: {fhir_base}\n  timeout_s: 20\n")
    (cfg / "channels" / "billing.yaml").write_text(
        f"description: billing feed\ninput:\n  mllp:\n    host: 127.0.0.1\n    port: {port}\n"
        "pipeline:\n  mappings:\n    ADT^*: adt\n    DFT^*: dft\noutput:\n  - fhir\n")
    main = cfg / "wasla.yaml"
    main.write_text(main.read_text().replace("url: memory://", f"url: {broker}")
                    .replace("url: sqlite:///var/wasla.db", f"url: {store}"))
    return project, port


def _claims_on_server(fhir_base: str) -> list[dict[str, Any]]:
    return server_search(fhir_base, "Claim", "_total=accurate")


def _wait_claim(journal: Journal, version: int = 1, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in journal.claims.search() if r.version >= version]
        sent = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim" and m.status == "delivered"]
        if rows and len(sent) >= version:
            return rows[0].id
        time.sleep(0.3)
    raise AssertionError(f"no claim delivered: {[(r.status, r.reasons) for r in journal.claims.search()]}")


def _items(claim: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    return [(i["productOrService"]["coding"][0]["code"], i["quantity"]["value"], i["unitPrice"]["value"],
             i["net"]["value"]) for i in claim["item"]]


def test_a_visit_becomes_one_valid_claim_on_the_server_and_a_resend_makes_no_second(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """A visit becomes one valid claim on the server and a resend makes no second."""
    _reset(fhir_base)
    project, port = _project(tmp_path, fhir_base, rabbitmq_url, postgres_url)
    proc = start_engine(project)
    journal = Journal(postgres_url)
    try:
        wait_port(port, proc=proc)
        assert send_all(port, visit("A")) == {"AA": 6}
        cid = _wait_claim(journal)
        [claim] = _claims_on_server(fhir_base)
        assert claim["id"] == cid
        assert _items(claim) == EXPECTED_ITEMS
        assert claim["total"] == {"value": EXPECTED_TOTAL, "currency": "MAD"}
        assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "I10"
        coverage = httpx.get(f"{fhir_base}/{claim['insurance'][0]['coverage']['reference']}", timeout=10).json()
        assert coverage["subscriberId"] == "123456789"
        insurer = httpx.get(f"{fhir_base}/{claim['insurer']['reference']}", timeout=10).json()
        assert insurer["identifier"][0]["value"] == "CNSS"
        out = tmp_path / "claim.json"
        out.write_bytes(orjson.dumps(claim))
        check = subprocess.run([str(TOOLS / "fhir-validate"), str(out)], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        # the same visit again (new control ids): the same Claim, nothing new sent
        assert send_all(port, visit("B")) == {"AA": 6}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([m for m in journal.messages.search() if m.status in (
                "delivered", "filtered", "failed")]) < 13:
            time.sleep(0.3)
        time.sleep(2)
        assert len(_claims_on_server(fhir_base)) == 1
        assert [m.message_type for m in journal.messages.search()].count("FHIR^Claim") == 1
        row = journal.claims.get(cid)
        assert row is not None and row.version == 1 and row.status == "submitted"
    finally:
        stop_engine(proc)
        journal.close()


def test_kill_9_of_the_worker_between_charges_loses_nothing_and_doubles_nothing(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """Intake in one process, transform and deliver (the claims stage) in another; the worker is killed -9
    after the second DFT is in the claim, restarted, and the visit finishes: every item once."""
    _reset(fhir_base)
    project, port = _project(tmp_path, fhir_base, rabbitmq_url, postgres_url)
    intake = start_engine(project, roles=("intake",), name="intake")
    worker = start_engine(project, roles=("transform", "deliver"), name="worker")
    journal = Journal(postgres_url)
    try:
        wait_port(port, proc=intake)
        msgs = visit("K")
        assert send_all(port, msgs[:3]) == {"AA": 3}  # A01, DFT C, DFT B120
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = journal.claims.search()
            if rows and len([p for p in journal.claims.parts(rows[0].id)
                             if p["resource"]["resourceType"] == "ChargeItem"]) == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the second DFT never reached the claim")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert send_all(port, msgs[3:]) == {"AA": 3}  # Z15, its credit, discharge: taken while no worker runs
        worker = start_engine(project, roles=("transform", "deliver"), name="worker2")
        cid = _wait_claim(journal)
        [claim] = _claims_on_server(fhir_base)
        assert claim["id"] == cid and _items(claim) == EXPECTED_ITEMS
        assert claim["total"]["value"] == EXPECTED_TOTAL
        charges = [p for p in journal.claims.parts(cid) if p["resource"]["resourceType"] == "ChargeItem"]
        assert len(charges) == 4  # each FT1 once, whatever was redelivered
    finally:
        stop_engine(worker)
        stop_engine(intake)
        journal.close()


CSV_HEADER = ("numero_sejour;numero_compte;ipp;nom;prenom;date_naissance;sexe;numero_transaction;type_transaction;"
              "date_acte;code_acte;systeme_acte;quantite;prix_unitaire;inpe_executant;inpe_prescripteur;organisme;"
              "immatriculation;diagnostic\n")


def _csv_row(tid: str, kind: str, day: str, code: str, system: str) -> str:
    return (f"V000001;ACC000001;IPP000001;ALAMI;Karim;14/02/1985;M;{tid};{kind};{day};{code};{system};1;;"
            "222222226;111111118;CNSS;123456789;I10\n")


def _embedded(tmp: Path, csv: bool = False) -> tuple[Path, int]:
    """The billing channel on the embedded broker and SQLite; with `csv`, a CSV drop channel of the same
    facility (CHU-IBN-SINA) feeding the claims stage too. Claims go to an NDJSON archive."""
    port = free_port()
    feeds = "billing, billing-csv" if csv else "billing"
    project = claims_project(tmp, feeds=feeds)
    cfg = project / "config"
    (cfg / "channels" / "billing.yaml").write_text(
        f"description: billing feed\ninput:\n  mllp:\n    host: 127.0.0.1\n    port: {port}\n"
        "pipeline:\n  mappings:\n    ADT^*: adt\n    DFT^*: dft\noutput:\n  - archive-ndjson\n")
    if csv:
        (cfg / "channels" / "billing-csv.yaml").write_text(
            "description: billing export\ninput:\n  csv_drop:\n    folder: var/in/billing\n    csv_map: csv_billing\n"
            "    sender: CHU-IBN-SINA\n    settle_s: 0.2\n    poll_s: 0.2\npipeline: {}\noutput:\n  - archive-ndjson\n")
        (project / "var" / "in" / "billing").mkdir(parents=True)
    return project, port


def _claims_sent(journal: Journal, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim"]
        if rows:
            time.sleep(1)  # nothing else may follow
            rows = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim"]
            return [orjson.loads(journal.messages.get(m.id).raw)["entry"][0]["resource"]  # type: ignore[union-attr]
                    for m in sorted(rows, key=lambda m: m.received_at)]
        time.sleep(0.3)
    raise AssertionError(f"no claim sent: {[(r.status, r.reasons) for r in journal.claims.search()]}")


def test_the_same_visit_as_a_csv_billing_export_gives_the_same_claim(tmp_path: Path) -> None:
    """The same visit as a csv billing export gives the same claim."""
    # one installation's secret (claim ids are keyed hashes of the visit: not enumerable from outside)
    secret = {"WASLA_PATIENT_KEY_SECRET": "test-installation-secret-0123456789"}
    project, port = _embedded(tmp_path / "hl7")
    with_hl7 = start_engine(project, env=secret)
    try:
        wait_port(port, proc=with_hl7)
        assert send_all(port, visit("A")) == {"AA": 6}
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        [from_hl7] = _claims_sent(journal)
        journal.close()
    finally:
        stop_engine(with_hl7)
    project, port = _embedded(tmp_path / "csv", csv=True)
    with_csv = start_engine(project, env=secret)
    try:
        wait_port(port, proc=with_csv)
        msgs = visit("C")
        assert send_all(port, msgs[:1]) == {"AA": 1}  # the admission from the HIS
        rows = [_csv_row("T0001", "CG", "03/11/2026", "C", "NGAP"),
                _csv_row("T0002", "CG", "03/11/2026", "B120", "NABM"),
                _csv_row("T0003", "CG", "04/11/2026", "Z15", "NGAP"),
                _csv_row("T0004", "CD", "04/11/2026", "Z15", "NGAP")]
        (project / "var" / "in" / "billing" / "actes.csv").write_text(CSV_HEADER + "".join(rows))
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                p["resource"]["resourceType"] == "ChargeItem" for c in journal.claims.search()
                for p in journal.claims.parts(c.id)):
            time.sleep(0.3)
        time.sleep(1)
        assert send_all(port, msgs[-1:]) == {"AA": 1}  # the discharge from the HIS closes it
        [from_csv] = _claims_sent(journal)
        journal.close()
    finally:
        stop_engine(with_csv)
    assert from_csv["id"] == from_hl7["id"]
    assert _items(from_csv) == _items(from_hl7) == EXPECTED_ITEMS
    assert from_csv["total"] == from_hl7["total"]
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in from_csv["diagnosis"]] == ["I10"]


def test_an_unknown_act_parks_the_claim_and_adding_it_to_the_act_table_releases_it(tmp_path: Path) -> None:
    """A NABM act code the act table lacks: the claim is parked with ACT_UNKNOWN at that item; once the
    laboratory's act is added to nomenclatures/ma-nabm/codes.csv the running engine sends it by itself."""
    project, port = _embedded(tmp_path)
    proc = start_engine(project)
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    try:
        wait_port(port, proc=proc)
        msgs = [adt("A01", "U1"), dft("U2", "T0001", "C", "NGAP", "20261103"),
                dft("U3", "T0002", "0552", "NABM", "20261103"), adt("A03", "U4", discharged="20261105100000")]
        assert send_all(port, msgs) == {"AA": 4}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not journal.claims.search(statuses=("parked",)):
            time.sleep(0.3)
        [row] = journal.claims.search(statuses=("parked",))
        assert [(r["code"], r["where"]) for r in row.reasons] == [("ACT_UNKNOWN", "item[0].productOrService")]
        assert "ma-nabm" in row.reasons[0]["fix"]
        acts = project / "nomenclatures" / "ma-nabm" / "codes.csv"
        # TEST VALUE, not the NABM: an act of 40 B for the test
        acts.write_text(acts.read_text().rstrip("\n") + "\n0552,Glycémie (test value),B,40\n")
        [claim] = _claims_sent(journal)
        assert _items(claim) == [("0552", 1.0, 36.0, 36.0), ("C", 1.0, 50.0, 50.0)]  # 40 × 0.90; 1 × 50.00
        assert journal.claims.get(row.id).status == "submitted"  # type: ignore[union-attr]
    finally:
        stop_engine(proc)
        journal.close()


def test_kill_9_of_the_worker_as_the_claim_is_decided_sends_it_once(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """The worker is killed -9 the moment the discharge closes the claim (deciding, journaling or publishing
    the Claim): restarted, it sends the Claim once, whichever of those steps the kill interrupted (a Claim
    journaled but never published is published by the claims stage's next turns)."""
    _reset(fhir_base)
    project, port = _project(tmp_path, fhir_base, rabbitmq_url, postgres_url)
    intake = start_engine(project, roles=("intake",), name="intake")
    worker = start_engine(project, roles=("transform", "deliver"), name="worker")
    journal = Journal(postgres_url)
    try:
        wait_port(port, proc=intake)
        assert send_all(port, visit("D")) == {"AA": 6}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r.closed for r in journal.claims.search()):
            time.sleep(0.01)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        worker = start_engine(project, roles=("transform", "deliver"), name="worker2")
        cid = _wait_claim(journal, timeout=150)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _claims_on_server(fhir_base):
            time.sleep(0.3)
        [claim] = _claims_on_server(fhir_base)
        assert claim["id"] == cid and _items(claim) == EXPECTED_ITEMS
        sent = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim"]
        assert len(sent) == 1 and journal.claims.get(cid).version == 1  # type: ignore[union-attr]
    finally:
        stop_engine(worker)
        stop_engine(intake)
        journal.close()
