"""Who may call the REST channel: bearer tokens, their scopes and their rate limits.

Only a token's SHA-256 is in the channel YAML (`wasla token new`); a request's token is hashed and
compared in constant time. A token carries scopes (`submit`, `read`) and a rate limit per minute,
kept as a token bucket in memory (a restart refills it).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from channels.rest_http import problem
from engine.connectors.fields import Options

__all__ = ["Token", "Tokens"]


@dataclass
class Token:
    """One caller's token: its name, the SHA-256 of its secret, its scopes and its rate bucket.

    Owns the bucket: `per_minute` requests a minute on average, at most `per_minute` at once.
    """

    name: str
    digest: bytes
    scopes: frozenset[str]
    per_minute: int
    tokens: float
    stamp: float

    def take(self) -> float:
        """Token bucket: 0 when a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.stamp) * self.per_minute / 60.0)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.per_minute


class Tokens:
    """The tokens of one REST channel, from its `tokens` option.

    Owns each token's rate bucket. Guarantees: `authorize` answers a request with its token only when
    the bearer token is known, has the scope asked for and is within its rate; otherwise with the 401,
    403 or 429 problem saying why (a 401 with WWW-Authenticate, a 429 with Retry-After).
    """

    def __init__(self, options: Iterable[Options], default_per_minute: int) -> None:
        self.tokens: list[Token] = []
        for t in options:
            rate = int(t.rate_limit_per_minute or default_per_minute)
            self.tokens.append(Token(str(t.name), bytes.fromhex(str(t.sha256)), frozenset(t.scopes), rate,
                                     float(rate), time.monotonic()))

    def authorize(self, request: Request, scope: str) -> Token | Response:
        """The request's token if it may `scope` now, else the problem to answer."""
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return problem(401, "unauthorized", "A bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        digest = hashlib.sha256(value.strip().encode()).digest()
        token = next((t for t in self.tokens if hmac.compare_digest(t.digest, digest)), None)
        if token is None:
            return problem(401, "unauthorized", "Unknown token",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in token.scopes:
            return problem(403, "forbidden", f"This token may not {scope}",
                           f"token '{token.name}' has scopes: {', '.join(sorted(token.scopes))}")
        wait = token.take()
        if wait:
            return problem(429, "rate-limited", "Too many requests",
                           f"token '{token.name}' may send {token.per_minute} requests a minute",
                           headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        return token
