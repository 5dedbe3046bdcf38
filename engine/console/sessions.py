"""Signed-in console sessions, kept on the server so that signing out ends them.

The browser's cookie (Starlette's signed session) carries only a random session id, the language and
the CSRF token; whether that id still stands is decided here. Signing out, removing the user or
changing their password (the stamp of their stored hash no longer matches) ends every copy of the
cookie at once. Kept in the memory of the process that serves the console: a restart signs everyone
out, which errs on the safe side.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Session", "Sessions"]


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in session: the user, their credential stamp at sign-in, and when it expires. Immutable."""

    user: str
    stamp: str  # the user's credential stamp at sign-in (engine.console.users.Users.stamp)
    expires: float


class Sessions:
    """Session ids → who signed in; at most `limit` live sessions (the oldest go first)."""

    def __init__(self, max_age_s: float = 8 * 3600, limit: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.limit = limit
        self.clock = clock
        self._live: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, user: str, stamp: str) -> str:
        """A new session for `user`; its id, for the cookie."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._prune()
            while len(self._live) >= self.limit:
                self._live.popitem(last=False)
            self._live[sid] = Session(user, stamp, self.clock() + self.max_age_s)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            found = self._live.get(sid)
            if found is not None and found.expires <= self.clock():
                del self._live[sid]
                return None
            return found

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._live.pop(sid or "", None)

    def close_user(self, user: str) -> int:
        """End every session of `user`; how many there were."""
        with self._lock:
            gone = [sid for sid, s in self._live.items() if s.user == user]
            for sid in gone:
                del self._live[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._live)

    def _prune(self) -> None:
        now = self.clock()
        while self._live:
            sid, first = next(iter(self._live.items()))
            if first.expires > now:  # opened in order, all with the same lifetime: the rest are younger
                break
            del self._live[sid]
