"""`--explain`: each element's source fields, read from the group the element was made from."""

from __future__ import annotations

import subprocess

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT, WASLA

ORU = ROOT / "mappings/oru_r01/fixtures/ma-labo-3-groupes.hl7"


def _explain(converter: Converter):  # type: ignore[no-untyped-def]
    return converter.explain("oru_r01", parse(decode(ORU.read_bytes())), NOW)


def test_explaining_changes_nothing_in_the_bundle(converter: Converter) -> None:
    plain = converter.convert("oru_r01", parse(decode(ORU.read_bytes())), NOW).bundle
    assert orjson.dumps(_explain(converter).bundle) == plain


def test_each_observation_value_comes_from_its_own_obx(converter: Converter) -> None:
    """valueQuantity (NM, and SN <5) ← OBX-5 with OBX-6 (units) and OBX-2 (the switch), from its own OBX."""
    ex = _explain(converter)
    msg = parse(decode(ORU.read_bytes()))
    rows = [r for r in ex.lineage if r.resource == "Observation" and r.element == "valueQuantity"]
    nm_obx = [s.sequence for s in msg.segments if s.name == "OBX" and s.field(2).text in ("NM", "SN")]
    assert [r.segments for r in rows] == [(seq,) for seq in nm_obx]
    assert all(set(r.sources) == {"OBX-2", "OBX-5", "OBX-6"} for r in rows)


def test_side_resources_and_references_are_explained(converter: Converter) -> None:
    ex = _explain(converter)
    practitioner = next(r for r in ex.lineage if r.resource == "Practitioner")
    assert practitioner.sources in (("ORC-12",), ("OBR-16",))
    subject = next(r for r in ex.lineage if r.resource == "Observation" and r.element == "subject")
    assert subject.sources == ()


def test_fields_not_read_are_exact(converter: Converter) -> None:
    """ORC-1 is read only by a rule whose condition never held here; ZLB and NTE-2 by no rule at all."""
    assert _explain(converter).not_read == ["ORC-1", "ZLB", "NTE-2"]


def test_cli_prints_lineage_and_json() -> None:
    text = subprocess.run([WASLA, "convert", str(ORU), "--explain"], cwd=ROOT, capture_output=True, timeout=60)
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "valueQuantity" in out and "OBX-5 (observation value)" in out and "ZLB  (whole segment)" in out
    js = subprocess.run([WASLA, "convert", str(ORU), "--explain", "--json"], cwd=ROOT, capture_output=True,
                        timeout=60)
    doc = orjson.loads(js.stdout)
    assert doc["bundle"]["type"] == "transaction" and doc["not_read"] == ["ORC-1", "ZLB", "NTE-2"]
    assert {"resource", "full_url", "element", "sources", "rule", "segments"} <= set(doc["lineage"][0])
