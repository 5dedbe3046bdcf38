"""Cost of reading hostile HL7 v2 headers: the old MSH-18 pattern against what replaced it.

    python bench/er7_adversarial.py [--ceiling 30] [--repeat 5]

For each shape of tests/engine/hl7v2/test_er7_adversarial.py it prints the old pattern's cost (the
regex `decode` used before issue 23, run in a child process killed at `--ceiling` seconds: it
does not release the GIL and cannot be interrupted), then the new `declared_charset`, `decode`
and `parse` (what intake runs on the event loop for every message), and a batch split where the
shape is a batch. Times are the best of `--repeat` runs; the shared machine makes single runs noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.errors import ParseError  # noqa: E402
from engine.hl7v2.batch import is_batch, split_batch  # noqa: E402
from engine.hl7v2.er7 import declared_charset, decode, parse  # noqa: E402
from tests.engine.hl7v2.test_er7_adversarial import SHAPES  # noqa: E402
from tests.support import CORPUS  # noqa: E402

#: engine/hl7v2/er7.py before issue 23: MSH-18 by a pattern whose lazy `[^\r\n]*?` can also match the
#: separator, so on an MSH without an 18th field it tries every way to place 16 separators.
OLD_MSH18 = re.compile(rb"^MSH(.)(?:[^\r\n]*?\1){16}([^\r\n|^]*)")

_CHILD = """
import re, sys, time
sys.path.insert(0, {root!r})
from bench.er7_adversarial import OLD_MSH18, shapes
raw = shapes()[{name!r}]
best = float("inf")
for _ in range({repeat}):
    t = time.perf_counter()
    OLD_MSH18.match(raw.lstrip())
    best = min(best, time.perf_counter() - t)
print(best)
"""


def shapes() -> dict[str, bytes]:
    """The test's hostile shapes, and ordinary corpus messages for scale (ADT-A40-01: the corpus's worst for
    the old pattern, no MSH-18; ADT01-23 has an MSH-18)."""
    names = ("ADT01-23", "ORU-R01-01", "MDM-T09-02", "ADT-A40-01")
    ordinary = {f"corpus {n}": (CORPUS / f"{n}.hl7").read_bytes() for n in names if (CORPUS / f"{n}.hl7").exists()}
    return {**ordinary, **SHAPES}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def old_cost(name: str, repeat: int, ceiling: float) -> float | None:
    """The old pattern's cost on a shape, in a child process; None when it passed the ceiling."""
    code = _CHILD.format(root=str(ROOT), name=name, repeat=repeat)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=ceiling,
                             check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip())


def _parse(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse(text)


def fmt(seconds: float | None, ceiling: float) -> str:
    if seconds is None:
        return f"> {ceiling:g} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ceiling", type=float, default=30.0, help="seconds before the old pattern's run is killed")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("| shape | bytes | old MSH-18 regex | new MSH-18 split | decode | parse | batch split |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, raw in shapes().items():
        old = old_cost(name, 1 if len(raw) > 10_000 else args.repeat, args.ceiling)
        new = best_of(lambda raw=raw: declared_charset(raw), args.repeat)
        dec = best_of(lambda raw=raw: decode(raw), args.repeat)
        text = decode(raw)
        par = best_of(lambda text=text: _parse(text), args.repeat)
        bat = fmt(best_of(lambda raw=raw: split_batch(raw), args.repeat), 0) if is_batch(raw) else "–"
        print(f"| {name} | {len(raw):,} | {fmt(old, args.ceiling)} | {fmt(new, 0)} | {fmt(dec, 0)} | {fmt(par, 0)} "
              f"| {bat} |", flush=True)


if __name__ == "__main__":
    main()
