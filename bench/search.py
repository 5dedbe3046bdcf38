"""Message search on a large journal: p50/p95 of each search kind, SQLite and PostgreSQL.

    python bench/search.py [--messages 1000000] [--store sqlite|postgresql|all] [--queries 200]

Fills a fresh journal with N messages (30 days, 8 channels, 40 senders, 6 types, 200,000 patients,
2 % failed, an output row for 1 message in 10), then runs each kind of search `--queries` times with
random values, first page of 50, newest first, as the console and `wasla messages search` do.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mllp import fresh_database  # noqa: E402
from engine.ids import message_id  # noqa: E402
from engine.store import Journal  # noqa: E402

TYPES = ["ADT^A01", "ADT^A08", "ADT^A03", "ORU^R01", "ORM^O01", "ADT^A04"]
START = datetime(2026, 10, 26, tzinfo=UTC)


def fill(j: Journal, n: int, rng: random.Random) -> None:
    body = zlib.compress(b"MSH|^~\\&|HIS|FAC|WASLA|MS|20261103101500||ADT^A01|X|P|2.5\r" * 4, 1)
    ins = j.db.dialect.sql("INSERT INTO messages (id, channel, received_at, updated_at, message_type, control_id,"
                        " sender, status, stage, reason, patient_key, size, sha256, raw)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    out = j.db.dialect.sql("INSERT INTO outputs (message_id, destination, status, updated_at) VALUES (?,?,?,?)")
    conn = j.db.dialect.connect()
    cur = conn.cursor()
    step = 30 * 86400 / n
    batch, outs = [], []
    for i in range(n):
        at = j.db.dialect.ts(START + timedelta(seconds=i * step))
        status = "failed" if rng.random() < 0.02 else "delivered"
        mid = message_id()
        batch.append((mid, f"channel-{rng.randrange(8)}", at, at, rng.choice(TYPES), f"CTRL{i}",
                      f"SENDER-{rng.randrange(40)}", status, "deliver", "", f"pk{rng.randrange(200_000):06d}",
                      300, "0" * 64, body))
        if i % 10 == 0:
            outs.append((mid, f"dest-{rng.randrange(3)}", status, at))
        if len(batch) == 20_000:
            cur.executemany(ins, batch)
            cur.executemany(out, outs)
            conn.commit()
            batch, outs = [], []
            print(f"  {i + 1:,} rows", file=sys.stderr, end="\r")
    if batch:
        cur.executemany(ins, batch)
        cur.executemany(out, outs)
        conn.commit()
    if j.db.dialect.name == "postgresql":
        conn.autocommit = True
        cur.execute("ANALYZE messages")
        cur.execute("ANALYZE outputs")
    else:
        cur.execute("ANALYZE")
        conn.commit()
    conn.close()


def kinds(rng: random.Random, n: int) -> dict[str, Callable[[], dict[str, Any]]]:
    def window() -> dict[str, Any]:
        since = START + timedelta(hours=rng.randrange(30 * 24 - 2))
        return {"since": since, "until": since + timedelta(hours=2)}

    return {
        "channel": lambda: {"channel": f"channel-{rng.randrange(8)}"},
        "status failed": lambda: {"status": "failed"},
        "type + trigger": lambda: {"message_type": rng.choice(TYPES)},
        "type (all triggers)": lambda: {"message_type": "ADT"},
        "control id": lambda: {"control_id": f"CTRL{rng.randrange(n)}"},
        "sender": lambda: {"sender": f"SENDER-{rng.randrange(40)}"},
        "patient (hash)": lambda: {"patient_key": f"pk{rng.randrange(200_000):06d}"},
        "destination": lambda: {"destination": f"dest-{rng.randrange(3)}"},
        "time range (2 h)": window,
        "channel + status + range": lambda: {"channel": f"channel-{rng.randrange(8)}", "status": "failed",
                                             **window()},
        "next page (cursor)": lambda: {"before": (START + timedelta(days=rng.randrange(1, 30)), "z")},
    }


def measure(j: Journal, n: int, queries: int) -> list[tuple[str, float, float, int]]:
    rng = random.Random(3)
    rows = []
    for name, make in kinds(rng, n).items():
        times, found = [], 0
        for _ in range(queries):
            args = make()
            t0 = time.perf_counter()
            found += len(j.messages.search(**args, limit=50))
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        rows.append((name, statistics.median(times), times[int(len(times) * 0.95) - 1], found // queries))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--store", choices=["sqlite", "postgresql", "all"], default="all")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    results: dict[str, list[tuple[str, float, float, int]]] = {}
    stores = ["sqlite", "postgresql"] if args.store == "all" else [args.store]
    for store in stores:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = fresh_database(args.pg) if store == "postgresql" else None
            url = ctx.__enter__() if ctx else f"sqlite:///{tmp}/journal.db"
            try:
                j = Journal(url)
                t0 = time.perf_counter()
                fill(j, args.messages, random.Random(1))
                print(f"{store}: {args.messages:,} messages written in {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr)
                results[store] = measure(j, args.messages, args.queries)
                j.close()
            finally:
                if ctx:
                    ctx.__exit__(None, None, None)
    print(f"\n{args.messages:,} journaled messages, {args.queries} searches per kind, first page of 50,"
          " newest first\n")
    print("| search | " + " | ".join(f"{s} p50 ms | {s} p95 ms" for s in results) + " | rows found (avg) |")
    print("|---|" + "---:|---:|" * len(results) + "---:|")
    names = [r[0] for r in next(iter(results.values()))]
    for i, name in enumerate(names):
        cells = " | ".join(f"{results[s][i][1]:.2f} | {results[s][i][2]:.2f}" for s in results)
        print(f"| {name} | {cells} | {next(iter(results.values()))[i][3]} |")


if __name__ == "__main__":
    main()
