"""HL7 v2 (ER7) input: decoded by MSH-18 or the channel's `encoding` override, converted by the mapping the
channel gives its type (`ChannelConfig.mapping_for`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.config import ChannelConfig
from engine.errors import ConfigError, MappingError, ParseError
from engine.formats import Converted, Layout, Lineage, Mappings, Memory, NotConverted, NotMapped, channel_encoding
from engine.hl7v2.er7 import Message, decode, decode_flagged, parse
from engine.hl7v2.reference import field_info

__all__ = ["Hl7v2Format", "convert_v2", "unconverted", "unmapped"]


class Hl7v2Format:
    """HL7 v2 messages: read with the channel's encoding override wherever they are read (intake,
    transform, console), so a message is shown exactly as it was converted; keyed and converted by the
    mapping the channel gives the message's type."""

    name = "hl7v2"

    def __init__(self, converter: Mappings | None) -> None:
        self.converter = converter

    def read(self, body: bytes, channel: ChannelConfig | None, headers: Mapping[str, Any] | None = None) -> Message:
        """The message, decoded by MSH-18 or the channel's override; ParseError when it does not parse."""
        return parse(decode(body, channel_encoding(channel)))

    def read_flagged(self, raw: bytes, channel: ChannelConfig) -> tuple[Message, tuple[str, ...]]:
        """What intake reads: the message and the decoding flags (ENCODING_MISMATCH, NUL_REMOVED).

        Bytes the channel's encoding cannot decode are a ParseError (code 102), like bytes that do not parse.
        """
        try:
            text, flags = decode_flagged(raw, channel_encoding(channel))
            return parse(text), flags
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"cannot decode the message with the channel's encoding ({exc.__class__.__name__})",
                             code="102") from exc

    def patient_key(self, channel: ChannelConfig, message: Message | None) -> tuple[str, str] | None:
        """(system, value) of the `patient_key` field of the mapping the channel gives the message's type;
        None when no mapping takes the type, or it has no key, or it fails."""
        mapping = None if message is None else channel.mapping_for(message.message_type)
        if message is None or mapping is None or self.converter is None:
            return None
        try:
            return self.converter.patient_key(mapping, message, channel.policy())
        except (MappingError, ConfigError):
            return None

    def convert(self, body: bytes, headers: Mapping[str, Any], channel: ChannelConfig, memory: Memory) -> Converted:
        """The mapping the channel gives the message's type, applied at its receipt time.

        A type no mapping of the channel takes: NotMapped when the channel passes such types on
        (`unmapped_types: pass`), else NotConverted, the message failing as unsupported.
        """
        try:
            received_at = datetime.fromisoformat(str(headers["received_at"]))
            msg = self.read(body, channel)
            mapping = channel.mapping_for(msg.message_type)
            if mapping is None:
                raise unmapped(channel, msg)
            return convert_v2(self._mappings(), mapping, msg, received_at, headers, channel, memory)
        except (ParseError, MappingError, ConfigError, KeyError, ValueError) as exc:
            raise unconverted(exc) from exc

    def layout(self, raw: bytes, channel: ChannelConfig | None) -> Layout:
        """By segment and field, with field names from hl7apy's reference; plain text when it does not parse."""
        if not raw:
            return Layout()
        text = decode(raw, channel_encoding(channel))
        try:
            msg = parse(text)
        except ParseError:
            return Layout([], text.replace("\r", "\n"))
        segments = []
        for seg in msg.segments:
            fields = []
            for n, value in enumerate(seg.raw_fields()[1:], start=1):  # index n is field n (MSH-1 included)
                if not value:
                    continue
                info = field_info(seg.name, n)
                fields.append({"n": n, "label": info[1] if info else "", "value": value})
            segments.append({"name": seg.name, "fields": fields})
        return Layout(segments, "")

    def lineage(self, raw: bytes, channel: ChannelConfig | None, mapping: str, received_at: datetime,
                limit: int | None = None) -> Lineage | None:
        """Each FHIR element and the fields it came from; None when the message cannot be explained."""
        if self.converter is None:
            return None
        from engine.mapping.explain import describe

        try:
            msg = self.read(raw, channel)
            ex = self.converter.explain(mapping, msg, received_at)
        except (ParseError, MappingError, KeyError, ValueError):
            return None
        rows = [{"resource": r.resource, "element": r.element, "rule": r.rule,
                 "sources": ", ".join(describe(s, msg.version) for s in r.sources)} for r in ex.lineage]
        return Lineage(rows, [describe(p, msg.version) for p in ex.not_read[:limit]], len(ex.not_read))

    def _mappings(self) -> Mappings:
        if self.converter is None:
            raise ConfigError("no mappings loaded")
        return self.converter


def convert_v2(converter: Mappings, mapping: str, msg: Message, received_at: datetime, headers: Mapping[str, Any],
               channel: ChannelConfig, memory: Memory, requests: dict[str, str] | None = None) -> Converted:
    """An HL7 v2 message (sent as such, or standing for CSV rows) through `mapping`, with what this engine
    last wrote for the patient (`headers["patient_key"]`)."""
    patient_key = str(headers.get("patient_key", ""))
    mid = str(headers.get("message_id", ""))
    conversion = converter.convert(mapping, msg, received_at, channel.policy(), requests=requests or {},
                                   earlier=memory.lookup(patient_key, mid, received_at))
    memory.wrote(patient_key, conversion.bundle)
    spec = converter.spec(mapping)
    return Converted(conversion.bundle, conversion.warnings, spec.name, spec.version, msg.message_type,
                     msg.sending_facility, msg.control_id, received_at.isoformat(), msg)


def unmapped(channel: ChannelConfig, msg: Message) -> NotConverted:
    """The verdict on a message whose type no mapping of `channel` takes: passed on (NotMapped) or failed."""
    mtype = msg.message_type or "(none)"
    if channel.unmapped_types == "pass":
        return NotMapped(f"no mapping for {mtype}", msg)
    patterns = ", ".join(sorted(channel.mappings)) or "none"
    return unconverted(MappingError(f"unsupported message type {mtype}: no mapping of channel {channel.id} takes"
                                    f" it (it maps {patterns})", field="MSH-9"))


def unconverted(exc: Exception) -> NotConverted:
    """The failure the journal records for a message that could not be read or mapped."""
    if isinstance(exc, ParseError | MappingError | ConfigError):
        return NotConverted(str(exc))
    return NotConverted(f"malformed pipeline message ({exc.__class__.__name__})")
