"""`wasla run`: the engine's roles in this process."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.check import _check_all
from engine.cli.common import _friendly, config_option
from engine.config import load_config
from engine.errors import ConfigErrors

__all__ = ["run"]


@click.command()
@config_option
@click.option("--role", "roles", multiple=True, type=click.Choice(["intake", "transform", "deliver"]),
              help="Run only these roles (repeatable). Default: all of them.")
@_friendly
def run(config_dir: Path | None, roles: tuple[str, ...]) -> None:
    """Run the engine: intake (channels), transform and deliver."""
    from engine import logs
    from engine.runtime import ROLES, Engine
    from engine.transport import transport_class

    config = load_config(config_dir)
    errors = _check_all(config)
    if errors:
        raise ConfigErrors(errors)
    logs.configure(config.log_level)
    chosen = tuple(r for r in ROLES if r in roles) if roles else ROLES
    if transport_class(config.broker.url).capabilities.in_process and chosen != ROLES:
        click.echo("warning: memory:// is in-process; roles not run here will not see these messages", err=True)
    Engine(config, chosen).run()
