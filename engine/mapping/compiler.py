"""Mapping files → compiled closures.

At load: the YAML is validated against `config/schema/mapping.schema.json` and parsed into a typed
tree (`engine.mapping.spec`), segment maps named under `include:` are read, every source path is
parsed, every target path, cardinality and type is checked against the FHIR R4 model
(`engine.mapping.targets`), every vocabulary map is read. Any problem is a ConfigError at the rule's
`file:line`. At runtime the closures (`engine.mapping.rules`, `.producers`, `.writers`) only read
fields and build dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jsonschema import Draft202012Validator

from engine.config.validate import load_schema, validate
from engine.config.yamlfile import load_yaml
from engine.errors import ConfigError, ConfigErrors
from engine.mapping.compiled import CompiledResource, CompiledRule, MappingSpec
from engine.mapping.coverage import coverage
from engine.mapping.keys import KeyPart, key_alt
from engine.mapping.rules import compile_rule
from engine.mapping.scope import CompileScope
from engine.mapping.spec import ResourceNode, Where, parse_mapping, parse_segment_map
from engine.mapping.targets import has_element, is_resource_type

__all__ = ["compile_mapping"]


def compile_mapping(file: Path, schema_dir: Path, vocab_dir: Path, display: str | None = None) -> MappingSpec:
    """Compile `mappings/<name>/mapping.yaml`; every problem found is raised at once, as ConfigErrors."""
    doc = load_yaml(file, display=display)
    schema = load_schema(schema_dir / "mapping.schema.json")
    errors = validate(doc, schema)
    if errors:
        raise ConfigErrors(errors)
    tree = parse_mapping(doc)
    scope = CompileScope(vocab_dir)
    top = tree.where
    if tree.name != file.parent.name:
        scope.err(f"expected name '{file.parent.name}' (the folder name)", top.at("name"))
    names = [r.name for r in tree.resources]
    for i, n in enumerate(names):
        if names.index(n) != i:
            scope.err(f"resource name '{n}' used twice", top.at("resources", i, "name"))
    scope.names = set(names)
    scope.types = {r.name: r.type for r in tree.resources}
    segments = _Segments(file.parent.parent / "segments", schema)
    resources = [_resource(scope, r, segments) for r in tree.resources]
    pk = scope.path(tree.patient_key, top.at("patient_key")) if tree.patient_key else None
    if scope.errors:
        raise ConfigErrors(scope.errors)
    return MappingSpec(
        name=tree.name, version=tree.version, file=tree.file, accepts=tree.accepts,
        patient_key=pk, provenance=tree.provenance,
        resources=tuple(r for r in resources if r is not None),
        coverage=coverage(scope.reads, list(tree.ignore)),
    )


def _resource(scope: CompileScope, node: ResourceNode, segments: _Segments) -> CompiledResource | None:
    where, rtype = node.where, node.type
    if not is_resource_type(rtype):
        scope.err(f"'{rtype}' is not a FHIR R4 resource type", where.at("type"))
        return None
    for element in node.keep_earlier:
        if not has_element(rtype, str(element)):
            scope.err(f"keep_earlier: {rtype} has no element '{element}'", where.at("keep_earlier", element))
            return None
    if node.keep_earlier and node.request != "put":
        scope.err("keep_earlier needs request: put (the resource is known by its id)", where.at("keep_earlier"))
        return None
    key: list[KeyPart] = []
    for i, spec in enumerate(node.id):
        text = str(spec).strip()
        optional = text.endswith("?")
        alts = [scope.path(t, where.at("id", i)) for t in text.removesuffix("?").split("|")]
        if any(a is None for a in alts):
            return None
        key.append(KeyPart(tuple(key_alt(a) for a in alts if a), optional))
    rules: list[CompiledRule | None] = []
    for name in node.include:
        rules.extend(segments.include(scope, name, rtype, where.at("include")))
    rules.extend(compile_rule(scope, rtype, r) for r in node.rules)
    when = scope.condition(node.when, where.at("when"))
    if any(r is None for r in rules):
        return None
    return CompiledResource(node.name, rtype, node.segment, node.for_each, when, tuple(key),
                            node.id_fallback, node.request, tuple(r for r in rules if r),
                            node.duplicates == "merge",
                            tuple((str(k), v) for k, v in node.keep_earlier.items()),
                            frozenset(node.following))


class _Segments:
    """The segment maps of `mappings/segments/`, read when a resource includes them."""

    def __init__(self, folder: Path, schema: Draft202012Validator) -> None:
        self.folder = folder
        assert isinstance(schema.schema, Mapping), "the mapping schema is an object, not a boolean schema"
        self.schema = Draft202012Validator({"$ref": "#/$defs/segment_map", "$defs": schema.schema["$defs"]})

    def include(self, scope: CompileScope, name: str, rtype: str, where: Where) -> list[CompiledRule | None]:
        """A segment map's rules, compiled for this resource; its errors point into its own file."""
        file = self.folder / f"{name}.yaml"
        if not file.exists():
            scope.err(f"no segment map '{name}' ({file} not found)", where)
            return [None]
        try:
            doc = load_yaml(file, display=_display(file))
        except ConfigError as exc:
            scope.errors.append(exc)
            return [None]
        errors = validate(doc, self.schema)
        if errors:
            scope.errors.extend(errors)
            return [None]
        tree = parse_segment_map(doc)
        if tree.target != rtype:
            scope.err(f"segment map '{name}' writes {tree.target}, not {rtype}", where)
            return [None]
        # its own problem list (a switch stops at problems of its own file) and no resource types:
        # the fields read and the resource names are the mapping's
        sub = CompileScope(scope.vocab_dir, reads=scope.reads, names=scope.names)
        out = [compile_rule(sub, rtype, r) for r in tree.rules]
        scope.errors.extend(sub.errors)
        return out


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
