"""`wasla audit`: the audit trail, exported as FHIR AuditEvent."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from engine.cli.common import _friendly, _when, _who, config_option
from engine.cli.text import json_printable
from engine.config import load_config
from engine.store import open_journal

__all__ = ["main_audit"]


@click.group("audit")
def main_audit() -> None:
    """The audit trail: who viewed, replayed or exported what."""


@main_audit.command("export")
@click.option("--since", default=None, help="Records at or after (ISO 8601).")
@click.option("--message", "message_id", default=None, help="Only the records of this message.")
@config_option
@_friendly
def audit_export(since: str | None, message_id: str | None, config_dir: Path | None) -> None:
    """The audit trail as FHIR R4 AuditEvent, one JSON per line (NDJSON) on stdout."""
    config = load_config(config_dir)
    journal = open_journal(config.store.url)
    try:
        count = 0
        for event in journal.audit.events(config.fhir_base, since=_when(since), message_id=message_id):
            click.echo(json_printable(orjson.dumps(event).decode()))
            count += 1
        who, where = _who(None)
        journal.audit.record(who, "export", [""], where, {"records": count})
    finally:
        journal.close()
