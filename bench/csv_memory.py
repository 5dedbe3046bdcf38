"""Peak memory of taking in a CSV file, whatever its shape (issue 23: ≤ 400 MB for a 200 MB file of ONE group).

    .venv/bin/python bench/csv_memory.py [--mb 200] [--grouped-mb 20]

Each file is taken in by a child process running the real channel (channels.csv_drop.CSVDropInput on a
folder, SQLite journal, embedded broker; a thread empties the transform queue as a worker would, so
reading is not held back by the backlog bound). The child's peak RSS comes from
resource.getrusage(RUSAGE_CHILDREN) once it has exited. Shapes:

- one group: every row the same request (the 180 k-row group that once took 2 GB). With the default
  limits (max_group_rows 10,000, max_group_bytes 16 MiB) it is rejected whole, streamed to the reject
  file, with one failed record in the journal;
- groups of 10 rows: the ordinary shape, each group one message.

Rows are synthetic (ZZ names, fake ids). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADER = ("numero_demande;ipp;nom;prenom;date_naissance;sexe;code_analyse;libelle_analyse;resultat;unite;normes;"
          "date_prelevement\n")


def generate(path: Path, mb: int, per_group: int) -> int:
    """A file of about `mb` MB; `per_group` 0 means one group. Returns its rows."""
    target, written, n = mb << 20, 0, 0
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        while written < target:
            req = 0 if per_group == 0 else n // per_group
            line = (f"D{req:08d};IPP{req % 50000:06d};ZZTEST;Patient;01/01/1980;F;C{n % 7};Analyse {n % 7};"
                    f"{n % 97},5;mmol/l;1-9;21/11/2026 07:00\n")
            out.write(line)
            written += len(line)
            n += 1
    return n


def child(project: Path) -> None:
    """Run the channel until the file is in done/ (the measured process)."""
    from channels.csv_drop import CSVDropInput
    from engine.config import load_config
    from engine.pipeline.intake import Intake
    from engine.runtime import make_converter, routes_of
    from engine.store import Journal
    from engine.transport import open_transport

    config = load_config(project / "config", env={})
    journal = Journal(config.store.url)
    broker = open_transport(config.broker, routes_of(config))
    broker.declare()
    stop = threading.Event()
    queues = broker.transform_queues()
    threading.Thread(target=lambda: broker.consume(queues, lambda batch: [d.ack() for d in batch], stop,
                                                   name="drain"), daemon=True).start()
    channel = config.channel("lab-csv")
    folder = Path(str(channel.input["folder"]))

    async def run() -> None:
        inp = CSVDropInput(channel, Intake(journal, broker, make_converter(config)), ThreadPoolExecutor(2))
        await inp.start()
        while not (folder / "done/lab.csv").exists():
            await asyncio.sleep(0.2)
        await inp.stop()

    asyncio.run(run())
    stop.set()
    counts = journal.messages.counts()
    print(f"{sum(counts.values())} {counts.get('failed', 0)}")
    journal.close()


def measure(mb: int, per_group: int) -> tuple[int, int, int, float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="wasla-csv-memory-"))
    try:
        for name in ("config", "mappings", "nomenclatures"):
            shutil.copytree(ROOT / name, tmp / name)
        (tmp / "config/channels/adt-mllp.yaml").unlink()
        (tmp / "config/channels/lab-csv.yaml").write_text(
            "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-BENCH\n"
            "    settle_s: 0.2\n    poll_s: 0.1\npipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n")
        folder = tmp / "var/in/lab"
        folder.mkdir(parents=True)
        rows = generate(folder / ".lab.part", mb, per_group)
        (folder / ".lab.part").rename(folder / "lab.csv")
        (folder / "lab.csv.ready").touch()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", str(tmp)], cwd=tmp, capture_output=True,
                             text=True, check=True)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak <= before:
            raise SystemExit("the child's peak is hidden by an earlier, larger one: run one shape at a time")
        messages, failed = (int(x) for x in out.stdout.split()[-2:])
        return rows, messages - failed, failed, elapsed, peak / 1024
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the one-group file")
    ap.add_argument("--grouped-mb", type=int, default=20, help="size of the file of 10-row groups (0: skip)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    shapes = [("groups of 10 rows", args.grouped_mb, 10)] if args.grouped_mb else []
    shapes.append(("one group", args.mb, 0))  # the largest last: RUSAGE_CHILDREN keeps the maximum
    print("| shape | file | rows | messages | failed records | seconds | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, mb, per in shapes:
        rows, messages, failed, elapsed, peak = measure(mb, per)
        print(f"| {label} | {mb} MB | {rows:,} | {messages:,} | {failed:,} | {elapsed:,.1f} | {peak:,.0f} MB |",
              flush=True)


if __name__ == "__main__":
    main()
