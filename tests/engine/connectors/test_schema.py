"""The channel and destination schemas are composed from the installed connectors' specs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine.config import load_config
from engine.connectors.registry import connectors
from engine.connectors.schema import channel_schema, destination_schema
from engine.errors import ConfigErrors
from tests.support import make_project

SCHEMA = Path(__file__).resolve().parents[3] / "config" / "schema"


class TestComposition:
    def test_every_input_is_in_the_channel_schema(self) -> None:
        """Each installed input has its options under input.<name>, with the defaults of its spec."""
        schema = channel_schema(orjson.loads((SCHEMA / "channel.schema.json").read_bytes()))
        assert set(schema["properties"]["input"]["properties"]) == set(connectors("inputs")) >= {
            "mllp", "rest", "csv_drop"}
        mllp = schema["$defs"]["mllp"]
        assert mllp["required"] == ["port"] and mllp["properties"]["idle_timeout_s"]["default"] == 300
        assert schema["$defs"]["rest"]["properties"]["duplicate_window_s"]["default"] == 86400

    def test_every_output_is_a_destination_key(self) -> None:
        """Each installed output is a top-level key of the destination schema."""
        schema = destination_schema(orjson.loads((SCHEMA / "destination.schema.json").read_bytes()))
        assert set(connectors("outputs")) <= set(schema["properties"]) and "route" in schema["properties"]
        assert schema["$defs"]["fhir"]["properties"]["auth"]["allOf"]

    def test_a_clash_with_an_envelope_key_is_refused(self) -> None:
        """An output connector named like a destination key (route) cannot be composed."""
        with pytest.raises(ValueError, match="route"):
            destination_schema(orjson.loads((SCHEMA / "destination.schema.json").read_bytes()), {"route": object})


class TestValidation:
    def test_wrong_type_in_a_connector_option(self, tmp_path: Path) -> None:
        """A connector option of the wrong type is a file:line:col error from the composed schema."""
        project = make_project(tmp_path)
        ch = project / "config" / "channels" / "adt-mllp.yaml"
        ch.write_text(ch.read_text().replace("    port:", "    idle_timeout_s: soon\n    port:"))
        with pytest.raises(ConfigErrors) as info:
            load_config(project / "config", env={})
        assert [str(e) for e in info.value.errors] == [
            f"{ch}:6:21: input.mllp.idle_timeout_s: expected a number, got a string"]

    def test_unknown_destination_connector(self, tmp_path: Path) -> None:
        """A destination naming no installed connector lists the installed ones."""
        project = make_project(tmp_path)
        (project / "config" / "destinations" / "archive-ndjson.yaml").write_text("nowhere: {path: x}\n")
        with pytest.raises(ConfigErrors) as info:
            load_config(project / "config", env={})
        assert "unknown key 'nowhere'" in str(info.value)
