"""ED, TX and FT → Attachment (engine/mapping/datatypes/documents.py), through the `mdm` mapping (issue 25).

Each case edits the OBX of the French discharge-letter fixture and reads the DocumentReference's content.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from engine.errors import MappingError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

MDM = (ROOT / "mappings/mdm/fixtures/fr-mdm-t02-crh-pdf.hl7").read_bytes()
PDF = base64.b64decode(MDM.split(b"^Base64^")[1].split(b"|")[0])


Converted = tuple[dict[str, Any], list[dict[str, Any]]]


def _convert(converter: Converter, obx: list[bytes], policy: dict[str, str] | None = None) -> Converted:
    lines = [ln for ln in MDM.split(b"\r") if ln and not ln.startswith(b"OBX|")]
    result = converter.convert("mdm", parse(decode(b"\r".join([*lines, *obx]) + b"\r")), NOW, policy)
    doc = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
               if e["resource"]["resourceType"] == "DocumentReference")
    return doc, result.warnings


def _obx(n: int, kind: str, value: str) -> bytes:
    return f"OBX|{n}|{kind}|11490-0^CRH^LN||{value}||||||F".encode()


def test_ed_base64_is_passed_as_sent(converter: Converter) -> None:
    """IG ED[Attachment]: ED.3 → contentType, ED.5 → data; base64 is not decoded and re-encoded."""
    b64 = base64.b64encode(PDF).decode()
    doc, _ = _convert(converter, [_obx(1, "ED", f"^application^pdf^Base64^{b64}")])
    assert doc["content"] == [{"attachment": {"contentType": "application/pdf", "data": b64}}]
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).startswith(b"%PDF-1.4")


@pytest.mark.parametrize(("ed2_3", "mime"), [("AP^PDF", "application/pdf"), ("IM^JPEG", "image/jpeg"),
                                             ("^", "application/pdf"),          # no type: the data's magic bytes
                                             ("image^png", "image/png")])
def test_ed_content_type(converter: Converter, ed2_3: str, mime: str) -> None:
    b64 = base64.b64encode(PDF).decode()
    doc, _ = _convert(converter, [_obx(1, "ED", f"^{ed2_3}^Base64^{b64}")])
    assert doc["content"][0]["attachment"]["contentType"] == mime


def test_ed_hex_and_ascii_are_encoded(converter: Converter) -> None:
    """IG ED.5: 'convert from A or HEX to binary64'."""
    doc, _ = _convert(converter, [_obx(1, "ED", "^TEXT^PLAIN^Hex^48656C6C6F"), _obx(2, "ED", "^text^plain^A^Salam")])
    assert [base64.b64decode(c["attachment"]["data"]) for c in doc["content"]] == [b"Hello", b"Salam"]
    assert [c["attachment"]["contentType"] for c in doc["content"]] == ["text/plain", "text/plain"]


def test_ed_unknown_type_is_octet_stream_with_a_warning(converter: Converter) -> None:
    """R4 att-1: data needs a contentType; an unknown one is said, never guessed silently."""
    doc, warnings = _convert(converter, [_obx(1, "ED", "^XX^^A^abc")])
    att = doc["content"][0]["attachment"]
    assert att["contentType"] == "application/octet-stream"
    assert att["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "XX"  # IG: ED.2 IF ED.3 NOT VALUED
    assert any(w["code"] == "CODE_UNMAPPED" for w in warnings)


def test_ed_bad_base64_loses_the_content_not_the_message(converter: Converter) -> None:
    doc, warnings = _convert(converter, [_obx(1, "ED", "^application^pdf^Base64^@@not base64@@")])
    assert doc["content"] == [{"attachment": {"title": "contenu non transmis (notification MDM sans OBX)"}}]
    assert any(w["code"] == "VALUE_INVALID" for w in warnings)
    with pytest.raises(MappingError, match="not valid base64"):
        _convert(converter, [_obx(1, "ED", "^application^pdf^Base64^@@not base64@@")], {"unmapped_codes": "reject"})


def test_tx_repetitions_are_lines_of_one_attachment(converter: Converter) -> None:
    """IG OBX[DocumentReference] OBX-5 IF OBX-2=TX: each repeat a line feed within data (base64)."""
    doc, _ = _convert(converter, [_obx(1, "TX", "Ligne une~Ligne \\T\\ deux")])
    att = doc["content"][0]["attachment"]
    assert att["contentType"] == "text/plain"
    assert base64.b64decode(att["data"]).decode() == "Ligne une\nLigne & deux"


def test_ft_keeps_its_formatting(converter: Converter) -> None:
    """IG OBX-5 IF OBX-2=FT: contentType text/hl7v2, the formatted text as sent."""
    doc, _ = _convert(converter, [_obx(1, "FT", "Titre\\.br\\Corps")])
    att = doc["content"][0]["attachment"]
    assert att["contentType"] == "text/hl7v2"
    assert base64.b64decode(att["data"]).decode() == "Titre\\.br\\Corps"


def test_one_content_per_obx_in_message_order(converter: Converter) -> None:
    b64 = base64.b64encode(PDF).decode()
    doc, _ = _convert(converter, [_obx(1, "TX", "Résumé"), _obx(2, "ED", f"^application^pdf^Base64^{b64}")])
    assert [c["attachment"]["contentType"] for c in doc["content"]] == ["text/plain", "application/pdf"]


def test_a_cancel_keeps_the_content_written_before(converter: Converter) -> None:
    """T11 has no OBX: its PUT keeps the PDF the engine wrote for that TXA-12 (keep_earlier), never a placeholder."""
    fixtures = ROOT / "mappings/mdm/fixtures"
    first = converter.convert("mdm", parse(decode((fixtures / "fr-mdm-t02-crh-pdf.hl7").read_bytes())), NOW)
    written = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
               for e in orjson.loads(first.bundle)["entry"] if "id" in e["resource"]}
    cancel = converter.convert("mdm", parse(decode((fixtures / "fr-mdm-t11-annulation.hl7").read_bytes())), NOW,
                               earlier=written.get)
    doc = next(e["resource"] for e in orjson.loads(cancel.bundle)["entry"]
               if e["resource"]["resourceType"] == "DocumentReference")
    assert f"DocumentReference/{doc['id']}" in written                     # the same document (TXA-12)
    assert doc["status"] == "entered-in-error"
    assert doc["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert any(w["code"] == "KEPT_FROM_EARLIER" and w["field"] == "content" for w in cancel.warnings)


def test_v23_obx_at_the_root_become_content(converter: Converter) -> None:
    """MDM_T02 in v2.3 has no OBSERVATION group (TXA then OBX at the root): each OBX is still one content,
    where before issue 25's */OBX the content was a placeholder and the text was lost."""
    lines = [ln for ln in MDM.split(b"\r") if ln and not ln.startswith(b"OBX|")]
    lines[0] = lines[0].replace(b"|P|2.6|", b"|P|2.3|")
    assert b"|2.3|" in lines[0]
    raw = b"\r".join([*lines, _obx(1, "TX", "Ligne une"), _obx(2, "TX", "Ligne deux")]) + b"\r"
    result = converter.convert("mdm", parse(decode(raw)), NOW)
    doc = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
               if e["resource"]["resourceType"] == "DocumentReference")
    assert [base64.b64decode(c["attachment"]["data"]) for c in doc["content"]] == [b"Ligne une", b"Ligne deux"]
    assert not [w for w in result.warnings if w["code"] == "SEGMENT_NOT_MAPPED"]


