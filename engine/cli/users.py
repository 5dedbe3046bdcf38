"""`wasla user`: console users in config/users.yaml."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from engine.cli.common import _friendly, config_option
from engine.errors import WaslaError

__all__ = ["user"]


@click.group()
def user() -> None:
    """Console users (config/users.yaml): roles viewer, operator, admin."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts, tests).")
@config_option
@_friendly
def user_add(name: str, role: str, password_stdin: bool, config_dir: Path | None) -> None:
    """Add NAME (or change their role and password); the password is stored as a scrypt hash only."""
    from engine.console.users import Users

    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise WaslaError("a console password has at least 12 characters")
    folder = Path(config_dir or os.environ.get("WASLA_CONFIG") or "config")
    Users(folder / "users.yaml").add(name, role, password)
    click.echo(f"{name}: {role} (config/users.yaml)")
