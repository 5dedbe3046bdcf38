"""The pipeline options every input has, declared once (engine/connectors/inputs.py)."""

from __future__ import annotations

from types import MappingProxyType

from engine.config import ChannelConfig
from engine.connectors.fields import Field, build_options
from engine.connectors.inputs import (
    PIPELINE_OPTIONS,
    drop_folder_option,
    encoding_override,
    pipeline_options,
)
from engine.connectors.registry import connector, connectors


class TestPipelineOptions:
    """The engine reads each pipeline option with the default declared once, whatever the connector."""

    def test_unset_options_take_the_declared_defaults(self) -> None:
        """A channel that sets none of them reads the declared defaults."""
        options = pipeline_options({})
        assert options.duplicate_window_s == 86400
        assert options.encoding == "auto"
        assert options.sender == ""
        assert options.application == "CSV"
        assert options.date_formats == ("%d/%m/%Y %H:%M", "%d/%m/%Y")

    def test_set_options_are_kept_and_others_ignored(self) -> None:
        """Values the file set win; the connector's other options are not pipeline options."""
        given = build_options((Field("port", "integer"), Field("encoding", "string", default="auto")),
                              {"port": 2575, "encoding": "cp1252", "duplicate_window_s": 0})
        options = pipeline_options(given)
        assert (options.encoding, options.duplicate_window_s) == ("cp1252", 0)
        assert "port" not in options

    def test_a_channel_carries_its_pipeline_options(self) -> None:
        """ChannelConfig builds them once from its input, also when made directly (tests)."""
        channel = ChannelConfig("lab", "lab.yaml", "csv_drop", MappingProxyType({"date_formats": ["%Y"]}), "m", ())
        assert channel.options.date_formats == ("%Y",)
        assert channel.options.duplicate_window_s == 86400

    def test_auto_encoding_is_no_override(self) -> None:
        """`auto` (the default) leaves the charset to the message; any other value is imposed."""
        assert encoding_override(pipeline_options({})) is None
        assert encoding_override(pipeline_options({"encoding": "auto"})) is None
        assert encoding_override(pipeline_options({"encoding": "latin-1"})) == "latin-1"

    def test_every_input_that_declares_a_pipeline_option_keeps_its_default(self) -> None:
        """A registered input may narrow a pipeline option but not give it another default or type."""
        declared = {f.name: f for f in PIPELINE_OPTIONS}
        offenders = []
        for kind, cls in sorted(connectors("inputs").items()):
            for f in getattr(cls, "options_spec", ()):
                engine = declared.get(f.name)
                if engine is None:
                    continue
                if f.type != engine.type or (f.has_default and f.default != engine.default):
                    offenders.append(f"{kind}.{f.name}: {f.type} {f.default!r}")
        assert offenders == []


class TestDropFolder:
    """`wasla ingest` finds the folder of an input by the attribute it declares, not by its kind."""

    def test_csv_drop_declares_its_folder_option(self) -> None:
        """csv_drop takes dropped files in its `folder`."""
        assert drop_folder_option(connector("inputs", "csv_drop")) == "folder"

    def test_other_inputs_take_no_dropped_files(self) -> None:
        """mllp and rest declare no drop folder."""
        assert drop_folder_option(connector("inputs", "mllp")) is None
        assert drop_folder_option(connector("inputs", "rest")) is None
