"""What the engine itself reads from a channel's input, declared once: the pipeline options.

Every input has `encoding` and `duplicate_window_s` (the intake and the formats read them whatever the
connector); an input that journals CSV groups has `sender`, `application` and `date_formats` (the CSV
format reads them to build the HL7 v2 message a group stands for). A connector that declares one of them
in its own `options_spec` reuses the Field (as `channels/csvfile.py` does) or narrows it (enum,
required, description) but keeps this default; a test holds every registered input to that.
`pipeline_options` builds them, defaults applied, from what a channel's file set, so the engine reads
`channel.options.duplicate_window_s` and repeats no default.

An input whose files the engine may drop into (`wasla ingest`) names the option holding that folder in
its class attribute `drop_folder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.connectors.fields import Field, Options, Spec, build_options

__all__ = ["APPLICATION", "CSV_MESSAGE_OPTIONS", "DATE_FORMATS", "DUPLICATE_WINDOW", "ENCODING", "INPUT_OPTIONS",
           "PIPELINE_OPTIONS", "SENDER", "drop_folder_option", "encoding_override", "pipeline_options"]

DUPLICATE_WINDOW = Field(
    "duplicate_window_s", "integer", minimum=0, default=86400,
    description="A message with the same sender and control id within this many seconds is not processed twice; "
                "0 turns this off.")
ENCODING = Field("encoding", "string", default="auto",
                 description="auto follows the message's own declaration (MSH-18, a BOM); set it when it lies.")
SENDER = Field("sender", "string", default="",
               description="Who sends the CSV (MSH-4 of the messages it stands for; picks the local-code map).")
APPLICATION = Field("application", "string", default="CSV")
DATE_FORMATS = Field("date_formats", "array", items={"type": "string"}, default=("%d/%m/%Y %H:%M", "%d/%m/%Y"),
                     description="strptime formats, tried in order.")

INPUT_OPTIONS: Spec = (DUPLICATE_WINDOW, ENCODING)  # every input
CSV_MESSAGE_OPTIONS: Spec = (SENDER, APPLICATION, DATE_FORMATS)  # an input that journals CSV groups
PIPELINE_OPTIONS: Spec = (*INPUT_OPTIONS, *CSV_MESSAGE_OPTIONS)


def pipeline_options(given: Mapping[str, Any]) -> Options:
    """The pipeline options of a channel's input, from the values its file set (an input's `Options`, or a
    plain mapping in tests); a value it did not set is the default declared here."""
    return build_options(PIPELINE_OPTIONS, {f.name: given[f.name] for f in PIPELINE_OPTIONS if f.name in given})


def encoding_override(options: Options) -> str | None:
    """The charset the channel imposes on its messages; None for `auto` (the message's own declaration decides)."""
    value = options.encoding
    return None if not value or value == "auto" else str(value)


def drop_folder_option(connector: Any) -> str | None:
    """The option naming the folder files are dropped into for this input connector (class or instance);
    None: it takes no dropped files."""
    name = getattr(connector, "drop_folder", None)
    return str(name) if name else None
