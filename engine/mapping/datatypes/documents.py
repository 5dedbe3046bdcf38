"""Document converters: v2 ED and TX/FT → FHIR Attachment (IG ED[Attachment], OBX[DocumentReference] OBX-5).

- ED (OBX-2 = ED): ED.2 type of data, ED.3 subtype, ED.4 encoding, ED.5 data. The IG maps ED.3 to
  contentType and ED.5 to data, "convert from A or HEX to binary64": Base64 data is passed as sent
  (whitespace a sender wrapped it with removed), Hex and A (text) are encoded. contentType must be a
  MIME type and is required beside data (R4 invariant att-1): ED.2/ED.3 when ED.2 is a MIME top-level
  type (`^application^pdf^Base64^…`), else the v2 subtype (table 0291: PDF, JPEG, TIFF …) looked up
  below, else what the data's first bytes say (the IG: "assess OBX-5.5 to determine the correct
  .contentType"), else application/octet-stream with a CODE_UNMAPPED warning.
- TX and FT (OBX-2 = TX or FT): the IG's OBX[DocumentReference] rows: data is the base64 of the text,
  each repetition of OBX-5 one line ("each repeat yields a line feed"). FT keeps its v2 formatting
  (escape sequences as sent) and is typed `text/hl7v2` as the IG says; TX is the text with its escapes
  undone, typed `text/plain` (the IG's `application/text` is no registered media type).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from engine.errors import MappingError
from engine.hl7v2.er7 import Field
from engine.mapping.context import Context

__all__ = ["ed_attachment", "ft_attachment", "tx_attachment"]

_MIME_TOP = {"application", "audio", "image", "model", "multipart", "text", "video", "message", "font"}
# HL7 table 0291 (subtype of referenced data) and the common subtypes senders write → MIME type
_SUBTYPES = {
    "PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg", "GIF": "image/gif", "PNG": "image/png",
    "TIFF": "image/tiff", "TIF": "image/tiff", "HTML": "text/html", "XML": "application/xml",
    "RTF": "application/rtf", "POSTSCRIPT": "application/postscript", "OCTET-STREAM": "application/octet-stream",
    "DICOM": "application/dicom", "SGML": "text/sgml", "X-HL7-CDA-LEVEL-ONE": "application/x-hl7-cda-level-one+xml",
    "PLAIN": "text/plain", "TEXT": "text/plain",
}
# the first bytes of the decoded data, for a type the ED does not name
_MAGIC = ((b"%PDF-", "application/pdf"), (b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"),
          (b"GIF8", "image/gif"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))
_SPACE = re.compile(r"\s+")


def _content_type(kind: str, subtype: str, data: bytes | None) -> str | None:
    if kind.lower() in _MIME_TOP and subtype:
        return f"{kind.lower()}/{subtype.lower()}"
    known = _SUBTYPES.get(subtype.upper()) if subtype else None
    if known:
        return known
    if data:
        for magic, mime in _MAGIC:
            if data.startswith(magic):
                return mime
    return None


def _decode_base64(text: str) -> tuple[str, bytes]:
    clean = _SPACE.sub("", text)
    try:
        return clean, base64.b64decode(clean, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MappingError("ED.5 is not valid base64 (ED.4 Base64)") from exc


def ed_attachment(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """ED → Attachment: contentType from ED.2/ED.3 (else the data's magic bytes), data as base64."""
    kind, subtype, encoding = f.component(2), f.component(3), f.component(4).upper()
    raw = f.component(5)
    if not (kind or subtype or raw):
        return None
    data: bytes | None = None
    encoded: str | None = None
    if raw:
        if encoding in ("BASE64", "B64"):
            encoded, data = _decode_base64(raw)
        elif encoding == "HEX":
            try:
                data = bytes.fromhex(_SPACE.sub("", raw))
            except ValueError as exc:
                raise MappingError("ED.5 is not valid hexadecimal (ED.4 Hex)") from exc
            encoded = base64.b64encode(data).decode("ascii")
        elif encoding in ("A", ""):
            data = raw.encode("utf-8")
            encoded = base64.b64encode(data).decode("ascii")
        else:
            raise MappingError(f"ED.4 encoding '{encoding}' is none of A, Hex, Base64 (table 0299)")
    out: dict[str, Any] = {}
    mime = _content_type(kind, subtype, data)
    if mime is None and (kind or subtype):
        ctx.warn("CODE_UNMAPPED", ctx.rule, ctx.field_spec, "ED.2/ED.3 name no known media type")
    if mime is None and encoded is not None:
        mime = "application/octet-stream"  # R4 att-1: data needs a contentType
    if mime is not None:
        out["contentType"] = mime
    if kind and not subtype:
        # IG ED[Attachment] ED.2 IF ED.3 NOT VALUED: the type of data as an alternate-codes extension
        out["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/alternate-codes",
                             "valueCodeableConcept": {"coding": [
                                 {"system": "http://terminology.hl7.org/CodeSystem/v2-0191", "code": kind}]}}]
    if encoded is not None:
        out["data"] = encoded
    return out or None


def _text_attachment(lines: list[str], mime: str) -> dict[str, Any] | None:
    text = "\n".join(line for line in lines if line)
    if not text:
        return None
    return {"contentType": mime, "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}


def tx_attachment(fields: list[Field], ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """TX repetitions → one text/plain Attachment: the lines joined by line feeds, escapes undone, base64."""
    lines = [" ".join(p for p in (f.component(i) for i in range(1, f.components() + 1)) if p) for f in fields]
    return _text_attachment(lines, "text/plain")


def ft_attachment(fields: list[Field], ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """FT repetitions → one text/hl7v2 Attachment: the formatted text as sent (escape sequences kept), base64."""
    return _text_attachment([f.raw for f in fields if f], "text/hl7v2")
