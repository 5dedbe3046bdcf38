"""Soak: a million ADT/ORU messages through the full pipeline; RSS of every process sampled; the
journal kept small by retention.

    python bench/soak.py [--messages 1000000] [--setup embedded|rabbitmq] [--out bench/results]

Embedded: one `wasla run` (memory:// + SQLite), the shipped sample channels. RabbitMQ: RabbitMQ +
PostgreSQL, intake and transform+deliver as two processes. Both write NDJSON (the sample
destination). Retention is shortened so that it really runs during the soak (bodies kept 2
minutes, metadata 5, pruned every 30 s): the journal must stay bounded, not grow with the count.
8 MLLP senders, stop-and-wait, send ADT^A01/A08 and ORU^R01 (5 OBX) for 20,000 patients, messages
made on the fly. Every 5 s: RSS of each engine process (/proc/PID/status VmRSS), messages ACKed,
journal size on disk. Writes `soak-<setup>.csv`, `soak-<setup>.png` (RSS and journal size over
messages) and prints a summary: RSS after warm-up (first 10 %), at the end, and the fitted slope.
"""

from __future__ import annotations

import argparse
import csv
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mllp import fresh_database  # noqa: E402
from tests.delivery_support import adt_msg, delivery_project, oru_msg  # noqa: E402
from tests.support import delete_wasla_queues, mllp_read, msa, start_engine, stop_engine, wait_port  # noqa: E402

PATIENTS = 20_000


def messages(lane: int, lanes: int, total: int) -> Iterator[tuple[bool, bytes]]:
    """(is lab, message) for this lane: each patient always on the same lane, so its order holds."""
    for i in range(lane, total, lanes):
        n, kind = (i // 3) % PATIENTS, i % 3
        if kind == 0:
            yield False, adt_msg(n, "A01", f"K{i}", "SOAK")
        elif kind == 1:
            yield True, oru_msg(n, f"K{i}", obx=5)
        else:
            yield False, adt_msg(n, "A08", f"K{i}", "SOAK2")


def sender(ports: tuple[int, int], lane: int, lanes: int, total: int, acked: list[int]) -> None:
    conns: dict[bool, socket.socket] = {}
    for lab, msg in messages(lane, lanes, total):
        while True:
            try:
                s = conns.get(lab) or socket.create_connection(("127.0.0.1", ports[lab]), timeout=60)
                conns[lab] = s
                s.sendall(b"\x0b" + msg + b"\x1c\r")
                if msa(mllp_read(s))[1] == "AA":
                    break
            except OSError:
                conns.pop(lab, None)
            time.sleep(0.2)  # AE or a broken connection: resend, as a sender does
        acked[lane] += 1
    for s in conns.values():
        s.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def journal_bytes(project: Path, store: str | None) -> int:
    if store is None:
        return sum(p.stat().st_size for p in (project / "var").glob("wasla.db*"))
    import psycopg

    with psycopg.connect(store) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def soak(setup: str, total: int, out: Path, amqp: str, pg_admin: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if setup == "rabbitmq":
        delete_wasla_queues(amqp)
    store_ctx = fresh_database(pg_admin) if setup == "rabbitmq" else None
    store = store_ctx.__enter__() if store_ctx else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project, adt_port, lab_port = delivery_project(Path(tmp), "http://127.0.0.1:9/fhir", ndjson=True,
                                                           fhir=False, broker=amqp if store else "memory://",
                                                           store=store)
            main = project / "config" / "wasla.yaml"
            main.write_text(main.read_text().replace(
                "  bodies_days: 30", "  bodies_days: 0.0014\n  every_s: 30").replace(
                "  metadata_days: 365", "  metadata_days: 0.0035"))
            if store:
                procs = {"intake": start_engine(project, roles=("intake",), name="intake"),
                         "workers": start_engine(project, {"WASLA_OPS_PORT": "0"}, roles=("transform", "deliver"),
                                                 name="workers")}
            else:
                procs = {"engine": start_engine(project)}
            try:
                wait_port(adt_port, timeout=60, proc=next(iter(procs.values())))
                lanes = 8
                acked = [0] * lanes
                threads = [threading.Thread(target=sender, args=((adt_port, lab_port), i, lanes, total, acked),
                                            daemon=True) for i in range(lanes)]
                t0 = time.monotonic()
                for t in threads:
                    t.start()
                rows = []
                path = out / f"soak-{setup}.csv"
                with path.open("w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["seconds", "acked", *(f"rss_kb_{n}" for n in procs), "journal_bytes"])
                    while any(t.is_alive() for t in threads):
                        time.sleep(5)
                        row = [round(time.monotonic() - t0, 1), sum(acked),
                               *(rss_kb(p.pid) for p in procs.values()), journal_bytes(project, store)]
                        rows.append(row)
                        w.writerow(row)
                        fh.flush()
                        print(f"  {row}", file=sys.stderr)
                report(setup, list(procs), rows, out, total)
            finally:
                for p in procs.values():
                    stop_engine(p)
    finally:
        if store_ctx:
            store_ctx.__exit__(None, None, None)


def report(setup: str, names: list[str], rows: list[list[float]], out: Path, total: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, name in enumerate(names):
        ax.plot(xs, [r[2 + i] / 1024 for r in rows], label=f"RSS {name} (MB)")
    ax.plot(xs, [r[-1] / 1e6 for r in rows], label="journal on disk (MB)", linestyle="--")
    ax.set_xlabel("messages ACKed")
    ax.set_ylabel("MB")
    ax.set_title(f"Wasla soak, {setup}: {total:,} messages")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"soak-{setup}.png", dpi=110)
    warm = [r for r in rows if r[1] >= total * 0.1] or rows
    seconds = rows[-1][0]
    print(f"\n{setup}: {rows[-1][1]:,} messages in {seconds:,.0f} s ({rows[-1][1] / seconds:,.0f}/s)\n")
    print("| process | RSS after warm-up (10 %) MB | RSS at the end MB | max MB | slope after warm-up MB per 100k |")
    print("|---|---:|---:|---:|---:|")
    for i, name in enumerate(names):
        ys = [r[2 + i] / 1024 for r in warm]
        xw = [r[1] for r in warm]
        mx, my = sum(xw) / len(xw), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xw) or 1.0
        slope = sum((x - mx) * (y - my) for x, y in zip(xw, ys, strict=True)) / den * 100_000
        print(f"| {name} | {ys[0]:,.0f} | {ys[-1]:,.0f} | {max(ys):,.0f} | {slope:+.2f} |")
    sizes = [r[-1] / 1e6 for r in warm]
    print(f"\njournal on disk after warm-up: {sizes[0]:,.1f} MB, at the end {sizes[-1]:,.1f} MB,"
          f" max {max(sizes):,.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--setup", choices=["embedded", "rabbitmq"], default="embedded")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    soak(args.setup, args.messages, args.out, args.amqp, args.pg)


if __name__ == "__main__":
    main()
