"""Is a unit string valid UCUM? Answered by ucumvert's parser of the full UCUM grammar, memoised.

ucumvert builds its Lark grammar from the official ucum-essence.xml (UCUM 2.2); a parse costs a few
hundred microseconds, and a laboratory sends the same few dozen units all day, so each answer is kept.
The parser (and ucumvert's import, which brings pint) is loaded on the first unit the alias table
does not already know, not at start.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

__all__ = ["is_ucum"]

_MAX_LEN = 64          # longer than any unit a lab prints: not parsed (bounds the cost of garbage)
_lock = threading.Lock()
_parser: Any = None


def _get_parser() -> Any:
    global _parser
    if _parser is None:
        with _lock:
            if _parser is None:
                from ucumvert import get_ucum_parser

                _parser = get_ucum_parser()
    return _parser


@lru_cache(maxsize=4096)
def is_ucum(unit: str) -> bool:
    """True when `unit` is a valid case-sensitive UCUM expression (`mg/L`, `m[IU]/L`, `10*3/uL`, `{ratio}`)."""
    if not unit or len(unit) > _MAX_LEN or not unit.isascii() or unit != unit.strip():
        return False
    from lark.exceptions import LarkError

    try:
        _get_parser().parse(unit)
    except LarkError:
        return False
    return True
