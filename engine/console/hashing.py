"""Password checks at login, on a budget: hashed on one thread of their own, at most `HASHING_MAX` running or
waiting and at most `per_second` started in any second, whatever the client addresses. A try beyond that is
refused at once, so no queue builds up and a flood of logins cannot take the engine's CPU from the senders."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from engine.console.users import User, Users

__all__ = ["HASHES_PER_S", "HASHING_MAX", "PasswordChecks"]

HASHING_MAX = 2  # password checks running or waiting; a try beyond that is refused at once
HASHES_PER_S = 4  # password hashes started per second, whatever the addresses: a flood costs at most this


class PasswordChecks:
    """Owns the password-hashing thread and its budget. `busy()` says whether a check would exceed it; `check`
    counts itself before it yields, so a `busy()` answered on the console's event loop holds for the `check`
    that follows it there. `running`, `per_second` and `started` are read and written on that loop only."""

    def __init__(self, users: Users, per_second: int = HASHES_PER_S) -> None:
        self.users = users
        self.per_second = per_second
        self.running = 0  # checks submitted and not finished
        self.started: deque[float] = deque()  # when the last checks started (at most per_second kept)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-password")

    def busy(self) -> bool:
        """True when the thread is taken or this second's hashes are spent."""
        return self.running >= HASHING_MAX or (
            len(self.started) >= self.per_second and time.monotonic() - self.started[0] < 1.0)

    async def check(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs, else None; hashed on the thread, counted in the budget."""
        self.running += 1
        self.started.append(time.monotonic())
        while len(self.started) > self.per_second:
            self.started.popleft()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self.users.check, name, password)
        finally:
            self.running -= 1

    def close(self) -> None:
        """Stop the thread; checks not yet started are cancelled."""
        self._thread.shutdown(wait=False, cancel_futures=True)
