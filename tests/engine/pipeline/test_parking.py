"""Hot reload: an edited vocabulary map or code map takes effect without a restart; a broken one does not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from engine.pipeline.parking import NomenclatureWatcher
from engine.store import Journal
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT

ADT = (ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes()


def _gender(conv: Converter) -> str:
    bundle = orjson.loads(conv.convert("adt", parse(decode(ADT)), NOW).bundle)
    return bundle["entry"][0]["resource"]["gender"]


def _touch(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new mtime even within one tick


def test_vocabulary_edit_applies_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "nomenclatures", tmp_path / "nomenclatures")
    conv = Converter(ROOT / "mappings", ROOT / "config/schema", tmp_path / "nomenclatures/hl7v2-fhir",
                     base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        watcher = NomenclatureWatcher(tmp_path / "nomenclatures", "https://fhir.wasla.ma", conv, journal,
                                      broker=None)  # type: ignore[arg-type]  # nothing parked: never published
        assert _gender(conv) == "female"
        gender = tmp_path / "nomenclatures/hl7v2-fhir/v2-0001.administrative-gender.csv"
        original = gender.read_text(encoding="utf-8")
        _touch(gender, original.replace("F,http://hl7.org/fhir/administrative-gender,female",
                                        "F,http://hl7.org/fhir/administrative-gender,other"))
        watcher.check()
        assert _gender(conv) == "other"          # the edited map, without a restart
        _touch(gender, "not,a,vocabulary\n")
        watcher.check()
        assert _gender(conv) == "other"          # refused: the last good maps keep working
        _touch(gender, original)
        watcher.check()
        assert _gender(conv) == "female"
    finally:
        journal.close()
