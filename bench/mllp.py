"""MLLP intake benchmark: msg/s, ACK latency and engine CPU per message, through a real engine.

    python bench/mllp.py [--messages N] [--pg URL] [--amqp URL] [--setup embedded|rabbitmq|all]

For each setup (embedded defaults: memory:// + SQLite; RabbitMQ + PostgreSQL) it starts
`wasla run` on a fresh project, then sends ADT^A01 messages stop-and-wait (each sender waits
for the ACK before sending the next, as MLLP senders do) on 1 connection and on 8 concurrent
connections. ACK is sent after the message is durable (journal commit, and broker confirm on
RabbitMQ). Latency is measured per message from send to ACK; CPU is the engine process's own
(utime + stime from /proc), divided by the messages ACKed. The table also says how long the
pipeline took to deliver everything (the NDJSON destination), since ACK rate alone can hide a
backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import adt, engine, make_project, out_lines, port_of  # noqa: E402

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
HZ = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    setup: str
    connections: int
    messages: int
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    delivered_s: float
    codes: dict[str, int]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ


async def sender(port: int, prefix: str, count: int, lat: list[float], codes: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buf = b""
    for i in range(count):
        payload = VT + adt(f"{prefix}{i}", f"P{prefix}{i % 997}") + FS + CR
        t = time.perf_counter()
        writer.write(payload)
        while FS + CR not in buf:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("engine closed the connection")
            buf += chunk
        ack, buf = buf.split(FS + CR, 1)
        lat.append(time.perf_counter() - t)
        code = ack.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in ack else "?"
        codes[code] = codes.get(code, 0) + 1
    writer.close()
    await writer.wait_closed()


async def load(port: int, connections: int, per: int, tag: str, lat: list[float], codes: dict[str, int]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(sender(port, f"{tag}C{c}M", per, lat, codes) for c in range(connections)))
    return time.perf_counter() - t0


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards (an old journal would be recovered)."""
    import psycopg

    name = f"wasla_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def purge_queues(amqp_url: str) -> None:
    """Delete the wasla.* queues a previous run left, so this run starts empty."""
    from kombu import Connection

    with Connection(amqp_url) as conn:
        channel = conn.channel()
        for q in ("wasla.transform.0", "wasla.deliver.archive-ndjson.0", "wasla.dead.transform",
                  "wasla.dead.archive-ndjson"):
            channel.queue_delete(q)


def run_setup(name: str, env: dict[str, str], messages: int, warmup: int) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        with engine(project, env) as proc:
            port = port_of(project)
            asyncio.run(load(port, 1, warmup, "W", [], {}))
            expected = warmup
            for connections in (1, 8):
                per = messages // connections
                lat: list[float] = []
                codes: dict[str, int] = {}
                c0 = cpu_seconds(proc.pid)
                wall = asyncio.run(load(port, connections, per, f"R{connections}", lat, codes))
                cpu = cpu_seconds(proc.pid) - c0
                expected += per * connections
                t_end = time.perf_counter()
                while len(out_lines(project)) < expected and time.perf_counter() - t_end < 300:
                    time.sleep(0.02)
                drained = time.perf_counter() - t_end
                lat.sort()
                n = len(lat)
                results.append(Result(name, connections, n, n / wall, statistics.median(lat) * 1000,
                                      lat[min(n - 1, int(n * 0.99))] * 1000, cpu / n * 1000, wall + drained, codes))
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--setup", choices=["embedded", "rabbitmq", "all"], default="all")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="admin URL; each run gets a fresh database")
    args = ap.parse_args()
    setups = []
    if args.setup in ("embedded", "all"):
        setups.append(("embedded (memory:// + SQLite)", {}))
    if args.setup in ("rabbitmq", "all"):
        setups.append(("RabbitMQ + PostgreSQL", {"WASLA_BROKER_URL": args.amqp, "WASLA_STORE_URL": args.pg}))
    rows: list[Result] = []
    for name, env in setups:
        if "WASLA_STORE_URL" in env:
            purge_queues(args.amqp)
            with fresh_database(args.pg) as url:
                rows += run_setup(name, {**env, "WASLA_STORE_URL": url}, args.messages, args.warmup)
        else:
            rows += run_setup(name, env, args.messages, args.warmup)
    print("| setup | connections | messages | ACKed msg/s | p50 ACK ms | p99 ACK ms | engine CPU ms/msg |"
          " all delivered after s | ACK codes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r.setup} | {r.connections} | {r.messages:,} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
              f" {r.cpu_ms:.3f} | {r.delivered_s:.1f} | {r.codes} |")


if __name__ == "__main__":
    main()
