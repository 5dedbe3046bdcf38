"""CSV files dropped in a folder, end to end through the engine: taken once, bad rows rejected with their
reasons, the good ones converted like an ORU, the same content in any encoding giving the same FHIR."""

from __future__ import annotations

import codecs
import csv
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.store import Journal
from tests.support import ROOT, engine, make_project, out_lines

SAMPLE = (ROOT / "mappings/csv_lab/fixtures/resultats.csv").read_text(encoding="utf-8")
BAD = ("LAB-6003;IPP1;ZZBAD;X;01/01/1980;F;GLY;Glycémie;abc;mmol/l;3.9-6.1;21/11/2026 09:00\n"
       "LAB-6004;IPP2;ZZBAD\n")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    project = make_project(tmp_path)
    (project / "config/channels/lab-csv.yaml").write_text(
        "description: lab results as CSV files\n"
        "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-AL-AMAL\n"
        "    settle_s: 0.3\n    poll_s: 0.1\n"
        "pipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    with engine(project):
        folder = project / "var/in/lab"
        deadline = time.monotonic() + 20
        while not (folder / "done").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield project


def _drop(project: Path, name: str, data: bytes) -> None:
    folder = project / "var/in/lab"
    (folder / f".{name}.part").write_bytes(data)
    (folder / f".{name}.part").rename(folder / name)  # a producer's atomic write


def _wait(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _resources(lines: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for line in lines for e in orjson.loads(line)["entry"]
            if e["resource"]["resourceType"] != "Provenance"]


def test_good_rows_delivered_bad_rows_rejected_with_reasons(lab: Path) -> None:
    _drop(lab, "results.csv", (SAMPLE + BAD).encode("utf-8"))
    folder = lab / "var/in/lab"
    _wait(lambda: (folder / "done/results.csv").exists())
    with (folder / "failed/results.csv.rejects.csv").open(encoding="utf-8", newline="") as fh:
        rejects = list(csv.reader(fh))
    assert rejects[0][:3] == ["line", "reason", "numero_demande"]
    assert [r[:2] for r in rejects[1:]] == [["5", "column resultat: expected a number, got 3 characters"],
                                            ["6", "expected 12 columns, got 3"]]
    assert rejects[1][2:5] == ["LAB-6003", "IPP1", "ZZBAD"]   # the row as it was, to fix and drop again
    _wait(lambda: len(out_lines(lab)) >= 2)
    lines = out_lines(lab)
    assert len(lines) == 2                                    # LAB-6001 (2 rows) and LAB-6002
    obs = [r for r in _resources(lines) if r["resourceType"] == "Observation"]
    assert [[c["code"] for c in o["code"]["coding"]] for o in obs] == [["GLY", "14771-0"], ["CREA", "2160-0"],
                                                                       ["HB", "718-7"]]
    j = Journal(f"sqlite:///{lab}/var/wasla.db")
    try:
        failed = j.messages.search(status="failed")
        assert sorted(r.reason for r in failed) == [
            "results.csv line 5: column resultat: expected a number, got 3 characters",
            "results.csv line 6: expected 12 columns, got 3"]
    finally:
        j.close()


def test_the_same_file_again_is_not_taken_twice(lab: Path) -> None:
    _drop(lab, "a.csv", SAMPLE.encode("utf-8"))
    _wait(lambda: len(out_lines(lab)) >= 2)
    _drop(lab, "a-copy.csv", SAMPLE.encode("utf-8"))
    _wait(lambda: (lab / "var/in/lab/done/a-copy.csv").exists())
    time.sleep(1.0)
    assert len(out_lines(lab)) == 2


def test_utf8_bom_and_windows_1252_give_the_same_fhir(lab: Path) -> None:
    latin = SAMPLE.replace("يوسف", "Youssef")
    variants = {"u.csv": latin.encode("utf-8"), "b.csv": codecs.BOM_UTF8 + latin.encode("utf-8"),
                "w.csv": latin.encode("cp1252")}
    seen: list[list[dict]] = []  # type: ignore[type-arg]
    for name, data in variants.items():
        before = len(out_lines(lab))
        _drop(lab, name, data)
        _wait(lambda before=before: len(out_lines(lab)) >= before + 2)
        seen.append(_resources(out_lines(lab)[before:before + 2]))
    assert seen[0] == seen[1] == seen[2]
    patient = next(r for r in seen[0] if r["resourceType"] == "Patient")
    assert patient["name"][0]["family"] == "ZZTEST"


def test_wasla_ingest_follows_the_file_to_the_end(lab: Path, tmp_path: Path) -> None:
    import subprocess

    from tests.support import WASLA

    src = tmp_path / "ingest-me.csv"
    src.write_text(SAMPLE + BAD, encoding="utf-8")
    result = subprocess.run([WASLA, "ingest", str(src), "--channel", "lab-csv", "--config", str(lab / "config")],
                            cwd=lab, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("ingest-me.csv: done, 5 rows, 2 messages, 2 rejected")
    assert src.exists()  # a copy was handed over; the original stays where it was


def test_inotify_takes_a_ready_file_without_waiting_for_the_poll(tmp_path: Path) -> None:
    """With a 60 s poll, a file and its .ready marker are taken within seconds: inotify woke the scan."""
    project = make_project(tmp_path)
    (project / "config/channels/lab-csv.yaml").write_text(
        "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-AL-AMAL\n"
        "    poll_s: 60\npipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    with engine(project):
        folder = project / "var/in/lab"
        _wait(lambda: (folder / "done").exists())
        time.sleep(0.5)  # the first scan has run: from now on only inotify can wake the next one
        _drop(project, "fast.csv", SAMPLE.encode("utf-8"))
        (folder / "fast.csv.ready").touch()
        _wait(lambda: (folder / "done/fast.csv").exists(), timeout=10)
