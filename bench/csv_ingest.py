"""CSV drop throughput on the embedded defaults: generate a lab CSV, drop it, time it until every
Bundle is written, and report rows/s, the reject count and the engine's peak RSS.

    .venv/bin/python bench/csv_ingest.py [--rows 1000000] [--per-request 10] [--bad 0.01]

Rows are synthetic (ZZ names, fake ids). 1 row in 100 is malformed (alternately a non-numeric result
and a short row); the reject file must hold exactly those.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("numero_demande;ipp;nom;prenom;date_naissance;sexe;code_analyse;libelle_analyse;resultat;unite;normes;"
          "date_prelevement\n")
TESTS = [("GLY", "Glycémie à jeun", "mmol/l", "3.9-6.1"), ("CREA", "Créatinine", "mg/L", "6-12"),
         ("HBA1C", "Hémoglobine glyquée", "%", "4-6"), ("HB", "Hémoglobine", "g/dl", "12-16"),
         ("CRP", "Protéine C réactive", "mg/L", "0-5")]


def generate(path: Path, rows: int, per_request: int, bad: float) -> tuple[int, int]:
    """Write the file; returns how many rows are malformed, and how many requests keep a good row (Bundles)."""
    rnd = random.Random(42)
    malformed = 0
    good_requests: set[int] = set()
    every = int(1 / bad) if bad else 0
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            req = i // per_request
            code, label, unit, ref = TESTS[i % len(TESTS)]
            value = f"{rnd.uniform(1, 20):.2f}".replace(".", ",")
            line = (f"D{req:08d};IPP{req % 50000:06d};ZZTEST;Patient;01/01/1980;F;{code};{label};{value};{unit};"
                    f"{ref};21/11/2026 07:00\n")
            if every and i % every == every - 1:
                malformed += 1
                line = line.replace(f";{value};", ";abc;") if (i // every) % 2 == 0 else f"D{req:08d};IPP;ZZ\n"
            else:
                good_requests.add(req)
            out.write(line)
    return malformed, len(good_requests)


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: the peak resident set so far; VmRSS: now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--per-request", type=int, default=10)
    ap.add_argument("--bad", type=float, default=0.01)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wasla-csv-bench-"))
    for name in ("config", "mappings", "nomenclatures"):
        shutil.copytree(ROOT / name, tmp / name)
    (tmp / "config/channels/adt-mllp.yaml").unlink()
    (tmp / "config/channels/lab-csv.yaml").write_text(
        "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-BENCH\n"
        "    settle_s: 0.2\n    poll_s: 0.1\npipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n")
    src = tmp / "source.csv"
    malformed, bundles = generate(src, args.rows, args.per_request, args.bad)
    wasla = str(Path(sys.executable).with_name("wasla"))
    proc = subprocess.Popen([wasla, "run", "--config", str(tmp / "config")], cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        folder = tmp / "var/in/lab"
        while not (folder / "done").exists():
            time.sleep(0.05)
        groups = -(-args.rows // args.per_request)
        start = time.perf_counter()
        src.rename(folder / "lab.csv")
        out = tmp / "var/out/archive-ndjson"
        lines, samples, read = 0, {}, {}  # progress quarter → resident memory; bytes counted per file
        while True:
            for f in out.glob("*.ndjson") if out.exists() else ():
                with f.open("rb") as fh:  # count only what was added since the last look
                    fh.seek(read.get(f, 0))
                    chunk = fh.read()
                read[f] = read.get(f, 0) + len(chunk)
                lines += chunk.count(b"\n")
            quarter = min(4, 4 * lines // max(bundles, 1))
            samples.setdefault(quarter, rss_mb(proc.pid, "VmRSS"))
            if lines >= bundles and (folder / "done/lab.csv").exists():
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        rss = rss_mb(proc.pid)
        rejects = (folder / "failed/lab.csv.rejects.csv")
        rejected = max(0, rejects.read_text(encoding="utf-8").count("\n") - 1) if rejects.exists() else 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    curve = " / ".join(f"{samples[q]:,.0f}" for q in sorted(samples) if q < 4)
    print("| rows | requests | malformed rows | rejected rows | seconds | rows/s | engine peak RSS"
          " | RSS at 0/25/50/75 % |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {args.rows:,} | {groups:,} | {malformed:,} | {rejected:,} | {elapsed:,.1f} | {args.rows / elapsed:,.0f} |"
          f" {rss:,.0f} MB | {curve} MB |")


if __name__ == "__main__":
    main()
