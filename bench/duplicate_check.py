"""The cost of duplicates by content (issue 23): the fingerprint, and the checked journal write.

    python bench/duplicate_check.py [--prior 5000] [--writes 300] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Prints two tables:

- the content fingerprint (engine.fingerprint) of messages of several sizes, µs per call, next to
  the sha256 the journal already computes of the same bytes;
- the checked receive (`Journal.receive_work` with a duplicate window, committed alone) per message,
  on SQLite and PostgreSQL, for a key never seen, and for a key already held by `--prior` messages
  of other content (a sender whose control id never changes: each new message is CONTROL_ID_REUSED)
  and for a duplicate of one of them: the index of migration 0009 keeps each one index range.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.fingerprint import content_fingerprint  # noqa: E402
from engine.ids import message_id  # noqa: E402
from engine.store import Journal  # noqa: E402
from engine.types import Inbound  # noqa: E402
from tests.support import CORPUS  # noqa: E402


def _per_call_us(fn: object, arg: bytes, n: int) -> float:
    """The best of 5 runs of `n` calls, µs per call (the machine is shared: the minimum is the cost)."""
    return min(timeit.repeat(lambda: fn(arg), number=n, repeat=5)) / n * 1e6  # type: ignore[operator]


def fingerprints() -> None:
    adt = (CORPUS / "ADT-A01-01.hl7").read_bytes().replace(b"\n", b"\r")
    print("| message | bytes | fingerprint µs | sha256 µs |")
    print("|---|---:|---:|---:|")
    for label, raw in (("ADT-A01-01", adt), ("ADT + 100 OBX", adt + (b"OBX|1|ST|X||" + b"v" * 60 + b"\r") * 100),
                       ("1 MiB", adt + (b"OBX|1|ST|X||" + b"v" * 500 + b"\r") * 2000)):
        n = max(20, 200_000 // max(len(raw), 1))
        print(f"| {label} | {len(raw)} | {_per_call_us(content_fingerprint, raw, n):.1f} |"
              f" {_per_call_us(lambda b: hashlib.sha256(b).hexdigest(), raw, n):.1f} |")


def _message(n: int, control_id: str) -> bytes:
    return f"MSH|^~\\&|APP|FAC|WASLA|MS|2026120{n % 10}||ADT^A01|{control_id}|P|2.5\rPID|1||IPP{n}\r".encode()


def checked(url: str, prior: int, writes: int) -> list[tuple[str, float]]:
    j = Journal(url)
    since = datetime.now(UTC) - timedelta(days=1)

    def receive(raw: bytes, control_id: str) -> object:
        msg = Inbound(message_id(), "bench", datetime.now(UTC), raw, "ADT^A01", control_id, "FAC")
        return j.db.commit(j.messages.receive_work(msg, duplicate_since=since, fingerprint=content_fingerprint(raw)))

    try:
        for n in range(prior):  # one key, `prior` contents
            receive(_message(n, "SAME"), "SAME")
        out = []
        for label, make in (("new key", lambda n: (_message(n, f"K{n}"), f"K{n}")),
                            (f"reused key ({prior} before)", lambda n: (_message(prior + n, "SAME"), "SAME")),
                            (f"duplicate ({prior} before)", lambda n: (_message(n % max(prior, 1), "SAME"), "SAME"))):
            times = []
            for n in range(writes):
                raw, key = make(n)
                start = time.perf_counter()
                receive(raw, key)
                times.append(time.perf_counter() - start)
            out.append((label, statistics.median(times) * 1e3))
        return out
    finally:
        j.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prior", type=int, default=5000)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    fingerprints()
    print()
    print("| journal | write | median ms (commit included) |")
    print("|---|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, ms in checked(f"sqlite:///{tmp}/bench.db", args.prior, args.writes):
            print(f"| SQLite | {label} | {ms:.2f} |")
    import psycopg

    name = f"wasla_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        for label, ms in checked(args.postgres.rsplit("/", 1)[0] + f"/{name}", args.prior, args.writes):
            print(f"| PostgreSQL | {label} | {ms:.2f} |")
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
