"""FHIR input: a resource or Bundle a REST channel validated and journaled (`FHIR^<resourceType>`), passed
through as a transaction Bundle (`engine.mapping.passthrough`), no mapping applied."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.config import ChannelConfig
from engine.formats import Converted, Layout, Lineage, Memory, NotConverted, plain_layout
from engine.hl7v2.er7 import Message
from engine.mapping.passthrough import as_transaction

__all__ = ["FhirFormat"]

MAPPING = "fhir-passthrough"


class FhirFormat:
    """FHIR taken in as FHIR: no HL7 v2 form, no patient key, routed on its type alone; the body is
    UTF-8 JSON whatever the channel's encoding."""

    name = "fhir"

    def read(self, body: bytes, channel: ChannelConfig | None, headers: Mapping[str, Any]) -> Message | None:
        """None: FHIR has no HL7 v2 form."""
        return None

    def patient_key(self, channel: ChannelConfig, message: Message | None) -> tuple[str, str] | None:
        """None: FHIR taken in is journaled without a patient key."""
        return None

    def convert(self, body: bytes, headers: Mapping[str, Any], channel: ChannelConfig, memory: Memory) -> Converted:
        """The resource wrapped in a transaction Bundle (a transaction or batch Bundle unchanged)."""
        try:
            bundle = as_transaction(body)
            received_at = str(headers["received_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise NotConverted(f"not a FHIR resource ({exc.__class__.__name__})") from exc
        return Converted(bundle, [], MAPPING, "1", str(headers.get("message_type", "")), "", "", received_at, None)

    def layout(self, raw: bytes, channel: ChannelConfig | None) -> Layout:
        """The JSON as text."""
        return plain_layout(raw)

    def lineage(self, raw: bytes, channel: ChannelConfig | None, mapping: str, received_at: datetime,
                limit: int | None = None) -> Lineage | None:
        """None: nothing is mapped."""
        return None
