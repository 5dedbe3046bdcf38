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
    CLIENT_TLS, client_ssl_context     an output's `tls` option to a remote, and the SSL context it declares
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import metrics
from engine.config import ChannelConfig, DestinationConfig
from engine.connectors.fields import Field
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
    "CLIENT_TLS", "ChannelConfig", "CsvMap", "DestinationConfig", "FHIRJSONError", "Message", "batch_ack", "build_ack",
    "decode", "enhanced_modes", "error_fields", "find_csvmap", "is_batch", "message_id", "metrics", "parse",
    "read_fhir", "secret", "split_batch", "wants", "client_ssl_context",
]


CLIENT_TLS = Field(
    "tls", "object", description="TLS to the remote; with cert and key, mutual TLS.",
    schema={"dependentRequired": {"cert": ["key"], "key": ["cert"]}},
    fields=(
        Field("ca", "string", path=True,
              description="CA bundle the remote's certificate must chain to (default: the system's)."),
        Field("cert", "string", path=True, description="Our client certificate chain (PEM), for mutual TLS."),
        Field("key", "string", path=True, description="Our client private key (PEM)."),
        Field("server_name", "string", description="Name to verify in the remote's certificate (default: host)."),
    ))


def client_ssl_context(tls: Mapping[str, Any] | None, root: Path | None = None) -> ssl.SSLContext | None:
    """The client SSL context a `CLIENT_TLS` option declares (None: plain TCP): TLS 1.2 at least, the remote
    checked against `ca` (default: the system's CAs), our `cert` and `key` for mutual TLS; relative paths are
    taken from `root`, the configuration folder, as `wasla check` resolves them."""
    if not tls:
        return None

    def path(name: str) -> str | None:
        value = tls.get(name)
        return None if not value else str(root / value if root is not None else Path(value))

    ctx = ssl.create_default_context(cafile=path("ca"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert = path("cert")
    if cert:
        ctx.load_cert_chain(cert, path("key"))
    return ctx
