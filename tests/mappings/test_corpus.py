"""The public corpus (139 messages written by others): every covered type converts and validates;
every other type is refused in one line, never with a traceback."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import MappingError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import CORPUS, ROOT, TOOLS, WASLA

pytestmark = pytest.mark.skipif(not CORPUS.exists() and not os.environ.get("CI"), reason="../shared/corpus is absent")
MAPPINGS = ["adt", "oru_r01", "orders", "mdm", "siu", "vxu", "ppr", "ref", "rde", "rds", "omp", "ras", "oul", "omg",
            "dft", "bar"]
# the channel the corpus arrives on names its sender, as a production channel does (bench/corpus.py POLICY):
# the PPR samples have no MSH-3/MSH-4 and no assigning authority
POLICY = {"sender": "CORPUS-HL7V2-MICROSOFT"}


def _mapping(converter: Converter, message_type: str) -> str | None:
    return next((n for n in MAPPINGS if message_type in converter.spec(n).accepts), None)


def test_every_covered_message_converts_and_validates(converter: Converter, tmp_path: Path) -> None:
    tally: Counter[str] = Counter()
    for path in sorted(CORPUS.glob("*.hl7")):
        msg = parse(decode(path.read_bytes()))
        name = _mapping(converter, msg.message_type)
        if name is None:
            with pytest.raises(MappingError, match="^at MSH-9: unsupported message type"):
                converter.convert("adt", msg, NOW)
            tally["unsupported"] += 1
            continue
        (tmp_path / f"{path.stem}.json").write_bytes(converter.convert(name, msg, NOW, POLICY).bundle)
        tally[name] += 1
    assert (tally["adt"] >= 59 and tally["oru_r01"] >= 4 and tally["orders"] >= 10 and tally["mdm"] >= 13
            and tally["siu"] >= 15 and tally["vxu"] >= 4 and tally["ppr"] >= 3
            and tally["ref"] >= 4 and tally["rde"] >= 4 and tally["rds"] >= 2
            and tally["oul"] >= 6
            and tally["omg"] >= 2
            and tally["dft"] >= 4 and tally["bar"] >= 6), tally  # the claims families (issue 26)
    if (TOOLS / "fhir-validate").exists() or os.environ.get("CI"):  # in CI a missing validator fails
        check = subprocess.run([str(TOOLS / "fhir-validate"), "-q", str(tmp_path)], capture_output=True, text=True,
                               timeout=600)
        converted = sum(v for k, v in tally.items() if k != "unsupported")
        assert f"{converted} valid, 0 invalid" in check.stdout, check.stdout[-3000:]


@pytest.mark.parametrize("name", ["ADT-A01-01.hl7"])
def test_cli_refuses_an_uncovered_type_in_one_line(name: str, tmp_path: Path) -> None:
    """With BAR and DFT converted (issue 26) every corpus family has a mapping: a message whose MSH-9 names a
    type no mapping accepts (here an ADT relabelled MFN^M02) is refused in one line, never with a traceback."""
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{name} not in this corpus")
    text = path.read_bytes().replace(b"ADT^A01^ADT_A01", b"MFN^M02^MFN_M02", 1)
    assert b"MFN^M02" in text
    relabelled = tmp_path / "MFN-M02.hl7"
    relabelled.write_bytes(text)
    result = subprocess.run([WASLA, "convert", str(relabelled)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported message type" in lines[0] and "Traceback" not in result.stderr
