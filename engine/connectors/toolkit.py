"""The helpers a connector may use from the engine, in one place: `channels/` imports nothing else.

Beside this module a connector imports only `engine.connectors.ports` (what the engine gives it),
`engine.connectors.capabilities` (what an output declares), `engine.errors` and `engine.types`;
`tests/test_layers.py` checks it.

    ChannelConfig, DestinationConfig   what a connector is constructed with
    build_ack, enhanced_modes, wants   HL7 v2 ACKs and the MSH-15/16 acknowledgment modes
    is_batch, split_batch, batch_ack   HL7 v2 batch files (FHS/BHS … BTS/FTS)
    Message, parse, decode             ER7: read a message
    read_fhir, FHIRJSONError           the FHIR JSON door: a body read and checked
    CsvMap, find_csvmap                CSV maps, loaded from `InputPorts.mappings`
    metrics                            Prometheus counters (received, failed …) and their registry
    error_fields                       an exception as log fields, never a payload
    message_id                         a new message or connection id
    secret                             a secret by name (environment or file)
"""

from __future__ import annotations

from engine import metrics
from engine.config import ChannelConfig, DestinationConfig
from engine.hl7v2.ack import build_ack, enhanced_modes, wants
from engine.hl7v2.batch import batch_ack, is_batch, split_batch
from engine.hl7v2.er7 import Message, decode, parse
from engine.ids import message_id
from engine.logs import error_fields
from engine.mapping.csvmap import CsvMap, find_csvmap
from engine.mapping.fhirjson import FHIRJSONError
from engine.mapping.fhirjson import read as read_fhir
from engine.secret import secret

__all__ = [
    "ChannelConfig", "CsvMap", "DestinationConfig", "FHIRJSONError", "Message", "batch_ack", "build_ack",
    "decode", "enhanced_modes", "error_fields", "find_csvmap", "is_batch", "message_id", "metrics", "parse",
    "read_fhir", "secret", "split_batch", "wants",
]
