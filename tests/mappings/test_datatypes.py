"""Datatype details the fixtures do not show on their own."""

from __future__ import annotations

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

ORU = (ROOT / "mappings/oru_r01/fixtures/ma-labo-3-groupes.hl7").read_bytes()


def _first_value(converter: Converter, obx5: str, obx2: str = "NM", policy: dict[str, str] | None = None) -> bytes:
    lines = ORU.split(b"\r")
    i = next(n for n, ln in enumerate(lines) if ln.startswith(b"OBX|"))
    parts = lines[i].split(b"|")
    parts[2], parts[5] = obx2.encode(), obx5.encode()
    lines[i] = b"|".join(parts)
    bundle = converter.convert("oru_r01", parse(decode(b"\r".join(lines))), NOW, policy).bundle
    obs = next(e["resource"] for e in orjson.loads(bundle)["entry"] if e["resource"]["resourceType"] == "Observation")
    key = next(k for k in obs if k.startswith("value"))
    start = bundle.index(b'"' + key.encode() + b'"')  # the bytes as written, not re-parsed floats
    return bundle[start:bundle.index(b"]", start)]  # up to the end of the Observation's next list


@pytest.mark.parametrize(("sent", "written"), [("11.20", b'"value":11.20'), ("5,40", b'"value":5.40'),
                                                 ("+007", b'"value":7'), (".5", b'"value":0.5'), ("0", b'"value":0')])
def test_nm_keeps_the_precision_sent(converter: Converter, sent: str, written: bytes) -> None:
    """FHIR decimals keep trailing zeros (11.20 is not 11.2); a decimal comma is read as a point."""
    assert written in _first_value(converter, sent)


def test_sn_range_keeps_precision(converter: Converter) -> None:
    value = _first_value(converter, "^3.50^-^5.0", "SN")
    assert b'"low":{"value":3.50' in value and b'"high":{"value":5.0' in value


@pytest.mark.parametrize(("sent", "written"), [("0830", b'"valueTime":"08:30:00"'),
                                                 ("143005.25+0100", b'"valueTime":"14:30:05.25"')])
def test_tm_becomes_a_fhir_time(converter: Converter, sent: str, written: bytes) -> None:
    assert written in _first_value(converter, sent, "TM")


def test_a_bad_time_is_left_out_with_a_warning(converter: Converter) -> None:
    """The value is lost, not the message (issue 22, leniency); `unmapped_codes: reject` fails it."""
    from engine.errors import MappingError

    with pytest.raises(StopIteration):  # no Observation value
        _first_value(converter, "2561", "TM")
    with pytest.raises(MappingError, match="expected a v2 time"):
        _first_value(converter, "2561", "TM", {"unmapped_codes": "reject"})


@pytest.mark.parametrize(("obx5", "concept"), [
    ("260385009^Négatif^SCT^^^^20260301", {"coding": [{"system": "http://snomed.info/sct", "version": "20260301",
                                                        "code": "260385009", "display": "Négatif"}]}),
    ("NEG^Négatif", {"coding": [{"code": "NEG", "display": "Négatif"}]}),   # no CWE.3: no invented system
    ("^Négatif", {"text": "Négatif"}),                                         # no code: the text
    ('NEG^""^^^^^^^Négatif au seuil', {"coding": [{"code": "NEG"}], "text": "Négatif au seuil"}),
])
def test_cwe_codeable_concept_keeps_display_and_version(converter: Converter, obx5: str,
                                                         concept: dict[str, object]) -> None:
    """IG CWE[CodeableConcept]: CWE.1 code, CWE.2 display, CWE.3 system (only when sent), CWE.7 version, CWE.9 text."""
    lines = ORU.split(b"\r")
    i = next(n for n, ln in enumerate(lines) if ln.startswith(b"OBX|"))
    parts = lines[i].split(b"|")
    parts[2], parts[5] = b"CWE", obx5.encode()
    lines[i] = b"|".join(parts)
    bundle = orjson.loads(converter.convert("oru_r01", parse(decode(b"\r".join(lines))), NOW).bundle)
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["valueCodeableConcept"] == concept
