"""What a conversion may read besides the message: settings, clock, vocabularies, and where warnings go."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.hl7v2.er7 import Message, Segment
from engine.mapping.vocab import VocabMap

__all__ = ["Context"]


@dataclass
class Context:
    msg: Message
    base: str
    namespace: uuid.UUID
    tz: ZoneInfo
    now: datetime
    vocab: Callable[[str], VocabMap]
    source: str = ""
    segment: Segment | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    def warn(self, code: str, rule: str, field_path: str, detail: str = "") -> None:
        """Record what the mapping could not honour. Field paths and codes only: no values, no PHI."""
        item = {"code": code, "rule": rule, "field": field_path}
        if detail:
            item["detail"] = detail
        self.warnings.append(item)
