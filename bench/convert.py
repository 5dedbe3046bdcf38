"""Conversion speed on one core: parse + map + serialize (the transform stage without the journal).

    .venv/bin/python bench/convert.py [--seconds 3]

Messages: ADT^A01 (the corpus ADT01-23 fixture: PID, NK1, PV1, DG1, 3 IN1; 1.3 KB), a lean
ADT^A01 (the Moroccan fixture: PID with two identifiers, PV1; for scale, not instead) and an
ORU^R01 with 10 OBX in one ORDER_OBSERVATION (built from the Moroccan ORU fixture), an MDM^T02
carrying a small PDF discharge letter in OBX ED (the mdm fixture; base64 passed as sent) and a VXU^V04
(the Moroccan PNI pentavalent fixture: one Immunization, Patient, Encounter) and an RDE^O11 (the CHU
Ibn Sina amoxicilline fixture: one MedicationRequest with its TQ1 and RXR, Patient, Encounter). Each is
decoded from bytes, parsed and converted from scratch every time, as the transform does, and the
run cycles through 1,000 variants (other control ids, patient ids and times) so that no per-value
cache is flattered by converting one message over and over.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from engine.runtime import tune_gc

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def oru_10_obx() -> bytes:
    lines = (ROOT / "mappings/oru_r01/fixtures/ma-labo-3-groupes.hl7").read_bytes().split(b"\r")
    head = [ln for ln in lines if ln[:3] in (b"MSH", b"PID", b"PV1")]
    orc = next(ln for ln in lines if ln.startswith(b"ORC"))
    obr = next(ln for ln in lines if ln.startswith(b"OBR"))
    obx = [ln for ln in lines if ln.startswith(b"OBX|") and b"|NM|" in ln]
    body = []
    for i in range(10):
        src = obx[i % len(obx)].split(b"|")
        src[1] = str(i + 1).encode()
        src[3] = f"{1000 + i}-{i % 10}^Analyte {i}^LN".encode()
        body.append(b"|".join(src))
    return b"\r".join([*head, orc, obr, *body]) + b"\r"


_TIME = re.compile(rb"(?<!\d)((?:19|20)\d{10})")


def variants(raw: bytes, patient_id: bytes, count: int = 1000) -> list[bytes]:
    """`count` copies with their own control id, patient id and times (shifted by i minutes)."""
    out = []
    for i in range(count):
        shift = timedelta(minutes=i)

        def moved(m: re.Match[bytes], shift: timedelta = shift) -> bytes:
            t = datetime.strptime(m.group(1).decode(), "%Y%m%d%H%M") + shift
            return t.strftime("%Y%m%d%H%M").encode()

        msg = _TIME.sub(moved, raw).replace(patient_id, patient_id + str(i).encode())
        fields = msg.split(b"|", 10)
        fields[9] = fields[9] + b"-" + str(i).encode()  # MSH-10
        out.append(b"|".join(fields))
    return out


def run(converter: Converter, mapping: str, raws: list[bytes], seconds: float) -> tuple[int, float]:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for raw in raws[:100]:
            converter.convert(mapping, parse(decode(raw)), NOW)
        n += 100
        raws = raws[100:] + raws[:100]
    return n, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    conv = Converter(ROOT / "mappings", ROOT / "config/schema", ROOT / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    cases = [("ADT^A01", "adt", variants((ROOT / "mappings/adt/fixtures/ADT01-23.hl7").read_bytes(), b"10006579"),
              5000),
             ("ADT^A01 (PID + PV1 only)", "adt",
              variants((ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes(), b"IPP123456"), 5000),
             ("ORU^R01 (10 OBX)", "oru_r01", variants(oru_10_obx(), b"IPP778899"), 1500),
             ("MDM^T02 (PDF letter, OBX ED)", "mdm",
              variants((ROOT / "mappings/mdm/fixtures/fr-mdm-t02-crh-pdf.hl7").read_bytes(), b"IPP100234"), 1500),
             ("VXU^V04 (PNI, one dose)", "vxu",
              variants((ROOT / "mappings/vxu/fixtures/ma-pni-penta2.hl7").read_bytes(), b"IPP-240187"), 1500),
             ("RDE^O11 (amoxicilline, TQ1 + RXR)", "rde",
              variants((ROOT / "mappings/rde/fixtures/ma-chuis-amoxicilline.hl7").read_bytes(), b"IPP-551203"), 1500),
             ("OUL^R22 (glycémie + HbA1c, one tube)", "oul",
              variants((ROOT / "mappings/oul/fixtures/ma-chu-glycemie-hba1c.hl7").read_bytes(), b"IPP445566"), 1500)]
    for _, mapping, _, _ in cases:
        conv.spec(mapping)
    tune_gc()  # as the engine does once its mappings are compiled
    print("| message | bytes | resources | msg/s | µs/msg | target msg/s |\n|---|---:|---:|---:|---:|---:|")
    for label, mapping, raws, target in cases:
        raw = raws[0]
        result = conv.convert(mapping, parse(decode(raw)), NOW)
        assert not result.warnings or mapping != "oru_r01", result.warnings
        resources = result.bundle.count(b'"fullUrl"')
        run(conv, mapping, raws, 0.5)  # warm-up
        n, elapsed = run(conv, mapping, raws, args.seconds)
        goal = "—" if target is None else f"{target:,}"  # VXU: no target set yet (issue 25)
        print(f"| {label} | {len(raw)} | {resources} | {n / elapsed:,.0f} | {elapsed / n * 1e6:,.0f} | {goal} |")


if __name__ == "__main__":
    main()
