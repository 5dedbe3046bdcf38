"""Corpus tally: every public corpus message converted by the mapping that accepts its type, every Bundle
validated by others' checkers (`../shared/tools/fhir-validate`: the R4 JSON schema and Medplum's validator).

    .venv/bin/python bench/corpus.py [--corpus DIR] [--keep DIR]

Prints a table by message family (MSH-9.1): messages, converted, refused (no mapping accepts the type),
failed (the conversion raised), and how many of the converted Bundles the validator accepts; then one line per
failure or invalid Bundle (file name and error text, no message content). BAR and DFT (the claims issue, 26)
convert with the bar and dft mappings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.errors import WaslaError  # noqa: E402
from engine.hl7v2 import decode, parse  # noqa: E402
from engine.mapping import Converter  # noqa: E402

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
# The channel the corpus arrives on names its sender (`pipeline.sender`), as a production channel does: a few
# corpus messages (the PPR samples) have neither MSH-3 nor MSH-4 nor an assigning authority, and a number
# without any namespace fails (README, Resource ids). Messages with MSH-3/MSH-4 keep them for their EI keys.
POLICY = {"sender": "CORPUS-HL7V2-MICROSOFT"}
VALIDATE = ROOT.parent / "shared" / "tools" / "fhir-validate"


def accepting(conv: Converter) -> dict[str, str]:
    """MSH-9 type^trigger → the mapping whose `accepts:` lists it (the first one, by folder name)."""
    table: dict[str, str] = {}
    for file in sorted(conv.mappings_dir.glob("*/mapping.yaml")):
        for kind in conv.spec(file.parent.name).accepts:
            table.setdefault(kind, file.parent.name)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "hl7v2-microsoft")
    ap.add_argument("--keep", type=Path, help="write the Bundles here (default: a temporary folder)")
    args = ap.parse_args()
    conv = Converter(ROOT / "mappings", ROOT / "config/schema", ROOT / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    table = accepting(conv)
    out = args.keep or Path(tempfile.mkdtemp(prefix="wasla-corpus-"))
    out.mkdir(parents=True, exist_ok=True)
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    problems: list[str] = []
    family_of: dict[str, str] = {}
    for path in sorted(args.corpus.glob("*.hl7")):
        raw = path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        try:
            msg = parse(decode(raw))
            kind = msg.message_type
        except WaslaError as exc:
            tally["(unreadable)"]["messages"] += 1
            tally["(unreadable)"]["failed"] += 1
            problems.append(f"{path.name}: not read: {exc}")
            continue
        family = kind.split("^")[0]
        tally[family]["messages"] += 1
        mapping = table.get(kind)
        if mapping is None:
            tally[family]["refused"] += 1
            continue
        try:
            bundle = conv.convert(mapping, msg, NOW, POLICY).bundle
        except WaslaError as exc:
            tally[family]["failed"] += 1
            problems.append(f"{path.name} ({kind}, {mapping}): {exc}")
            continue
        tally[family]["converted"] += 1
        (out / f"{path.stem}.json").write_bytes(bundle)
        family_of[path.stem] = family
    checked = subprocess.run([str(VALIDATE), "-q", str(out)], capture_output=True, text=True, timeout=600)
    invalid = {Path(line.split()[1].rstrip(":")).stem for line in checked.stdout.splitlines()
               if line.startswith("INVALID ")}
    summary = checked.stdout.strip().splitlines()[-1:] or [checked.stderr.strip()]
    if summary[0] != f"fhir-validate: {len(family_of) - len(invalid)} valid, {len(invalid)} invalid":
        sys.exit(f"the validator did not check every Bundle: {summary[0][:200]}")  # never count unchecked as valid
    for stem, family in family_of.items():
        tally[family]["valid" if stem not in invalid else "invalid"] += 1
    problems += [f"{stem}.hl7: the validator refused its Bundle" for stem in sorted(invalid)]
    print("| family | messages | converted | valid | invalid | refused (no mapping) | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total: Counter[str] = Counter()
    for family in sorted(tally, key=lambda f: (-tally[f]["messages"], f)):
        c = tally[family]
        total.update(c)
        print(f"| {family} | {c['messages']} | {c['converted']} | {c['valid']} | {c['invalid']} | {c['refused']} "
              f"| {c['failed']} |")
    print(f"| all | {total['messages']} | {total['converted']} | {total['valid']} | {total['invalid']} "
          f"| {total['refused']} | {total['failed']} |")
    for line in problems:
        print(line)


if __name__ == "__main__":
    main()
