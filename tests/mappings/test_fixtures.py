"""Every mapping's fixtures: the expected Bundle, byte-identical twice, accepted by two validators.

Each `mappings/<name>/fixtures/X.hl7` has its expected `X.json` (clock pinned to 2026-11-24T12:00Z);
the hand review of each is written in the fixture folder's README.md.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT, TOOLS

FIXTURES = sorted(ROOT.glob("mappings/*/fixtures/*.hl7"))


def _convert(converter: Converter, path: Path) -> bytes:
    return converter.convert(path.parent.parent.name, parse(decode(path.read_bytes())), NOW).bundle


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.parent.name}/{p.stem}" for p in FIXTURES])
class TestFixture:
    def test_matches_expected(self, converter: Converter, path: Path) -> None:
        got = orjson.loads(_convert(converter, path))
        assert got == orjson.loads(path.with_suffix(".json").read_bytes())

    def test_deterministic(self, converter: Converter, path: Path) -> None:
        assert _convert(converter, path) == _convert(converter, path)

    def test_valid_r4b_model(self, converter: Converter, path: Path) -> None:
        bundle = Bundle.model_validate_json(_convert(converter, path))
        assert bundle.type == "transaction"
        assert len({e.fullUrl for e in bundle.entry}) == len(bundle.entry), "fullUrls must be unique"


def test_every_mapping_has_fixtures() -> None:
    for mapping in ROOT.glob("mappings/*/mapping.yaml"):
        assert list((mapping.parent / "fixtures").glob("*.hl7")), f"{mapping.parent.name} has no fixture"


@pytest.mark.skipif(not (TOOLS / "fhir-validate").exists(), reason="../shared/tools is absent")
def test_expected_fixtures_pass_the_official_validator(tmp_path: Path) -> None:
    for f in FIXTURES:
        shutil.copy(f.with_suffix(".json"), tmp_path / f"{f.parent.parent.name}-{f.stem}.json")
    check = subprocess.run([str(TOOLS / "fhir-validate"), str(tmp_path)], capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0 and f"{len(FIXTURES)} valid, 0 invalid" in check.stdout, check.stdout
