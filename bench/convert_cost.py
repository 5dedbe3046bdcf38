"""Conversion cost in CPU instructions, which a busy shared machine does not blur (wall-clock does).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/convert_cost.py MAPPINGS N_ADT,N_LEAN,N_ORU

Run from the root of the engine to measure (a git worktree of an older commit measures that commit),
once with 0,0,0 and once per message kind with 100 of it (100,0,0 …): the difference of callgrind's
"Collected" count over 100 is the instructions per message, start-up and compilation cancelled out.
MAPPINGS may be another commit's mappings/ folder: an engine with the mappings of before tells the cost of
its mechanisms apart from the cost of mapping more. The messages are bench/convert.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "bench"))
import convert as bench  # noqa: E402  (the engine's own bench, from the worktree measured)

from engine.hl7v2 import decode, parse  # noqa: E402
from engine.mapping import Converter  # noqa: E402


def main() -> None:
    mappings, counts = Path(sys.argv[1]), [int(x) for x in sys.argv[2].split(",")]
    root = bench.ROOT
    conv = Converter(mappings, root / "config/schema", root / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    cases = [(bench.variants((root / "mappings/adt/fixtures/ADT01-23.hl7").read_bytes(), b"10006579", 300), "adt"),
             (bench.variants((root / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes(), b"IPP123456", 300),
              "adt"),
             (bench.variants(bench.oru_10_obx(), b"IPP778899", 300), "oru_r01")]
    for (raws, mapping), n in zip(cases, counts, strict=True):
        conv.spec(mapping)
        for raw in raws[200:220]:  # warm, the same in every run
            conv.convert(mapping, parse(decode(raw)), bench.NOW)
        for raw in raws[:n]:
            conv.convert(mapping, parse(decode(raw)), bench.NOW)


if __name__ == "__main__":
    main()
