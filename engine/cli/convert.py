"""`wasla convert`: one HL7 v2 file to a FHIR Bundle, offline; `--explain` prints its lineage."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from engine.cli.common import _friendly, config_option
from engine.cli.text import printable
from engine.config import Config, load_config
from engine.errors import MappingError, ParseError, WaslaError

__all__ = ["convert"]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", default=None, help="Mapping name (default: the one that accepts the message type).")
@click.option("--now", default=None, help="Transformation time, ISO 8601 (default: MSH-7, else the current time).")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented.")
@click.option("--explain", is_flag=True,
              help="Print the lineage instead: for each FHIR element, the HL7 v2 fields it came from, "
                   "then the valued fields no rule read.")
@click.option("--json", "as_json", is_flag=True, help="With --explain: bundle, lineage and fields not read as JSON.")
@config_option
@_friendly
def convert(file: Path, mapping: str | None, now: str | None, compact: bool, explain: bool, as_json: bool,
            config_dir: Path | None) -> None:
    """Convert one HL7 v2 file to a FHIR Bundle on stdout (offline: no broker, no journal)."""
    from engine.hl7v2.er7 import decode, parse
    from engine.mapping.datatypes import v2_instant
    from engine.runtime import make_converter

    config = load_config(config_dir)
    converter = make_converter(config)
    raw = file.read_bytes()
    try:
        msg = parse(decode(raw))
    except ParseError as exc:
        raise WaslaError(f"{file}: not an HL7 v2 message: {exc.message}") from exc
    name = mapping or _mapping_for(config, converter, msg.message_type, file)
    if now:
        try:
            clock = datetime.fromisoformat(now)
        except ValueError as exc:
            raise WaslaError(f"--now: expected an ISO 8601 date-time, got '{now}'") from exc
        clock = clock if clock.tzinfo else clock.replace(tzinfo=UTC)
    else:
        stamp = v2_instant(msg.msh.field(7).text, converter.tz) if msg.msh.field(7).text else None
        clock = datetime.fromisoformat(stamp) if stamp else datetime.now(UTC)
    try:
        if explain:
            _print_explanation(converter, name, msg, clock, as_json)
            return
        result = converter.convert(name, msg, clock)
    except MappingError as exc:
        raise WaslaError(f"{file}: cannot convert with mapping {name}: {exc}") from exc
    if compact:
        sys.stdout.buffer.write(result.bundle + b"\n")
    else:
        from engine.mapping import pretty

        sys.stdout.buffer.write(pretty(result.bundle))
    for w in result.warnings:
        click.echo(printable(f"warning: {w['code']} {w['field']} ({w['rule']}) {w.get('detail', '')}".rstrip()),
                   err=True)


def _print_explanation(converter: Any, name: str, msg: Any, clock: datetime, as_json: bool) -> None:
    from engine.mapping.explain import describe

    ex = converter.explain(name, msg, clock)
    if as_json:
        out = {"bundle": ex.bundle, **ex.as_json()}
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        return
    spec = converter.spec(name)
    click.echo(printable(f"# {msg.message_type} {msg.control_id} → mapping {spec.name} {spec.version}: "
                         "element ← HL7 v2 fields [rule]"))
    order = {k: i for i, k in enumerate(dict.fromkeys((r.resource, r.full_url) for r in ex.lineage))}
    last = None
    for row in sorted(ex.lineage, key=lambda r: order[(r.resource, r.full_url)]):  # stable: rule order kept
        if (row.resource, row.full_url) != last:
            last = (row.resource, row.full_url)
            click.echo(f"{row.resource} {row.full_url}")
        sources = ", ".join(describe(s, msg.version) for s in row.sources) or "fixed value or reference"
        click.echo(f"  {row.element:<34} ← {sources}  [{row.rule}]")
    click.echo("# valued fields no rule read" + (":" if ex.not_read else ": none"))
    for path in ex.not_read:
        click.echo(f"  {describe(path, msg.version)}" + ("  (whole segment)" if "-" not in path else ""))
    for w in ex.warnings:
        click.echo(printable(f"warning: {w['code']} {w['field']} ({w['rule']}) {w.get('detail', '')}".rstrip()),
                   err=True)


def _mapping_for(config: Config, converter: Any, message_type: str, file: Path) -> str:
    for path in sorted(config.mappings_dir.glob("*/mapping.yaml")):
        spec = converter.spec(path.parent.name)
        if message_type in spec.accepts:
            return spec.name
    raise WaslaError(f"{file}: unsupported message type {message_type or '(none)'}: no mapping accepts it")
