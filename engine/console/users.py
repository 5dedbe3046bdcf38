"""Console users: a YAML file of names, roles and scrypt password hashes (`wasla user add`).

Local users, kept in `config/users.yaml` (beside the rest of the configuration,
mode 0600, never in git: .gitignore lists it). scrypt from the standard library: memory-hard,
salted, and nothing to install. The file is re-read when it changes, so adding a user or
changing a role needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

__all__ = ["ROLES", "User", "Users", "hash_password", "verify_password"]

ROLES = ("viewer", "operator", "admin")  # each can do what the ones before it can
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class User:
    """A signed-in console user: name and role. `can` compares roles in `ROLES` order, each role doing
    what the ones before it can. Immutable.
    """

    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Users:
    """The console's users file (`config/users.yaml`): reads it again whenever its mtime changes, checks
    passwords against scrypt hashes, and adds users by rewriting the file atomically with mode 0600.
    Checking an unknown name costs a hash too, so timing does not tell names apart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._users: dict[str, tuple[str, str]] = {}
        # a name that does not exist still costs a hash check: no telling users apart by timing
        self._dummy = hash_password(secrets.token_hex(8))

    def _load(self) -> dict[str, tuple[str, str]]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._mtime:
            data = YAML(typ="safe").load(self.path.read_text()) or {}
            self._users = {str(name): (str(u["role"]), str(u["password"]))
                           for name, u in (data.get("users") or {}).items() if u.get("role") in ROLES}
            self._mtime = mtime
        return self._users

    def check(self, name: str, password: str) -> User | None:
        found = self._load().get(name)
        ok = verify_password(password, found[1] if found else self._dummy)
        return User(name, found[0]) if found and ok else None

    def role_of(self, name: str) -> str | None:
        found = self._load().get(name)
        return found[0] if found else None

    def stamp(self, name: str) -> str | None:
        """A fingerprint of the user's stored password hash: it changes with the password (a session
        opened before the change no longer stands, engine.console.sessions); None for no such user."""
        found = self._load().get(name)
        return hashlib.sha256(found[1].encode()).hexdigest()[:32] if found else None

    def add(self, name: str, role: str, password: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        yaml = YAML()
        data = yaml.load(self.path.read_text()) if self.path.exists() else None
        data = data or {}
        data.setdefault("users", {})[name] = {"role": role, "password": hash_password(password)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            yaml.dump(data, fh)
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
