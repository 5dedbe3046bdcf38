"""JSON Schema validation that speaks in `file:line:col: field: what was expected`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.config.yamlfile import YamlDoc
from engine.errors import ConfigError

__all__ = ["composed_schema", "load_schema", "validate"]

_TYPES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false", "null": "nothing"}


@cache
def load_schema(path: Path) -> Draft202012Validator:
    schema = orjson.loads(path.read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def composed_schema(path: Path, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Draft202012Validator:
    """The schema at `path`, with the connectors' parts composed in when it is the channel or destination one."""
    return _composed(path, tuple(inputs.items()), tuple(outputs.items()))


@cache
def _composed(path: Path, inputs: tuple[tuple[str, Any], ...],
              outputs: tuple[tuple[str, Any], ...]) -> Draft202012Validator:
    from engine.connectors.schema import channel_schema, destination_schema

    schema = orjson.loads(path.read_bytes())
    if path.name == "channel.schema.json":
        schema = channel_schema(schema, dict(inputs))
    elif path.name == "destination.schema.json":
        schema = destination_schema(schema, dict(outputs))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(doc: YamlDoc, validator: Draft202012Validator) -> list[ConfigError]:
    """Every schema problem of `doc`, each at the line of the value (or key) at fault."""
    return [_render(doc, err) for err in validator.iter_errors(doc.data)]


def _kind(value: Any) -> str:
    for name, py in (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                     ("array", list), ("object", dict)):
        if isinstance(value, py):
            return _TYPES[name]
    return "nothing"


def _render(doc: YamlDoc, err: ValidationError) -> ConfigError:
    path = list(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    v = err.validator
    value: Any = err.validator_value  # always set on the errors iter_errors yields (Unset only on hand-made ones)
    if v == "additionalProperties" and isinstance(err.instance, dict):
        known = list(schema.get("properties", {}))
        extra = [k for k in err.instance if k not in known]
        key = extra[0] if extra else ""
        hint = difflib.get_close_matches(key, known, n=1)
        msg = f"unknown key '{key}'" + (
            f" (did you mean '{hint[0]}'?)" if hint else f"; expected one of: {', '.join(known)}")
        return doc.error(msg, [*path, key], key=True)
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        where = path[-1] if path else "document"
        return doc.error(f"missing required key '{missing}' in {where}", path, key=bool(path),
                         field=".".join(str(p) for p in [*path, missing]))
    if v == "type":
        expected: str | list[str] = value
        names = " or ".join(_TYPES.get(t, t) for t in (expected if isinstance(expected, list) else [expected]))
        return doc.error(f"expected {names}, got {_kind(err.instance)}", path)
    if v == "enum":
        return doc.error("expected one of: " + ", ".join(map(str, value)), path)
    if v == "pattern" and "propertyNames" in err.schema_path:  # a key: at the key's own line
        return doc.error(f"expected {schema.get('x-expected', 'a key matching ' + value)}, got '{err.instance}'",
                         [*path, str(err.instance)], key=True)
    if v == "pattern":
        return doc.error(f"expected {schema.get('x-expected', 'a value matching ' + value)}", path)
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return doc.error(f"expected a number {word} {err.validator_value}", path)
    if v in ("minProperties", "maxProperties") and "properties" in schema:
        return doc.error("expected exactly one of: " + ", ".join(schema["properties"]), path)
    if v == "uniqueItems":
        return doc.error("expected each item once", path)
    if v == "minItems":
        return doc.error(f"expected at least {err.validator_value} item(s)", path)
    return doc.error(err.message, path)
