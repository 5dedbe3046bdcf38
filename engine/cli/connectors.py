"""`wasla connectors docs`: write (or print) the connector reference generated from the installed connectors."""

from __future__ import annotations

from pathlib import Path

import click

from engine.connectors.docs import reference

__all__ = ["connectors_group"]


@click.group("connectors")
def connectors_group() -> None:
    """The installed connectors (inputs and outputs) and their options."""


@connectors_group.command("docs")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the reference here (e.g. docs/connectors.md) instead of printing it.")
@click.option("--shipped", is_flag=True, help="Only the connectors shipped with wasla (docs/connectors.md).")
def docs(out: Path | None, shipped: bool) -> None:
    """Generate the connector reference (options, defaults, examples) from the installed connectors."""
    text = reference("wasla" if shipped else None)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}")
