"""Delivery guarantees against a real FHIR server (Medplum's router, ../shared/tools/fhir-server),
RabbitMQ and PostgreSQL: routing, retries through outages, order per patient, no duplicates,
dead letters with the server's OperationOutcome, replay."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from kombu import Connection

from engine.store import Journal
from tests.delivery_support import adt_msg, delivery_project, oru_msg, send_all, wait_final
from tests.fhirserver import FaultProxy, server_count, server_search
from tests.support import WASLA, start_engine, stop_engine, wait_port


def _reset(fhir_base: str) -> None:
    httpx.post(fhir_base.removesuffix("/fhir") + "/_admin/reset", timeout=30).raise_for_status()


def _port(base: str) -> int:
    return int(base.split(":")[2].split("/")[0])


def test_route_types_filter_and_locations_are_journaled(tmp_path: Path, fhir_base: str) -> None:
    """A destination takes only the types its route names; a message nobody takes is `filtered` with why."""
    _reset(fhir_base)
    project, adt_port, _ = delivery_project(tmp_path, fhir_base, extra="route:\n  types: [ADT^A01, ORU^*]\n")
    proc = start_engine(project)
    try:
        wait_port(adt_port, proc=proc)
        assert send_all(adt_port, [adt_msg(1, "A01", "R1", "ONE"), adt_msg(1, "A08", "R2", "TWO")]) == {"AA": 2}
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([r for r in journal.messages.search() if r.status in (
                "delivered", "filtered")]) < 2:
            time.sleep(0.2)
        rows = {r.control_id: r for r in journal.messages.search()}
        assert rows["R1"].status == "delivered"
        assert rows["R2"].status == "filtered"
        assert rows["R2"].reason == "no destination takes it: fhir: type ADT^A08 not in ADT^A01, ORU^*"
        out = journal.outputs.get(rows["R1"].id, "fhir")
        assert out is not None and out.status == "delivered"
        locations = out.location.split()
        # the event's Provenance (EVN, agent: the sending facility by name) and the transformation's, last
        assert [loc.split("/")[0] for loc in locations] == ["Patient", "Encounter", "Provenance", "Location",
                                                            "Provenance"]
        patient = httpx.get(f"{fhir_base}/{locations[0]}", timeout=10).json()
        assert patient["name"][0]["family"] == "ONE"  # the A08 (TWO) was filtered, never sent
        journal.close()
    finally:
        stop_engine(proc)


def test_permanent_4xx_is_a_dead_letter_with_the_outcome_and_replay_delivers_it_once(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """The server refuses a conditional update (two patients share the identifier): dead letter, the
    OperationOutcome kept, the patient's next message held behind it (on_failure: block); once the
    duplicate is merged on the server, `wasla messages replay --dead fhir` delivers both, once, in order."""
    _reset(fhir_base)
    ident = "identifier=https://fhir.wasla.ma/sid/chu-ibn-sina/pi|IPP000007"
    for _ in range(2):  # someone else's duplicate records of the patient
        httpx.post(f"{fhir_base}/Patient", json={"resourceType": "Patient", "identifier": [{
            "system": "https://fhir.wasla.ma/sid/chu-ibn-sina/pi", "value": "IPP000007"}]}, timeout=10)
    assert server_count(fhir_base, "Patient", ident) == 2
    project, adt_port, _ = delivery_project(tmp_path, fhir_base, broker=rabbitmq_url, store=postgres_url,
                                            extra="on_failure: block\n")
    proc = start_engine(project)
    journal = Journal(postgres_url)
    try:
        wait_port(adt_port, proc=proc)
        msgs = [adt_msg(7, "A01", "D1", "FIRST"), adt_msg(7, "A08", "D2", "SECOND"), adt_msg(8, "A01", "D3", "OTHER")]
        assert send_all(adt_port, msgs) == {"AA": 3}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and journal.messages.counts().get("failed", 0) < 1:
            time.sleep(0.3)
        wait_final(journal, 1, 20)  # D3, another patient, is not held up
        rows = {r.control_id: r for r in journal.messages.search()}
        assert rows["D1"].status == "failed" and rows["D3"].status == "delivered"
        assert "Conditional PUT matched multiple resources" in rows["D1"].reason
        assert rows["D2"].status == "transformed"  # held behind D1 in the patient's lane
        assert journal.outputs.get(rows["D2"].id, "fhir").status == "waiting"  # type: ignore[union-attr]
        outcome = orjson.loads(journal.outputs.response(rows["D1"].id, "fhir"))
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "invalid"
        shown = subprocess.run([WASLA, "messages", "show", rows["D1"].id, "--config", str(project / "config")],
                               capture_output=True, text=True, cwd=project, timeout=60)
        assert "OperationOutcome" in shown.stdout and "dead_letter" in shown.stdout
        with Connection(rabbitmq_url) as conn:  # and in the dead-letter queue
            dead = conn.SimpleQueue("wasla.dead.fhir")
            msg = dead.get(timeout=5)
            assert msg.headers["message_id"] == rows["D1"].id
            msg.ack()
            dead.close()

        extra = server_search(fhir_base, "Patient", ident)[1]  # the fix: merge the duplicate away
        httpx.delete(f"{fhir_base}/Patient/{extra['id']}", timeout=10).raise_for_status()
        replay = subprocess.run([WASLA, "messages", "replay", "--dead", "fhir", "--yes",
                                 "--config", str(project / "config")],
                                capture_output=True, text=True, cwd=project, timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert "delivered: 1" in replay.stdout
        wait_final(journal, 3, 30)
        rows = {r.control_id: r for r in journal.messages.search()}
        assert {c: r.status for c, r in rows.items()} == {"D1": "delivered", "D2": "delivered", "D3": "delivered"}
        patients = server_search(fhir_base, "Patient", ident)
        assert len(patients) == 1 and patients[0]["name"][0]["family"] == "SECOND"  # D1 then D2: order kept
        assert server_count(fhir_base, "Encounter") == 2
        assert journal.delivery.blocked_lanes("fhir") == 0
    finally:
        stop_engine(proc)
        journal.close()


@pytest.mark.slow
def test_ten_thousand_messages_through_failures_and_an_outage_arrive_once_and_in_order(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """Acceptance 1: 10,000 ADT/ORU messages (2,000 patients: A01, ORU^R01, three A08) while the server
    fails 30 % of requests with 503 (half of them after applying the Bundle: the answer is lost) and is
    down for 60 s in the middle. Every message is delivered, nothing is duplicated on the server, and
    each patient ends with the name of their last A08."""
    _reset(fhir_base)
    proxy = FaultProxy(_port(fhir_base), ratio=0.30)
    patients = 2000
    project, adt_port, lab_port = delivery_project(
        tmp_path, proxy.base, broker=rabbitmq_url, store=postgres_url,
        extra="retry:\n  delays_s: [1, 2, 5]\ncircuit_breaker:\n  failures: 5\n  probe_max_s: 4\n")
    proc = start_engine(project)
    journal = Journal(postgres_url)
    try:
        wait_port(adt_port, proc=proc)
        adt_lanes: list[list[bytes]] = [[] for _ in range(4)]
        for n in range(patients):
            adt_lanes[n % 4] += [adt_msg(n, "A01", f"A{n}-1", "ADMIT"), adt_msg(n, "A08", f"A{n}-2", "UPDATE1"),
                                 adt_msg(n, "A08", f"A{n}-3", "UPDATE2"), adt_msg(n, "A08", f"A{n}-4", "FINAL")]
        labs = [oru_msg(n, f"L{n}") for n in range(patients)]
        total = patients * 5

        outage: dict[str, float] = {}

        def cut() -> None:  # down for 60 s once a third is delivered
            while journal.messages.counts().get("delivered", 0) < total // 3:
                time.sleep(0.5)
            outage["down_at"] = journal.messages.counts().get("delivered", 0)
            proxy.down()
            time.sleep(60)
            outage["up_at"] = journal.messages.counts().get("delivered", 0)
            proxy.up()

        cutter = threading.Thread(target=cut, daemon=True)
        started = time.monotonic()
        cutter.start()
        sent: dict[str, int] = {}
        lab_sender = threading.Thread(target=lambda: sent.update(send_all(lab_port, labs, connections=2)))
        lab_sender.start()
        adt_codes = send_all(adt_port, [], lanes=adt_lanes)
        lab_sender.join()
        assert adt_codes.get("AA") == patients * 4 and sent.get("AA") == patients
        cutter.join(600)
        counts = wait_final(journal, total, 600)
        assert counts == {"delivered": total}, counts
        assert outage["up_at"] - outage["down_at"] < 50, outage  # nothing got through while it was down
        assert proxy.stats["failed_before"] > 1000 and proxy.stats["failed_after"] > 1000, proxy.stats

        assert server_count(fhir_base, "Patient") == patients
        assert server_count(fhir_base, "Patient", "family=FINAL") == patients  # the last A08 won, for each
        assert server_count(fhir_base, "Encounter") == patients
        assert server_count(fhir_base, "Observation") == patients * 2
        assert server_count(fhir_base, "DiagnosticReport") == patients
        assert server_count(fhir_base, "Provenance", "agent-type=assembler") == total  # one per message: none twice
        assert journal.delivery.blocked_lanes("fhir") == 0
        log = (project / "engine.log").read_text()
        print(f"\nacceptance 1: {total} delivered in {time.monotonic() - started:.0f} s; proxy {proxy.stats};"
              f" outage {outage}; circuit opened {log.count('circuit_open')} times;"
              f" delayed retry rounds {log.count('delivery_retrying')} batches")
    finally:
        stop_engine(proc)
        proxy.close()
        journal.close()


@pytest.mark.slow
def test_rabbitmq_restart_mid_run_loses_and_duplicates_nothing(
        tmp_path: Path, fhir_base: str, rabbitmq_url: str, postgres_url: str) -> None:
    """Acceptance 3: `rabbitmqctl stop_app` / `start_app` while messages flow; workers reconnect alone,
    senders resend what was not ACKed; every ACKed message reaches the server once."""
    _reset(fhir_base)
    patients = 300
    project, adt_port, _ = delivery_project(tmp_path, fhir_base, broker=rabbitmq_url, store=postgres_url)
    proc = start_engine(project)
    journal = Journal(postgres_url)
    try:
        wait_port(adt_port, proc=proc)
        lanes: list[list[bytes]] = [[] for _ in range(4)]
        for n in range(patients):
            lanes[n % 4] += [adt_msg(n, "A01", f"B{n}-1", "ADMIT"), adt_msg(n, "A08", f"B{n}-2", "FINAL")]

        def bounce() -> None:
            while journal.messages.counts().get("delivered", 0) < patients // 2:
                time.sleep(0.2)
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
            time.sleep(5)
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)

        bouncer = threading.Thread(target=bounce, daemon=True)
        bouncer.start()
        codes = send_all(adt_port, [], lanes=lanes, timeout=120)
        bouncer.join(300)
        assert codes.get("AA") == patients * 2, codes
        counts = wait_final(journal, patients * 2, 300)
        assert counts.get("delivered") == patients * 2, counts
        refused = journal.messages.search(status="failed", limit=10_000)  # only what intake refused (AE), then resent
        assert all(r.stage == "intake" for r in refused) and counts.get("failed", 0) == len(refused)
        assert set(counts) <= {"delivered", "failed"}, counts
        assert proc.poll() is None  # the engine rode it out
        assert server_count(fhir_base, "Patient") == patients
        assert server_count(fhir_base, "Patient", "family=FINAL") == patients
        assert server_count(fhir_base, "Provenance", "agent-type=assembler") == patients * 2
        log = (project / "engine.log").read_text()
        assert "broker_connection_lost" in log
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120, check=False)
        stop_engine(proc)
        journal.close()


def test_circuit_breaker_stops_hammering_a_failing_server(tmp_path: Path, fhir_base: str) -> None:
    """Every request fails: after `failures` of them the destination only probes, now and then."""
    proxy = FaultProxy(_port(fhir_base), ratio=1.0)
    project, adt_port, _ = delivery_project(
        tmp_path, proxy.base, extra="retry:\n  attempts: 2\n  delays_s: [1]\ncircuit_breaker:\n  failures: 3\n"
                                    "  probe_max_s: 4\n")
    proc = start_engine(project)
    try:
        wait_port(adt_port, proc=proc)
        assert send_all(adt_port, [adt_msg(n, "A01", f"K{n}", "X") for n in range(50)]) == {"AA": 50}
        time.sleep(12)
        requests = proxy.stats["failed_before"] + proxy.stats["failed_after"]
        # without the breaker: 50 messages x 2 tries, then again every second; with it: the requests in
        # flight when it opens (8 patients are sent in parallel, a second try for some), then one probe
        # at about 1, 3, 7 and 11 s
        assert 3 <= requests <= 20, proxy.stats
        proxy.ratio = 0.0
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        counts = wait_final(journal, 50, 60)
        assert counts == {"delivered": 50}, counts
        log = (project / "engine.log").read_text()
        assert log.count('"circuit_open"') == 1 and log.count('"circuit_closed"') == 1
        assert log.count('"delivery_retrying"') <= 3
        journal.close()
    finally:
        stop_engine(proc)
        proxy.close()
