"""`wasla mapping`: run the mappings' fixtures, scaffold a new mapping from a sample message."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import EXIT_INPUT, _friendly, config_option
from engine.cli.text import printable
from engine.config import load_config
from engine.errors import WaslaError

__all__ = ["mapping"]


@click.group()
def mapping() -> None:
    """Work on mappings: run their fixtures, scaffold a new one."""


@mapping.command("test")
@click.argument("names", nargs=-1)
@click.option("--update", is_flag=True,
              help="Write the current output as the expected one where it differs (review it against the IG!).")
@config_option
@_friendly
def mapping_test(names: tuple[str, ...], update: bool, config_dir: Path | None) -> None:
    """Convert each mapping's fixtures/*.hl7 and compare with fixtures/*.json (all mappings by default)."""
    from engine.mapping.fixtures import fixture_converter, run_fixtures

    config = load_config(config_dir)
    known = sorted(p.parent.name for p in config.mappings_dir.glob("*/mapping.yaml"))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise WaslaError(f"no mapping {', '.join(unknown)} (known: {', '.join(known)})")
    converter = fixture_converter(config.mappings_dir, config.config_dir / "schema",
                                  config.nomenclatures_dir / "hl7v2-fhir")
    results = run_fixtures(converter, list(names or known), update=update)
    for r in results:
        status = "ok" if r.ok else ("updated" if r.updated else "FAIL")
        click.echo(f"{status:<7} {r.mapping}/{r.name}")
        if r.error:
            click.echo(f"        {r.error}")
        for line in r.differences:
            click.echo(f"        {line}")
        if not r.ok:  # what the mapping leaves unread or could not honour: where to look next
            for warning in r.warnings:
                click.echo(printable(f"        warning: {warning}"))
    failed = [r for r in results if not r.ok and not r.updated]
    empty = [n for n in (names or known) if not any(r.mapping == n for r in results)]
    for n in empty:
        click.echo(f"FAIL    {n}: no fixtures (mappings/{n}/fixtures/*.hl7)")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed) + len(empty)} failed"
               + (f", {sum(r.updated for r in results)} updated" if update else ""))
    if failed or empty:
        sys.exit(EXIT_INPUT)


@mapping.command("new")
@click.argument("name")
@click.option("--from", "sample", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sample HL7 v2 message of the family to map (copied to the mapping's fixtures).")
@config_option
@_friendly
def mapping_new(name: str, sample: Path, config_dir: Path | None) -> None:
    """Scaffold mappings/NAME/ from a sample message: accepts its MSH-9, a resource per segment that has a
    shared segment map, a commented TODO for every other valued field; never overwrites a mapping."""
    from engine.config.dispatch import accepted_types
    from engine.mapping.scaffold import scaffold

    config = load_config(config_dir)
    before = accepted_types(config.mappings_dir, {})
    made = scaffold(config.mappings_dir, config.config_dir / "schema", config.nomenclatures_dir / "hl7v2-fhir",
                    name, sample)
    root = config.mappings_dir.parent
    click.echo(f"wrote {made.mapping.relative_to(root)}: accepts {made.message_type}")
    for line in made.resources:
        click.echo(f"  resource {line}")
    click.echo(f"copied the sample to {made.fixture.relative_to(root)} (no expected output: write "
               f"{made.fixture.with_suffix('.json').name} by hand, checked against the IG)")
    if made.todo:
        shown = ", ".join(made.todo[:12]) + (f", … {len(made.todo) - 12} more" if len(made.todo) > 12 else "")
        click.echo(f"left to map: {len(made.todo)} field(s), a TODO each in mapping.yaml: {shown}")
    if made.converts:
        click.echo(printable(f"the sample does not convert yet: {made.converts}"))
    for other in (n for n, types in before.items() if made.message_type in types):
        click.echo(f"note: mapping {other} accepts {made.message_type} too: a channel must name one "
                   "(pipeline.mapping or pipeline.mappings)")
    click.echo(f"next: wasla check; wasla mapping test {name}")
