"""End-to-end throughput: MLLP in → FHIR out, through a real engine (`wasla run`, every role in one process).

    python bench/pipeline.py [--messages N] [--setup embedded|rabbitmq|all] [--dest ndjson|fhir|all] [--split]

For each setup (embedded: memory:// + SQLite; rabbitmq: RabbitMQ + a fresh PostgreSQL database) and
destination (NDJSON files with fsync; a real FHIR server, ../shared/tools/fhir-server), it sends
ADT^A01 on 1 and on 8 MLLP connections, and ORU^R01 with 10 OBX on 8, stop-and-wait as MLLP
clients do, and prints a table. With `--split`, RabbitMQ setups run two processes, as production
does: `wasla run --role intake` and `wasla run --role transform --role deliver` (two cores, two GILs).


    ACK/s        messages acknowledged per second (durable in the journal, published)
    e2e/s        messages per second from the first byte sent to the last one delivered
                 (journal: every message `delivered`, i.e. fsynced or answered 2xx by the server)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mllp import fresh_database  # noqa: E402
from engine.store import Journal  # noqa: E402
from tests.delivery_support import adt_msg, delivery_project, oru_msg, send_all  # noqa: E402
from tests.fhirserver import fhir_server  # noqa: E402
from tests.support import delete_wasla_queues, start_engine, stop_engine, wait_port  # noqa: E402

CASES = [("ADT^A01", 1), ("ADT^A01", 8), ("ORU^R01 10 OBX", 8)]


@contextlib.contextmanager
def setup_store(setup: str, pg_admin: str) -> Iterator[str | None]:
    if setup == "embedded":
        yield None
        return
    with fresh_database(pg_admin) as url:
        yield url


def run_case(setup: str, dest: str, case: tuple[str, int], n: int, fhir_url: str, amqp: str,
             pg_admin: str, split: bool = False) -> tuple[float, float, str]:
    kind, connections = case
    if dest == "fhir":
        httpx.post(fhir_url.removesuffix("/fhir") + "/_admin/reset", timeout=30)
    if setup == "rabbitmq":
        delete_wasla_queues(amqp)
    with tempfile.TemporaryDirectory() as tmp, setup_store(setup, pg_admin) as store:
        project, adt_port, lab_port = delivery_project(
            Path(tmp), fhir_url, ndjson=dest == "ndjson", fhir=dest == "fhir",
            broker=amqp if setup == "rabbitmq" else "memory://", store=store)
        split = split and setup == "rabbitmq"
        proc = start_engine(project, roles=("intake",) if split else ())
        workers = (start_engine(project, {"WASLA_OPS_PORT": "0"}, roles=("transform", "deliver"), name="workers")
                   if split else None)
        journal = Journal(store or f"sqlite:///{project}/var/wasla.db")
        try:
            wait_port(adt_port, proc=proc)
            tag = f"{setup[0]}{dest[0]}{connections}"
            if kind.startswith("ADT"):
                lanes = [[adt_msg(i % 1000, "A01", f"{tag}-{i}", "BENCH") for i in range(c, n, connections)]
                         for c in range(connections)]  # 1,000 patients, each always on the same connection
                port = adt_port
            else:
                lanes = [[oru_msg(p, f"{tag}-{p}", obx=10) for p in range(c, n, connections)]
                         for c in range(connections)]
                port = lab_port
            t0 = time.perf_counter()
            codes = send_all(port, [], lanes=lanes, timeout=120)
            acked = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            while journal.messages.counts().get("delivered", 0) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            e2e = time.perf_counter() - t0
            return n / acked, n / e2e, ",".join(f"{k}:{v}" for k, v in sorted(codes.items()))
        finally:
            journal.close()
            stop_engine(proc)
            if workers is not None:
                stop_engine(workers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--setup", choices=["embedded", "rabbitmq", "all"], default="all")
    ap.add_argument("--dest", choices=["ndjson", "fhir", "all"], default="all")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--split", action="store_true", help="RabbitMQ: intake and workers in two processes")
    args = ap.parse_args()
    setups = ["embedded", "rabbitmq"] if args.setup == "all" else [args.setup]
    dests = ["ndjson", "fhir"] if args.dest == "all" else [args.dest]
    rows = []
    with fhir_server() as fhir_url:
        for setup in setups:
            for dest in dests:
                for case in CASES:
                    ack, e2e, codes = run_case(setup, dest, case, args.messages, fhir_url, args.amqp, args.pg,
                                               args.split)
                    rows.append((setup, dest, case[0], case[1], ack, e2e, codes))
                    print(f"  {setup} {dest} {case[0]} x{case[1]}: {ack:,.0f} ACK/s, {e2e:,.0f} e2e/s", file=sys.stderr)
    how = ("RabbitMQ rows: intake and transform+deliver in two processes" if args.split
           else "all roles in one `wasla run`")
    print(f"\n{args.messages:,} messages per row, stop-and-wait MLLP clients, {how}\n")
    print("| setup | destination | message | connections | ACK/s | end to end/s | ACK codes |")
    print("|---|---|---|---:|---:|---:|---|")
    for setup, dest, kind, conns, ack, e2e, codes in rows:
        name = "embedded (memory:// + SQLite)" if setup == "embedded" else "RabbitMQ + PostgreSQL"
        print(f"| {name} | {dest} | {kind} | {conns} | {ack:,.0f} | {e2e:,.0f} | {codes} |")


if __name__ == "__main__":
    main()
