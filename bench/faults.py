"""The fault-injection scenarios of tests/faults at full size, with a table of what each took.

    python bench/faults.py [--scale 10]

Runs `pytest -m faults` with WASLA_FAULT_SCALE (the tests' load times this: 1,200 patients and
3,600 messages per scenario at 10, 12,000 for the worker kills) and prints, per scenario, the
outcome and its duration, read from pytest's JUnit report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.xml"
        env = {**os.environ, "WASLA_FAULT_SCALE": str(args.scale), "CI": "true"}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:logging", "-m", "faults", "tests/faults",
                        f"--junitxml={report}"], cwd=ROOT, env=env, check=False)
        cases = ET.parse(report).getroot().iter("testcase")
        print(f"\nfault scenarios, WASLA_FAULT_SCALE={args.scale} ({120 * args.scale:,} patients x 3 messages;"
              f" worker kills: {400 * args.scale:,} x 3)\n")
        print("| scenario | outcome | seconds |")
        print("|---|---|---:|")
        for case in cases:
            failed = case.find("failure") is not None or case.find("error") is not None
            print(f"| {case.get('name')} | {'FAILED' if failed else 'passed'} | {float(case.get('time', 0)):,.0f} |")


if __name__ == "__main__":
    main()
