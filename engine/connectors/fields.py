"""Connector options, declared once: a `Field` per option, and the frozen `Options` built from the YAML.

A connector class declares `options_spec = (Field("port", "integer", required=True, claim="port"), ...)`;
from that one declaration come the JSON Schema that validates `config/` (`engine.connectors.schema`), the
reference page (`engine.connectors.docs`), the paths resolved against the project root, the resources
checked for conflicts, and the typed options the connector reads (`options.idle_timeout_s`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Field", "Options", "Spec", "build_options", "claims_of", "options_of"]

JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Field:
    """One connector option: its name, JSON type, default and documentation, declared in one place.

    Guarantees the schema fragment (`json_schema`) and the effective value (`Options`) agree on the default.
    `fields` makes an object option with its own declared sub-options; `items` is the JSON Schema of an
    array's items (or a tuple of Fields for a list of objects); `schema` adds JSON Schema keywords that have
    no attribute here (allOf, dependentRequired, additionalProperties of a free mapping …). `path` marks a
    file or folder resolved against the project root; `claim` names the resource the option holds
    ("port", "folder"), which two enabled channels may not share.
    """

    name: str
    type: JsonType
    default: Any = MISSING
    description: str = ""
    since: str = "0.1.0"
    required: bool = False
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    pattern: str | None = None
    expected: str | None = None            # the words an error says instead of the pattern
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    examples: tuple[Any, ...] = ()
    items: Mapping[str, Any] | tuple[Field, ...] | None = None
    fields: tuple[Field, ...] | None = None
    schema: Mapping[str, Any] = field(default_factory=dict)
    path: bool = False
    claim: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def json_schema(self) -> dict[str, Any]:
        """This option's JSON Schema fragment (draft 2020-12)."""
        out: dict[str, Any] = {} if self.enum is not None else {"type": self.type}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.fields is not None:
            out.update(object_schema(self.fields))
        elif self.type == "array" and self.items is not None:
            out["items"] = (object_schema(self.items) if isinstance(self.items, tuple)
                            else dict(self.items))
        for key, value in (("minimum", self.minimum), ("maximum", self.maximum),
                           ("exclusiveMinimum", self.exclusive_minimum), ("pattern", self.pattern),
                           ("x-expected", self.expected), ("minLength", self.min_length),
                           ("maxLength", self.max_length), ("minItems", self.min_items)):
            if value is not None:
                out[key] = value
        if self.has_default:
            out["default"] = list(self.default) if isinstance(self.default, tuple) else self.default
        if self.description:
            out["description"] = self.description
        if self.examples:
            out["examples"] = list(self.examples)
        out["x-since"] = self.since
        out.update(self.schema)
        return out


Spec = tuple[Field, ...]


def object_schema(spec: Spec, description: str = "") -> dict[str, Any]:
    """The JSON Schema of an object whose keys are `spec`: no other key, the required ones required."""
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["additionalProperties"] = False
    required = [f.name for f in spec if f.required]
    if required:
        out["required"] = required
    out["properties"] = {f.name: f.json_schema() for f in spec}
    return out


class Options(Mapping[str, Any]):
    """A connector's options, frozen: attribute access gives the effective value (the default applied once,
    None for an unset option without default); mapping access gives only what the file set, as before.

    Nested objects declared with `fields` are Options too; lists are tuples.
    """

    __slots__ = ("_given", "_values")

    def __init__(self, given: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_given", dict(given))
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no option '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("connector options are frozen")

    def __getitem__(self, key: str) -> Any:
        return self._given[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"Options({self._values!r})"

    def __eq__(self, other: object) -> bool:
        return dict(self.items()) == (dict(other.items()) if isinstance(other, Mapping) else other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._given)))


def _value(f: Field, raw: Any, root: Path | None) -> Any:
    if raw is None:
        return None
    if f.fields is not None and isinstance(raw, Mapping):
        return build_options(f.fields, raw, root)
    if f.type == "array" and isinstance(raw, list | tuple):
        if isinstance(f.items, tuple):
            return tuple(build_options(f.items, x, root) if isinstance(x, Mapping) else x for x in raw)
        return tuple(raw)
    if f.path and root is not None and isinstance(raw, str):
        return str((root / raw).resolve())
    return raw


def build_options(spec: Spec, data: Mapping[str, Any], root: Path | None = None) -> Options:
    """The frozen options of `data` (already schema-validated), defaults applied; `path` fields resolved
    against `root` when given. Keys the spec does not declare are kept in the mapping view."""
    if isinstance(data, Options):
        return data
    given: dict[str, Any] = {}
    values: dict[str, Any] = {}
    declared = {f.name: f for f in spec}
    for key, raw in data.items():
        f = declared.get(key)
        given[key] = _value(f, raw, root) if f is not None else raw
    for f in spec:
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.has_default:
            values[f.name] = _value(f, f.default, None)
        else:
            values[f.name] = None
    return Options(given, values)


def options_of(connector: Any, data: Mapping[str, Any]) -> Options:
    """The Options of a connector class (or instance) for `data`: already built by the config loader, or
    built here for a connector made directly (tests)."""
    return build_options(tuple(getattr(connector, "options_spec", ())), data)


def claims_of(spec: Spec, options: Mapping[str, Any]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """The resources these options hold: (kind, option name, key). A port is keyed by (host, port), so two
    channels on one port of different addresses do not conflict; a folder by its resolved path."""
    built = build_options(spec, options)
    out: list[tuple[str, str, tuple[Any, ...]]] = []
    for f in spec:
        value = getattr(built, f.name)
        if f.claim is None or value is None:
            continue
        if f.claim == "port":
            out.append(("port", f.name, (getattr(built, "host", None), int(value))))
        else:
            out.append((f.claim, f.name, (str(value),)))
    return out
