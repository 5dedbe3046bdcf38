"""`wasla mapping`: run the mappings' fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import EXIT_INPUT, _friendly, config_option
from engine.config import load_config
from engine.errors import WaslaError

__all__ = ["mapping"]


@click.group()
def mapping() -> None:
    """Work on mappings: run their fixtures."""


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
    failed = [r for r in results if not r.ok and not r.updated]
    empty = [n for n in (names or known) if not any(r.mapping == n for r in results)]
    for n in empty:
        click.echo(f"FAIL    {n}: no fixtures (mappings/{n}/fixtures/*.hl7)")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed) + len(empty)} failed"
               + (f", {sum(r.updated for r in results)} updated" if update else ""))
    if failed or empty:
        sys.exit(EXIT_INPUT)
