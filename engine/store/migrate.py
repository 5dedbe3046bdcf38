"""Versioned schema, migrated on start: `migrations/<dialect>/NNNN_name.sql`, applied in order, once."""

from __future__ import annotations

from importlib import resources
from typing import Any

from engine.store.dialect import Dialect

__all__ = ["migrate"]


def _migrations(dialect: str) -> list[tuple[int, str, str]]:
    folder = resources.files("engine.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _statements(script: str) -> list[str]:
    body = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def migrate(dialect: Dialect, conn: Any) -> int:
    """Bring the schema to the newest version; return it. Safe to run from many processes at once."""
    cur = dialect.begin_migration(conn)
    cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    current = cur.fetchone()[0]
    for version, name, script in _migrations(dialect.name):
        if version <= current:
            continue
        for statement in _statements(script):
            cur.execute(statement)
        cur.execute(dialect.sql("INSERT INTO schema_migrations (version, name) VALUES (?, ?)"), (version, name))
        current = version
    dialect.end_migration(conn, cur)
    return int(current)
