"""Target-path checking against the FHIR R4 models of fhir.resources (R4B package, wire-compatible
with R4 for the resources Wasla writes). Used at mapping load only, never per message.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

__all__ = ["Element", "children", "resolve"]

_MARKERS = {"DateTime": "dateTime", "Date": "date", "Code": "code", "String": "string", "Uri": "uri",
            "Id": "id", "Instant": "instant", "Integer": "integer", "Decimal": "decimal", "Boolean": "boolean",
            "Markdown": "markdown", "PositiveInt": "positiveInt", "UnsignedInt": "unsignedInt", "Url": "url",
            "Canonical": "canonical", "Time": "time", "Oid": "oid", "Uuid": "uuid", "Base64Binary": "base64Binary"}


@dataclass(frozen=True)
class Element:
    """One element of a FHIR R4 model: its path, FHIR type, whether it repeats, and its allowed codes
    when it is bound to an enumeration. Immutable.
    """

    path: str
    type: str          # FHIR type name: "Identifier", "code", "dateTime", …
    is_list: bool
    enum: tuple[str, ...] = ()


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0])
    if origin in (list, typing.List):  # noqa: UP006 - fhir.resources annotates with typing.List
        inner, _ = _unwrap(typing.get_args(annotation)[0])
        return inner, True
    return annotation, False


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        for marker in extra:
            name = _MARKERS.get(type(marker).__name__)
            if name:
                return name
        annotation = base
    if annotation is bool:
        return "boolean"
    name = getattr(annotation, "__name__", str(annotation))
    return name[:-4] if name.endswith("Type") else name


@cache
def _fields(type_name: str) -> dict[str, Any]:
    if type_name[:1].islower():
        raise KeyError(type_name)  # a primitive: no children
    model = get_fhir_model_class(type_name)
    # `_birthDate` (a primitive's extensions, FHIR JSON) is kept: birthTime, alternate-codes
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def resolve(resource_type: str, path: str) -> Element:
    """The element at dotted `path` (list markers `[]` ignored) under `resource_type`.

    Raises KeyError naming the first unknown step, with the known names for a hint.
    """
    current = resource_type
    element: Element | None = None
    steps = [s.removesuffix("[]") for s in path.split(".")]
    for i, step in enumerate(steps):
        try:
            fields = _fields(current)
        except (KeyError, ValueError) as exc:
            raise KeyError(f"'{'.'.join(steps[:i])}' is a {current} and has no children") from exc
        if step not in fields:
            raise KeyError(f"{current} has no element '{step}'")
        f = fields[step]
        inner, is_list = _unwrap(f.annotation)
        name = _type_name(inner)
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        enum = tuple(extra.get("enum_values") or ())
        if "+" in enum:  # fhir.resources marks a truncated list with '+': not a closed set we can check
            enum = ()
        element = Element(".".join(steps[: i + 1]), name, is_list, enum)
        current = name
    assert element is not None
    return element


@cache
def children(type_name: str) -> dict[str, tuple[str, bool]]:
    """Each child element of a FHIR complex type or resource: (its FHIR type name, required?)."""
    out: dict[str, tuple[str, bool]] = {}
    for name, f in _fields(type_name).items():
        inner, _ = _unwrap(f.annotation)
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        out[name] = (_type_name(inner), bool(f.is_required() or extra.get("element_required")))
    return out
