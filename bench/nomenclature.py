"""Nomenclature costs: loading every shipped set, one code lookup, one identifier validation.

    .venv/bin/python bench/nomenclature.py
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.nomenclature import load_registry

ROOT = Path(__file__).resolve().parents[1]


def per_call(fn, n: int = 200_000) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        reg = load_registry(ROOT / "nomenclatures", "https://fhir.wasla.ma")
        loads.append(time.perf_counter() - start)
    provinces, cin = reg.codeset("ma-provinces"), reg.identifier_system("cin")
    rows = [
        ("load every shipped set (best of 5)", f"{min(loads) * 1000:.1f} ms", "< 1 s"),
        ("lookup, exact code (MA-NOU)", f"{per_call(lambda: provinces.lookup('MA-NOU')):.2f} µs", "< 2 µs"),
        ("lookup, other case (ma-nou)", f"{per_call(lambda: provinces.lookup('ma-nou')):.2f} µs", "< 2 µs"),
        ("lookup, unknown code", f"{per_call(lambda: provinces.lookup('MA-XXX')):.2f} µs", "< 2 µs"),
        ("validate CIN (regex)", f"{per_call(lambda: cin.validate('AB123456')):.2f} µs", "—"),
        ("validate ICE (regex + mod 97-10)",
         f"{per_call(lambda: reg.validate_id('ice', '001561191000066'), 50_000):.2f} µs", "—"),
    ]
    print(f"{sum(len(c) for c in reg.codesets.values())} codes in {len(reg.codesets)} code sets, "
          f"{len(reg.identifiers)} identifier systems\n")
    print("| operation | cost | target |\n|---|---:|---:|")
    for name, cost, target in rows:
        print(f"| {name} | {cost} | {target} |")


if __name__ == "__main__":
    main()
