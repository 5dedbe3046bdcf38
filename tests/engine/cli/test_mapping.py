"""`wasla mapping test`: every fixture passes as shipped; a change shows as one line per element."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.support import ROOT, WASLA, make_project


def _mapping_test(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "mapping", "test", "--config", str(project / "config"), *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def test_shipped_fixtures_pass() -> None:
    result = _mapping_test(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    fixtures = len(list(ROOT.glob("mappings/*/fixtures/*.hl7")))
    assert result.stdout.rstrip().endswith(f"{fixtures} passed, 0 failed")


def test_a_difference_is_named_by_resource_and_element(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    expected = project / "mappings/oru_r01/fixtures/ma-labo-3-groupes.json"
    bundle = orjson.loads(expected.read_bytes())
    obs = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Observation")
    bundle["entry"][obs]["resource"]["status"] = "preliminary"
    del bundle["entry"][0]["resource"]["gender"]
    expected.write_bytes(orjson.dumps(bundle))
    result = _mapping_test(project, "oru_r01")
    assert result.returncode == 1
    lines = [ln.strip() for ln in result.stdout.splitlines()]
    assert "FAIL    oru_r01/ma-labo-3-groupes" in result.stdout
    assert f'entry[{obs}] Observation.status: expected "preliminary", got "final"' in lines
    assert 'entry[0] Patient.gender: not expected, got "male"' in lines
    others = len(list(expected.parent.glob("*.hl7"))) - 1
    assert others >= 1 and lines[-1] == f"{others} passed, 1 failed"  # the other oru_r01 fixtures still pass


def test_update_writes_the_new_output(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    expected = project / "mappings/orders/fixtures/ORM-O01-01.json"
    expected.unlink()
    first = _mapping_test(project, "orders")
    assert first.returncode == 1 and "no expected output (ORM-O01-01.json)" in first.stdout
    updated = _mapping_test(project, "orders", "--update")
    assert updated.returncode == 0 and "updated orders/ORM-O01-01" in updated.stdout
    assert orjson.loads(expected.read_bytes()) == orjson.loads((ROOT / "mappings/orders/fixtures/ORM-O01-01.json")
                                                                .read_bytes())
    assert _mapping_test(project, "orders").returncode == 0


def test_unknown_mapping_is_one_line(tmp_path: Path) -> None:
    result = _mapping_test(ROOT, "nope")
    assert result.returncode == 1 and result.stderr.strip().startswith("error: no mapping nope (known: adt")
    assert "Traceback" not in result.stderr
