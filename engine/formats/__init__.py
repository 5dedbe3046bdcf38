"""Input formats behind one protocol: what intake, transform and the console need from a journaled body.

A message is journaled as it was sent, with a message type that names its format: `CSV^<csv map>` for
a CSV channel's group of rows, `FHIR^<resourceType>` for FHIR a REST channel took in, anything else
HL7 v2 (MSH-9). `Formats.of` is the one place that reads that prefix (`format_name`); every caller then
asks the format: read the body (with the channel's `encoding` override where the format honours one),
the patient key of a message, its conversion to a FHIR Bundle (through the mapping layer), and how the
console lays it out and explains it.

Layers: formats sit above the mapping layer (they delegate conversions to `engine.mapping.Converter`)
and below the pipeline (intake, transform, console).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.config import ChannelConfig
from engine.connectors.inputs import encoding_override
from engine.hl7v2.er7 import Message, decode
from engine.mapping import Converter

__all__ = ["Converted", "Format", "Formats", "Layout", "Lineage", "Mappings", "Memory", "NotConverted", "NotMapped",
           "channel_encoding", "format_name", "plain_layout"]

#: The mapping layer a format delegates conversions to.
Mappings = Converter

#: Message type prefix (before the first `^`) → format name; any other type is HL7 v2.
_BY_PREFIX: dict[str, str] = {"FHIR": "fhir", "CSV": "csv"}
_DEFAULT = "hl7v2"


def format_name(message_type: str) -> str:
    """The name of the format of a journaled message of `message_type` ('hl7v2', 'csv' or 'fhir')."""
    prefix, sep, _ = message_type.partition("^")
    return _BY_PREFIX.get(prefix, _DEFAULT) if sep else _DEFAULT


def channel_encoding(channel: ChannelConfig | None) -> str | None:
    """The channel's `encoding` override (None: `auto`, the message's own declaration decides)."""
    return None if channel is None else encoding_override(channel.options)


class NotConverted(Exception):  # noqa: N818 - a verdict on a message, raised to the transform
    """A journaled body its format cannot turn into a Bundle; `reason` is what the journal records."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class NotMapped(NotConverted):  # noqa: N818 - a verdict on a message, raised to the transform
    """An HL7 v2 message whose type no mapping of its channel takes, on a channel that passes such types
    on (`unmapped_types: pass`): not converted, sent as it came to the destinations that forward HL7 v2.
    `message` is the message as read, for routing.
    """

    def __init__(self, reason: str, message: Message) -> None:
        super().__init__(reason)
        self.message = message


class Memory(Protocol):
    """What this engine last wrote for a patient (`engine.pipeline.history.History`), for a mapping's `keep_earlier`."""

    def lookup(self, patient_key: str, message_id: str,
               received_at: datetime) -> Callable[[str], dict[str, Any] | None] | None: ...

    def wrote(self, patient_key: str, bundle: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Converted:
    """One journaled message converted: its Bundle and what routing and the journal record of it.

    `message` is the HL7 v2 message routing conditions read (None for FHIR taken in as FHIR);
    `received_at` is the receipt time as the pipeline passes it on.
    """

    bundle: bytes
    warnings: list[dict[str, Any]]
    mapping: str
    version: str
    message_type: str
    sending_facility: str
    control_id: str
    received_at: str
    message: Message | None


@dataclass(frozen=True, slots=True)
class Layout:
    """A body as the console shows it: by segment and field when the format has them, else plain text."""

    segments: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""


@dataclass(frozen=True, slots=True)
class Lineage:
    """Each FHIR element and the source fields it came from, and the valued fields no rule read (the
    first `limit` asked for of `not_read_total`)."""

    rows: list[dict[str, str]]
    not_read: list[str]
    not_read_total: int


class Format(Protocol):
    """One input format: how a journaled body of that format is read, keyed, converted and shown."""

    name: str

    def read(self, body: bytes, channel: ChannelConfig | None, headers: Mapping[str, Any]) -> Message | None:
        """The body as the HL7 v2 message it stands for (None: the format has no v2 form).

        `headers` are the pipeline's (or the journal row's): `message_type`, `control_id`.
        Raises ParseError, ConfigError, ValueError or KeyError on a body it cannot read.
        """
        ...

    def patient_key(self, channel: ChannelConfig, message: Message | None) -> tuple[str, str] | None:
        """(system, value) of the message's patient, for sharding and the journal's keyed hash."""
        ...

    def convert(self, body: bytes, headers: Mapping[str, Any], channel: ChannelConfig, memory: Memory) -> Converted:
        """The Bundle of a journaled body; raises NotConverted with the reason the journal records."""
        ...

    def layout(self, raw: bytes, channel: ChannelConfig | None) -> Layout:
        """The body (or its first part) laid out for the console's message page."""
        ...

    def lineage(self, raw: bytes, channel: ChannelConfig | None, mapping: str, received_at: datetime,
                limit: int | None = None) -> Lineage | None:
        """What `wasla convert --explain` shows for the body, naming at most `limit` fields no rule read
        (None: no lineage for this format or body)."""
        ...


def plain_layout(raw: bytes) -> Layout:
    """A body shown as text, decoded the way an unknown body is (UTF-8, else Latin-1)."""
    if not raw:
        return Layout()
    return Layout([], decode(raw).replace("\r", "\n"))


class Formats:
    """The input formats of an installation, found by a journaled message's type (`format_name`).

    Holds one instance of each format, sharing the installation's mappings (`converter`; None for a
    reader that converts nothing, such as a console without mappings: it can still lay messages out).
    """

    def __init__(self, converter: Mappings | None = None) -> None:
        from engine.formats.csv import CsvFormat
        from engine.formats.fhir import FhirFormat
        from engine.formats.hl7v2 import Hl7v2Format

        self.converter = converter
        self.hl7v2 = Hl7v2Format(converter)
        self.csv = CsvFormat(converter)
        self.fhir = FhirFormat()
        self._by_name: dict[str, Format] = {"hl7v2": self.hl7v2, "csv": self.csv, "fhir": self.fhir}

    def of(self, message_type: str) -> Format:
        """The format of a journaled message of `message_type`."""
        return self._by_name[format_name(message_type)]
