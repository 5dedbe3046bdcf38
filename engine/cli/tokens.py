"""`wasla token`: API tokens for REST channels."""

from __future__ import annotations

import click

__all__ = ["token"]


@click.group()
def token() -> None:
    """API tokens for REST channels."""


@token.command("new")
@click.argument("name")
def token_new(name: str) -> None:
    """Make a token for sender NAME: give the token to the sender, put the sha256 line in the channel YAML."""
    import hashlib
    import secrets

    value = secrets.token_urlsafe(32)
    click.echo(f"token (give it to {name}, it is not stored anywhere): {value}")
    click.echo("for the channel's input.rest.tokens:")
    click.echo(f"  - {{name: {name}, sha256: {hashlib.sha256(value.encode()).hexdigest()}}}")
