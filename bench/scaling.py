"""Scale-out: throughput with 1, 2 and 4 transform processes, and the CPU each role spends per message.

    python bench/scaling.py [--messages N (20,000)] [--transforms 1,2,4]

RabbitMQ + PostgreSQL, NDJSON destination (fsync). For each count K: a fresh journal, `shards: K`
(one active consumer per shard, so K processes share the work), one intake and one deliver
process. The messages (ADT^A01, 1,000 patients) are sent first over 8 MLLP connections with the
workers stopped, so they wait in RabbitMQ; then K transform processes and the deliver process
start (the clock runs from their `engine_started` lines) until the journal shows every message
delivered. Each process's CPU time after its start-up (user + system, from /proc) divided by the
messages gives the cost per message of each role:
the capacity model in docs/scaling.md is built on those numbers.

    transform/s   messages per second through transform (all past `received`)
    e2e/s         messages per second until all are delivered (transform + deliver in parallel)
    CPU ms/msg    CPU time per message of the intake, all transform processes, the deliver process
    per process   messages each transform process handled (the shards' single-active consumers
                  are spread by ShardConsumer._balance, engine/transport/amqp_consume.py)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mllp import fresh_database  # noqa: E402
from engine.store import Journal  # noqa: E402
from tests.delivery_support import adt_msg, delivery_project, send_all  # noqa: E402
from tests.support import delete_wasla_queues, start_engine, stop_engine, wait_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def started(project: Path, procs: list[subprocess.Popen[bytes]], names: list[str]) -> dict[int, float]:
    """Wait for each process to log engine_started; its CPU then (start-up: imports, compiling the
    mappings) is left out of the per-message cost. Consuming starts a moment before that line."""
    base: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while len(base) < len(procs) and time.monotonic() < deadline:
        for p, name in zip(procs, names, strict=True):
            log = project / f"{name}.log"
            if p.pid not in base and log.exists() and '"engine_started"' in log.read_text(errors="replace"):
                base[p.pid] = cpu_s(p.pid)
        time.sleep(0.01)
    return base


def run(k: int, n: int, amqp: str, pg_admin: str) -> dict[str, Any]:
    delete_wasla_queues(amqp)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(pg_admin) as store:
        project, adt_port, _ = delivery_project(Path(tmp), "http://127.0.0.1:9/fhir", ndjson=True, fhir=False,
                                                broker=amqp, store=store)
        main = project / "config" / "wasla.yaml"
        main.write_text(main.read_text().replace("shards: 1", f"shards: {k}"))
        quiet = {"WASLA_OPS_PORT": "0"}
        intake = start_engine(project, roles=("intake",), name="intake")
        procs = [intake]
        journal = Journal(store)
        try:
            wait_port(adt_port, proc=intake)
            lanes = [[adt_msg(i % 1000, "A01", f"S{k}-{i}", "BENCH") for i in range(c, n, 8)] for c in range(8)]
            codes = send_all(adt_port, [], lanes=lanes, timeout=120)
            assert codes.get("AA") == n, codes
            intake_cpu = cpu_s(intake.pid)
            transforms = [start_engine(project, quiet, roles=("transform",), name=f"transform-{i}") for i in range(k)]
            deliver = start_engine(project, quiet, roles=("deliver",), name="deliver")
            procs += [*transforms, deliver]
            base = started(project, [*transforms, deliver], [f"transform-{i}" for i in range(k)] + ["deliver"])
            t0 = time.perf_counter()
            transformed_at = None
            deadline = time.monotonic() + 180
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                counts = journal.messages.counts()
                if transformed_at is None and counts.get("received", 0) == 0:
                    transformed_at = time.perf_counter()
                if counts.get("delivered", 0) >= n:
                    break
                time.sleep(0.05)
            done = time.perf_counter()
            if counts.get("delivered", 0) < n:
                raise RuntimeError(f"stalled with {k} transform processes: {counts} (see the note on issue 9)")
            transform_cpu = sum(cpu_s(p.pid) - base[p.pid] for p in transforms)
            deliver_cpu = cpu_s(deliver.pid) - base[deliver.pid]
            shares = [(project / f"transform-{i}.log").read_text(errors="replace").count('"event":"transformed"')
                      for i in range(k)]
            return {"transform": n / ((transformed_at or done) - t0), "e2e": n / (done - t0),
                    "intake_ms": intake_cpu * 1000 / n, "transform_ms": transform_cpu * 1000 / n,
                    "deliver_ms": deliver_cpu * 1000 / n, "shares": " / ".join(map(str, shares))}
        finally:
            journal.close()
            for p in procs:
                stop_engine(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--transforms", default="1,2,4")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    rows = []
    for k in (int(x) for x in args.transforms.split(",")):
        r = run(k, args.messages, args.amqp, args.pg)
        rows.append((k, r))
        print(f"  {k} transform: {r['transform']:,.0f}/s transform, {r['e2e']:,.0f}/s e2e", file=sys.stderr)
    print(f"\n{args.messages:,} ADT^A01 waiting in RabbitMQ, then K transform + 1 deliver processes start;"
          f" PostgreSQL journal, NDJSON destination; {os.cpu_count()} CPU cores\n")
    print("| transform processes | transform/s | end to end/s | intake CPU ms/msg | transform CPU ms/msg"
          " | deliver CPU ms/msg | messages per transform process |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for k, r in rows:
        print(f"| {k} | {r['transform']:,.0f} | {r['e2e']:,.0f} | {r['intake_ms']:.2f} | {r['transform_ms']:.2f}"
              f" | {r['deliver_ms']:.2f} | {r['shares']} |")


if __name__ == "__main__":
    main()
