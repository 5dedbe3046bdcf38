"""Secrets come from the environment, or from a file an environment variable names.

`NAME` set and not empty wins; otherwise `NAME_FILE` names a file whose content (one trailing newline
dropped) is the value — the convention of Docker and Kubernetes secrets, so a password never has to
sit in a process's environment or in a compose file. A value is never logged; errors name the
variable and the path, never what the file holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["secret"]


def secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The value of `name` (or of the file `name`_FILE points to); "" when neither is set."""
    env = os.environ if env is None else env
    value = env.get(name, "")
    if value:
        return value
    path = env.get(f"{name}_FILE", "")
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.__class__.__name__})", file="environment") from exc
    return text[:-1] if text.endswith("\n") else text
