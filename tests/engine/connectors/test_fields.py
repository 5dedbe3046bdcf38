"""Field and Options: an option declared once gives its schema fragment and its effective value."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.connectors.fields import Field, Options, build_options, claims_of, object_schema

SPEC = (
    Field("host", "string", default="127.0.0.1"),
    Field("port", "integer", required=True, minimum=1, maximum=65535, claim="port"),
    Field("idle_timeout_s", "number", minimum=0, default=300, description="Close an idle connection."),
    Field("folder", "string", path=True, claim="folder"),
    Field("formats", "array", items={"type": "string"}, default=("%d", "%m")),
    Field("tls", "object", fields=(Field("cert", "string", required=True, path=True),
                                   Field("require_client_cert", "boolean", default=True))),
)


class TestOptions:
    def test_defaults_applied_once(self) -> None:
        """An unset option reads as its declared default; an unset one without default reads None."""
        o = build_options(SPEC, {"port": 2575})
        assert (o.host, o.port, o.idle_timeout_s, o.folder, o.tls, o.formats) == (
            "127.0.0.1", 2575, 300, None, None, ("%d", "%m"))

    def test_mapping_view_is_what_the_file_said(self) -> None:
        """Mapping access sees only the options the file set, as the untyped dict did."""
        o = build_options(SPEC, {"port": 2575})
        assert dict(o) == {"port": 2575} and o.get("idle_timeout_s") is None and "host" not in o

    def test_frozen(self) -> None:
        """Options cannot be changed after loading."""
        o = build_options(SPEC, {"port": 1})
        with pytest.raises(AttributeError):
            o.port = 2  # type: ignore[misc]
        with pytest.raises(AttributeError):
            _ = o.nope

    def test_nested_and_paths(self, tmp_path: Path) -> None:
        """Nested objects are Options with their own defaults; `path` fields resolve against the root."""
        o = build_options(SPEC, {"port": 1, "folder": "in", "tls": {"cert": "c.pem"}}, tmp_path)
        assert o.folder == str(tmp_path / "in") and o["folder"] == str(tmp_path / "in")
        assert isinstance(o.tls, Options) and o.tls.cert == str(tmp_path / "c.pem") and o.tls.require_client_cert

    def test_built_options_pass_through(self) -> None:
        """Options already built (by the config loader) are not rebuilt."""
        o = build_options(SPEC, {"port": 1})
        assert build_options(SPEC, o) is o


class TestSchema:
    def test_object_schema(self) -> None:
        """The schema fragment carries type, bounds, default, description and since, and no other key."""
        schema = object_schema(SPEC, "A test connector.")
        assert schema["additionalProperties"] is False and schema["required"] == ["port"]
        assert schema["properties"]["idle_timeout_s"] == {
            "type": "number", "minimum": 0, "default": 300, "description": "Close an idle connection.",
            "x-since": "0.1.0"}
        assert schema["properties"]["tls"]["required"] == ["cert"]
        assert schema["properties"]["formats"]["default"] == ["%d", "%m"]


class TestClaims:
    def test_port_keyed_by_host_and_folder_by_path(self) -> None:
        """A port claim is (host, port); a folder claim its path."""
        assert claims_of(SPEC, {"port": 2575, "folder": "/x"}) == [
            ("port", "port", ("127.0.0.1", 2575)), ("folder", "folder", ("/x",))]
