"""Connectors: how `channels/` (and third-party packages) plug into the engine.

`registry` finds them by entry point, `fields` declares their options once, `schema` and `docs` derive
the configuration's JSON Schema and the reference page from those declarations.
"""

from __future__ import annotations

from engine.connectors.fields import Field, Options, build_options, options_of
from engine.connectors.registry import connector, connectors

__all__ = ["Field", "Options", "build_options", "connector", "connectors", "options_of"]
