"""Benchmarks: conversion cost per message, and end-to-end MLLP throughput through a real engine.

    python bench/pipeline.py [--messages N] [--connections C] [--amqp URL --pg URL]

Prints a table. End-to-end = from the first byte sent to the last Bundle line fsynced in var/out/.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.hl7v2 import decode, parse  # noqa: E402
from engine.mapping import Converter  # noqa: E402
from tests.support import adt, engine, make_project, mllp_read, out_lines, port_of  # noqa: E402


def bench_convert(n: int) -> tuple[float, float]:
    conv = Converter(ROOT / "mappings", ROOT / "config" / "schema", ROOT / "nomenclatures" / "hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    raw = adt()
    now = datetime.now(UTC)
    conv.convert("adt", parse(decode(raw)), now)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        conv.convert("adt", parse(decode(raw)), now)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, cpu / n * 1e6


def send_many(port: int, start: int, count: int, acks: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for i in range(start, start + count):
            s.sendall(b"\x0b" + adt(f"B{i}", f"P{i % 500}") + b"\x1c\r")
            if b"|AA|" in mllp_read(s):
                acks.append(i)


def bench_e2e(n: int, connections: int, env: dict[str, str]) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        with engine(project, env):
            port = port_of(project)
            acks: list[int] = []
            per = n // connections
            threads = [threading.Thread(target=send_many, args=(port, c * per, per, acks)) for c in range(connections)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            t_ack = time.perf_counter() - t0
            while len(out_lines(project)) < per * connections and time.perf_counter() - t0 < 300:
                time.sleep(0.05)
            t_out = time.perf_counter() - t0
            assert len(acks) == per * connections, f"only {len(acks)} AA"
            return per * connections / t_ack, per * connections / t_out, float(len(out_lines(project)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--pg", default="")
    args = ap.parse_args()
    rate, cpu_us = bench_convert(5000)
    rows = [("convert ADT^A01 → Bundle (parse + map + orjson), 1 core", f"{rate:,.0f} msg/s", f"{cpu_us:,.0f} µs/msg")]
    setups = [("embedded: memory:// + SQLite", {})]
    if args.pg:
        setups.append(("RabbitMQ + PostgreSQL", {"WASLA_BROKER_URL": args.amqp, "WASLA_STORE_URL": args.pg}))
    for label, env in setups:
        for conns in (1, args.connections):
            acked, delivered, lines = bench_e2e(args.messages, conns, env)
            rows.append((f"MLLP end to end, {label}, {conns} connection(s), {int(lines)} msgs",
                         f"{acked:,.0f} AA/s", f"{delivered:,.0f} delivered/s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}} | {'rate':>16} | {'second figure':>18}")
    print("-" * width + "-|-" + "-" * 16 + "-|-" + "-" * 18)
    for name, a, b in rows:
        print(f"{name:<{width}} | {a:>16} | {b:>18}")


if __name__ == "__main__":
    main()
