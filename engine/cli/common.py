"""What every `wasla` command shares: exit codes, the `--config` option, `_when` (an ISO 8601
option) and `_who` (who acts, from where: the audit trail), and `_friendly`, which turns every error
into one line (`file:line:col: field: message`) and an exit code, never a traceback (set
WASLA_DEBUG=1 to see the traceback of an internal error).

Package-internal, hence the underscores: the public surface is `engine.cli.main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from engine.cli.text import printable
from engine.errors import ConfigError, ConfigErrors, WaslaError

__all__ = ["EXIT_CONFIG", "EXIT_INPUT", "EXIT_INTERNAL", "_friendly", "_when", "_who", "config_option"]


EXIT_CONFIG = 2
EXIT_INPUT = 1
EXIT_INTERNAL = 70


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                click.echo(printable(ConfigError.__str__(e), lines=True), err=True)
            sys.exit(EXIT_CONFIG)
        except ConfigError as exc:
            click.echo(printable(str(exc), lines=True), err=True)
            sys.exit(EXIT_CONFIG)
        except WaslaError as exc:  # may quote a message's field: escaped like every CLI output (engine.cli.text)
            click.echo(printable(f"error: {exc}", lines=True), err=True)
            sys.exit(EXIT_INPUT)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:  # `wasla nomenclature list | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:
            if os.environ.get("WASLA_DEBUG"):
                raise
            click.echo(f"internal error: {exc.__class__.__name__} (set WASLA_DEBUG=1 for details)", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


config_option = click.option("--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
                             default=None, help="Configuration folder (default: $WASLA_CONFIG or ./config).")


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WaslaError(f"not a date-time: {text!r} (expected ISO 8601, e.g. 2026-11-25T08:00)") from exc
    return value if value.tzinfo else value.astimezone()


def _who(by: str | None) -> tuple[str, str]:
    import getpass
    import socket

    return by or getpass.getuser(), f"cli@{socket.gethostname()}"
