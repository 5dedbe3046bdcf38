"""Which mapping converts which message type on a channel: each mapping's declared `accepts:`, and a channel's
`pipeline.mapping` / `pipeline.mappings` resolved against them at load, with every problem at its line."""

from __future__ import annotations

from pathlib import Path

from engine.config.yamlfile import YamlDoc, load_yaml
from engine.errors import ConfigError

__all__ = ["accepted_types", "dispatch_table"]


def accepted_types(mappings_dir: Path, env: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Each mapping's declared `accepts:` (mappings/<name>/mapping.yaml), read once; a mapping that does
    not load is left out here (`wasla check` and the start report its own errors)."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(mappings_dir.glob("*/mapping.yaml")):
        try:
            data = load_yaml(path, env=env).data
        except ConfigError:
            continue
        accepts = data.get("accepts") if isinstance(data, dict) else None
        found[path.parent.name] = tuple(str(t) for t in accepts) if isinstance(accepts, list) else ()
    return found


def dispatch_table(doc: YamlDoc, accepts: dict[str, tuple[str, ...]], mappings_dir: Path,
              errors: list[ConfigError]) -> tuple[str, dict[str, str]]:
    """A channel's (`mapping`, MSH-9 pattern → mapping), its problems added to `errors` at their lines.

    `mapping: X` → X and X's accepted types; `mappings:` as written; neither → every mapping's accepted
    types, a type two mappings accept being an error (the channel must name one under `mappings`).
    """
    pipeline = doc.data["pipeline"]
    single, table = pipeline.get("mapping", ""), dict(pipeline.get("mappings") or {})
    if single and table:
        errors.append(doc.error("write mapping or mappings, not both", ["pipeline", "mappings"], key=True))
        return single, {}
    if single:
        if single not in accepts and not (mappings_dir / single / "mapping.yaml").exists():
            errors.append(doc.error(f"no mapping '{single}' in {mappings_dir.name}/", ["pipeline", "mapping"]))
        return single, dict.fromkeys(accepts.get(single, ()), single)
    if table:
        for pattern, name in table.items():
            if name not in accepts and not (mappings_dir / name / "mapping.yaml").exists():
                errors.append(doc.error(f"no mapping '{name}' in {mappings_dir.name}/",
                                        ["pipeline", "mappings", pattern]))
            elif not pattern.endswith("^*") and accepts.get(name) and pattern not in accepts[name]:
                errors.append(doc.error(f"mapping '{name}' does not accept {pattern} (it accepts: "
                                        f"{', '.join(accepts[name])})", ["pipeline", "mappings", pattern]))
        return "", table
    chosen: dict[str, str] = {}
    clashes: dict[tuple[str, str], list[str]] = {}
    for name, types in accepts.items():
        for t in types:
            if t in chosen and chosen[t] != name:
                clashes.setdefault((chosen[t], name), []).append(t)
            chosen.setdefault(t, name)
    for (first, second), both in clashes.items():
        errors.append(doc.error(f"mappings '{first}' and '{second}' both accept {', '.join(both)}: name the one"
                                " for each type under pipeline.mappings", ["pipeline"], key=True))
    return "", chosen
