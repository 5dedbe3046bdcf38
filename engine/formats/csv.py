"""CSV input: a group of rows a CSV channel journaled (`CSV^<csv map>`), read as the HL7 v2 message its
CSV map says it stands for, then converted by the map's mapping.

The channel's `encoding` override is the file's: the channel decodes the file with it and journals each
group re-encoded as UTF-8, so a journaled body is always read as UTF-8.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.config import ChannelConfig
from engine.errors import ConfigError, MappingError, ParseError
from engine.formats import Converted, Layout, Lineage, Mappings, Memory, plain_layout
from engine.formats.hl7v2 import convert_v2, unconverted
from engine.hl7v2.er7 import Message, parse
from engine.mapping.csvmap import CsvMap, find_csvmap

__all__ = ["CsvFormat"]

class CsvFormat:
    """Groups of CSV rows: each CSV map compiled once, on first use; no patient key at intake (none is
    computed for CSV groups), no lineage on the console."""

    name = "csv"

    def __init__(self, converter: Mappings | None) -> None:
        self.converter = converter
        self._csvmaps: dict[str, CsvMap] = {}

    def csvmap(self, message_type: str) -> CsvMap:
        """The CSV map a `CSV^<name>` message type names."""
        name = message_type.partition("^")[2]
        csvmap = self._csvmaps.get(name)
        if csvmap is None:
            if self.converter is None:
                raise ConfigError("no mappings loaded")
            csvmap = self._csvmaps[name] = find_csvmap(self.converter.mappings_dir, name, self.converter.schema_dir)
        return csvmap

    def read(self, body: bytes, channel: ChannelConfig | None, headers: Mapping[str, Any]) -> Message:
        """The HL7 v2 message the group stands for (`headers`: its `message_type` and `control_id`)."""
        if channel is None:
            raise ConfigError("a CSV group is read with its channel's settings")
        return parse(self._to_v2(body, channel, self.csvmap(str(headers.get("message_type", ""))),
                                 str(headers.get("control_id", ""))))

    def patient_key(self, channel: ChannelConfig, message: Message | None) -> tuple[str, str] | None:
        """None: CSV groups are journaled without a patient key."""
        return None

    def convert(self, body: bytes, headers: Mapping[str, Any], channel: ChannelConfig, memory: Memory) -> Converted:
        """The group's v2 message through its CSV map's mapping, with the map's `create_only` resources."""
        try:
            received_at = datetime.fromisoformat(str(headers["received_at"]))
            csvmap = self.csvmap(str(headers.get("message_type", "")))
            msg = parse(self._to_v2(body, channel, csvmap, str(headers.get("control_id", ""))))
            assert self.converter is not None  # csvmap() found the map in the converter's mappings
            return convert_v2(self.converter, csvmap.mapping, msg, received_at, headers, channel, memory,
                              requests=dict.fromkeys(csvmap.create_only, "conditional-create"))
        except (ParseError, MappingError, ConfigError, KeyError, ValueError, csv.Error) as exc:
            raise unconverted(exc) from exc

    def layout(self, raw: bytes, channel: ChannelConfig | None) -> Layout:
        """The rows as text."""
        return plain_layout(raw)

    def lineage(self, raw: bytes, channel: ChannelConfig | None, mapping: str, received_at: datetime,
                limit: int | None = None) -> Lineage | None:
        """None: no lineage is worked out for CSV groups."""
        return None

    @staticmethod
    def _to_v2(body: bytes, channel: ChannelConfig, csvmap: CsvMap, control_id: str) -> str:
        """A journaled group of CSV rows → the HL7 v2 message its CSV map says it stands for."""
        lines = csv.reader(io.StringIO(body.decode("utf-8")))
        header = next(lines)
        group = [dict(zip(header, cells, strict=True)) for cells in lines]
        options = channel.options
        return csvmap.to_v2(group, sender=str(options.sender), application=str(options.application),
                            control_id=control_id or "/".join(csvmap.group_key(group[0])),
                            date_formats=tuple(options.date_formats))