def test_a_v251_message_keeps_its_content(converter: Converter) -> None:
    """hl7apy's v2.5.1 MDM_T02 names OBSERVATION `OBXNTE_SUPPGRP`: `each_segment: OBSERVATION/OBX` found no OBX and
    a 2.5.1 letter got the "not sent" placeholder (issue 25); engine/hl7v2/groups.py gives the standard's name."""
    lines = [ln for ln in MDM.split(b"\r") if ln and not ln.startswith(b"OBX|")]
    msh = lines[0].split(b"|")
    msh[11] = b"2.5.1"
    raw = b"\r".join([b"|".join(msh), *lines[1:], _obx(1, "TX", "Ligne un")]) + b"\r"
    doc = next(e["resource"] for e in orjson.loads(converter.convert("mdm", parse(decode(raw)), NOW).bundle)["entry"]
               if e["resource"]["resourceType"] == "DocumentReference")
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]) == b"Ligne un"


def test_v23_orders_at_the_root_each_read_their_own_obr_and_notes(converter: Converter) -> None:
    """MDM v2.3 with two ORC/OBR pairs before TXA (no COMMON_ORDER in v2.3): read with the v2.7 shape, each
    ServiceRequest has its own OBR-4 and NTE, and the NTE after the OBX is the document's (IG MDM_T02 7.3, 7.4,
    10.2), not the orders'. Before, the second order took the first's code and every NTE went to both."""
    segs = ["MSH|^~\\&|SIMHOSP|SFAC|RAPP|RFAC|20210801090642+0215||MDM^T02^MDM_T02|112|T|2.3",
            "EVN|T02|20210801090642+0215", "PID|1|3196695816^^^SIMULATOR MRN^MRN|3196695816^^^SIMULATOR MRN^MRN",
            "PV1|1|O", "ORC|NW|P1^HIS", "OBR|1|P1^HIS||CODE1^First order^L", "NTE|1||note of order one",
            "ORC|NW|P2^HIS", "OBR|2|P2^HIS||CODE2^Second order^L",
            "TXA|1|DS||20210801090642+0215|||||||||DOC-1^HIS", "OBX|1|TX|obs-id^obs-text^L|1|Document text||||||F",
            "NTE|1||comment about the document"]
    result = converter.convert("mdm", parse("\r".join(segs)), NOW)
    entries = [e["resource"] for e in orjson.loads(result.bundle)["entry"]]
    orders = {r["code"]["coding"][0]["code"]: [n["text"] for n in r.get("note", [])]
              for r in entries if r["resourceType"] == "ServiceRequest"}
    assert orders == {"CODE1": ["note of order one"], "CODE2": []}
    (doc,) = [r for r in entries if r["resourceType"] == "DocumentReference"]
    texts = [base64.b64decode(c["attachment"]["data"]) for c in doc["content"]]
    assert texts == [b"Document text", b"comment about the document"] and len(doc["context"]["related"]) == 2
    assert not [w for w in result.warnings if w["code"] == "SEGMENT_NOT_MAPPED"]
