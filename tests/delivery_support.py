"""Helpers of the delivery tests: projects with a FHIR destination, ADT and lab messages per patient."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from engine.store import Journal
from tests.support import free_port, make_project, mllp_read, msa

__all__ = ["adt_msg", "delivery_project", "oru_msg", "send_all", "wait_final"]


def delivery_project(tmp: Path, fhir_url: str, *, extra: str = "", ndjson: bool = False,
                     broker: str = "memory://", store: str | None = None,
                     fhir: bool = True) -> tuple[Path, int, int]:
    """The shipped project plus a `fhir` destination and a lab channel; returns (project, ADT port, lab port)."""
    project = make_project(tmp)
    cfg = project / "config"
    (cfg / "destinations" / "fhir.yaml").write_text(
        f"description: test FHIR server\nfhir:\n  base_url: {fhir_url}\n  timeout_s: 20\n{extra}")
    adt_port, lab_port = int((cfg / "channels" / "adt-mllp.yaml").read_text().split("port:")[1].split()[0]), free_port()
    outputs = ("  - fhir\n" if fhir else "") + ("  - archive-ndjson\n" if ndjson else "")
    ch = cfg / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("output:\n  - archive-ndjson\n", "output:\n" + outputs))
    (cfg / "channels" / "lab-mllp.yaml").write_text(
        f"input:\n  mllp:\n    host: 127.0.0.1\n    port: {lab_port}\n"
        f"pipeline:\n  mapping: oru_r01\noutput:\n{outputs}")
    main = cfg / "wasla.yaml"
    text = main.read_text().replace("url: memory://", f"url: {broker}")
    if store:
        text = text.replace("url: sqlite:///var/wasla.db", f"url: {store}")
    main.write_text(text)
    return project, adt_port, lab_port


def adt_msg(n: int, trigger: str, control: str, family: str) -> bytes:
    """An ADT of patient `n` (IPP and visit numbered by n); `family` tells which message wrote the name."""
    return (f"MSH|^~\\&|HIS|CHU-IBN-SINA|WASLA|MS|20261103101500||ADT^{trigger}^ADT_A01|{control}|P|2.5\r"
            f"EVN|{trigger}|20261103101500\r"
            f"PID|1||IPP{n:06d}^^^CHU-IBN-SINA^PI||{family}^Test^^^^^L||19850214|F\r"
            f"PV1|1|I|CARDIO^101^A^CHU-IBN-SINA||||||||||||||||V{n:06d}^^^CHU-IBN-SINA^VN|||||||||||||||||||||||||"
            "20261103100000\r").encode()


_LAB = [("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "0.95", "g/L", "0.7-1.1"),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "9.8", "mg/L", "6-12"),
        ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "140", "mmol/L", "135-145"),
        ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "4.1", "mmol/L", "3.5-5.1"),
        ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "101", "mmol/L", "98-107")]


def oru_msg(n: int, control: str, obx: int = 2) -> bytes:
    """A lab result for patient `n` with `obx` results (LOINC coded, numeric)."""
    head = oru_head(n, control)
    results = "".join(f"OBX|{i + 1}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{ref}|N|||F\r"
                      for i, (code, name, value, unit, ref) in ((i, _LAB[i % len(_LAB)]) for i in range(obx)))
    return head + results.encode()


def oru_head(n: int, control: str) -> bytes:
    return (f"MSH|^~\\&|LIS|LABO|WASLA|CHU-IBN-SINA|20261121081500||ORU^R01^ORU_R01|{control}|P|2.5.1\r"
            f"PID|1||IPP{n:06d}^^^CHU-IBN-SINA^PI||LAB^Test^^^^^L||19850214|F\r"
            f"ORC|RE|CMD-{n}^CHU-IBN-SINA|LAB-{n}^LABO||CM\r"
            f"OBR|1|CMD-{n}^CHU-IBN-SINA|LAB-{n}^LABO|24323-8^Comprehensive metabolic panel^LN|||20261121070000"
            "|||||||||||||||20261121081000|||F\r").encode()


def send_all(port: int, messages: list[bytes], connections: int = 1, timeout: float = 60.0,
             lanes: list[list[bytes]] | None = None) -> dict[str, int]:
    """Send on `connections` sockets (or one per lane), each in order, stop-and-wait like a real MLLP
    client; ACK codes counted. A connection that breaks reconnects and resends its un-ACKed message,
    as real senders do.
    """
    import threading

    codes: dict[str, int] = {}
    lock = threading.Lock()
    lanes = lanes if lanes is not None else [messages[i::connections] for i in range(connections)]

    def run(lane: list[bytes]) -> None:
        s: socket.socket | None = None
        i = 0
        deadline = time.monotonic() + timeout * max(1, len(lane) // 100)
        while i < len(lane) and time.monotonic() < deadline:
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                s.sendall(b"\x0b" + lane[i] + b"\x1c\r")
                code = msa(mllp_read(s))[1]
            except OSError:
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.5)
                continue
            if code != "AA":  # AE: the engine could not make it durable: resend, as a sender does
                time.sleep(0.2)
                with lock:
                    codes["retried-" + code] = codes.get("retried-" + code, 0) + 1
                continue
            with lock:
                codes[code] = codes.get(code, 0) + 1
            i += 1
        if s is not None:
            s.close()

    threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def wait_final(journal: Journal, expected: int, timeout: float) -> dict[str, int]:
    """Wait until `expected` messages are delivered (or the time is up); returns the status counts."""
    deadline = time.monotonic() + timeout
    counts = journal.messages.counts()
    while time.monotonic() < deadline:
        counts = journal.messages.counts()
        if counts.get("delivered", 0) >= expected:
            break
        time.sleep(1)
    return counts
