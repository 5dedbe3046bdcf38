"""No PHI in logs, ever: messages full of names, identifiers, birth dates, addresses and phone numbers go
through every path (delivered, refused by the destination with an answer that echoes them, malformed,
invalid identifiers, duplicates), and no line of the engine's log holds any of them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from engine.store import Journal
from tests.delivery_support import delivery_project, send_all
from tests.fhirserver import FaultProxy
from tests.support import start_engine, stop_engine, wait_port

PHI = ["BENNANIPHI", "Khadija", "IPP987654", "BK778899", "19790312", "1979-03-12", "Bouloukat", "0661123456",
       "khadija.bennani@example.ma"]


def _adt(control: str, trigger: str = "A01", cin: str = "BK778899", extra: str = "") -> bytes:
    return (f"MSH|^~\\&|HIS|CHU-IBN-SINA|WASLA|MS|20261103101500||ADT^{trigger}^ADT_A01|{control}|P|2.5\r"
            f"EVN|{trigger}|20261103101500\r"
            f"PID|1||IPP987654^^^CHU-IBN-SINA^PI~{cin}^^^MA-DGSN^NNMAR||BENNANIPHI^Khadija^^^Mme^^L||19790312|F|||"
            "27 Derb Sidi Bouloukat^^Marrakech^^40000^MA^H||0661123456^PRN^PH~^NET^Internet^khadija.bennani@example.ma"
            f"\rPV1|1|I|CARDIO^101^A^CHU-IBN-SINA||||||||||||||||V777^^^CHU-IBN-SINA^VN{extra}\r").encode()


def test_no_phi_in_any_log_line(tmp_path: Path, fhir_base: str) -> None:
    httpx.post(fhir_base.removesuffix("/fhir") + "/_admin/reset", timeout=30)
    proxy = FaultProxy(int(fhir_base.split(":")[2].split("/")[0]))
    project, adt_port, lab_port = delivery_project(tmp_path, proxy.base, ndjson=True,
                                                   extra="retry: {attempts: 1, delays_s: [1]}\n")
    main = project / "config" / "wasla.yaml"
    main.write_text(main.read_text().replace("level: info", "level: debug"))  # the chattiest logs
    proxy.reject["A08"] = (422, {"resourceType": "OperationOutcome", "issue": [{  # a server echoing PHI back
        "severity": "error", "code": "business-rule",
        "diagnostics": "Patient BENNANIPHI Khadija IPP987654 born 1979-03-12 already merged"}]})
    proc = start_engine(project)
    try:
        wait_port(adt_port, proc=proc)
        codes = send_all(adt_port, [
            _adt("P1"),                                   # delivered
            _adt("P1"),                                   # duplicate of P1
            _adt("P2", "A08"),                            # refused by the server: dead letter
            _adt("P3", cin="BK77889"),                    # identifier with a bad format
            _adt("P4").replace(b"|2.5\r", b"|9.9\r"),     # version nobody maps
            _adt("P5").replace(b"PID|1|", b"PID|1|\\E\\X"),  # escape trouble inside PID
        ])
        assert codes.get("AA", 0) >= 4
        send_all(lab_port, [b"MSH|^~\\&|LIS|LABO|WASLA|CHU|2026||ORU^R01|L1|P|2.5\rPID|1||IPP987654^^^X^PI||"
                                b"BENNANIPHI^Khadija||19790312\rOBX|1|NM|GLU^Glucose^L||5|mmol/L\r"])
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and journal.messages.counts().get("failed", 0) < 1:
            time.sleep(0.3)
        dead = [r for r in journal.messages.search(status="failed") if r.control_id == "P2"]
        # the server's answer, PHI and all, reached the engine: kept in the journal for the operator...
        assert dead and "BENNANIPHI" in journal.outputs.response(dead[0].id, "fhir")
        journal.close()
        time.sleep(1)
    finally:
        stop_engine(proc)
        proxy.close()
    lines = (project / "engine.log").read_text(errors="replace").splitlines()
    assert len(lines) > 20
    leaks = [(value, line[:200]) for line in lines for value in PHI if value.lower() in line.lower()]
    assert leaks == []  # ...and never written to the log
    import json

    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len(lines)  # every line is one JSON object
    assert all(r.get("trace_id") for r in records)  # and carries a trace id
    assert all(r["trace_id"] == r["message_id"] for r in records if "message_id" in r)
