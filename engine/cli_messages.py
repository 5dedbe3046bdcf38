"""`wasla messages`: find journaled messages, see one, replay them.

Replays are requests in the journal; the running engine (any process running the stage) takes
them. A bulk replay shows its progress, and Ctrl-C withdraws what the engine has not taken yet.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click
import orjson

from engine.cli import EXIT_INPUT, _friendly, config_option
from engine.config import load_config
from engine.errors import WaslaError
from engine.store import Journal, open_journal
from engine.types import Status

__all__ = ["messages"]

_FINAL = (Status.DELIVERED, Status.FAILED, Status.FILTERED, Status.PARKED)
_COLOURS = {Status.DELIVERED: "green", Status.FAILED: "red", Status.FILTERED: "blue", Status.PARKED: "yellow"}


def _journal(config_dir: Path | None) -> Journal:
    return open_journal(load_config(config_dir).store.url)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WaslaError(f"not a date-time: {text!r} (expected ISO 8601, e.g. 2026-11-25T08:00)") from exc
    return value if value.tzinfo else value.astimezone()


@click.group()
def messages() -> None:
    """Journaled messages: search, show, replay."""


@messages.command("search")
@click.option("--channel", default=None)
@click.option("--status", type=click.Choice([*Status.UNFINISHED, *_FINAL]), default=None)
@click.option("--control-id", default=None)
@click.option("--limit", default=50, show_default=True)
@config_option
@_friendly
def search(channel: str | None, status: str | None, control_id: str | None, limit: int,
           config_dir: Path | None) -> None:
    """Newest messages first: id, received, channel, type, control id, status, reason."""
    journal = _journal(config_dir)
    try:
        for row in journal.search(channel=channel, status=status, control_id=control_id, limit=limit):
            line = (f"{row.id}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.channel:<16} {row.message_type:<10}"
                    f" {row.control_id:<20} {row.status:<11} {row.reason[:80]}")
            click.secho(line, fg=_COLOURS.get(row.status))
    finally:
        journal.close()


@messages.command("show")
@click.argument("message_id")
@config_option
@_friendly
def show(message_id: str, config_dir: Path | None) -> None:
    """A message's metadata, events and outputs (with each destination's answer). Not its content."""
    journal = _journal(config_dir)
    try:
        row = journal.get(message_id)
        if row is None:
            raise WaslaError(f"no message {message_id}")
        click.echo(f"{row.id}  {row.channel}  {row.message_type}  control id {row.control_id}  {row.status}"
                   + (f"  ({row.reason})" if row.reason else ""))
        for ev in journal.events(message_id):
            detail = orjson.dumps({k: v for k, v in ev["detail"].items() if k != "warnings"}).decode()
            click.echo(f"  {ev['at']}  {ev['stage']:<12} {ev['status']:<18} {detail[:200]}")
        for dest in journal.output_destinations(message_id):
            out = journal.output(message_id, dest)
            if out is None:
                continue
            click.echo(f"  output {dest}: {out.status}  {out.location[:200]}")
            answer = journal.output_response(message_id, dest)
            if answer and out.status != "delivered":
                click.echo(f"    answer: {answer[:2000]}")
    finally:
        journal.close()


@messages.command("replay")
@click.argument("message_ids", nargs=-1)
@click.option("--dead", "dead_of", default=None, metavar="DESTINATION", help="Every dead letter of DESTINATION.")
@click.option("--channel", default=None)
@click.option("--status", type=click.Choice([*Status.UNFINISHED, *_FINAL]), default=None)
@click.option("--since", default=None, help="Received at or after (ISO 8601).")
@click.option("--until", default=None, help="Received before (ISO 8601).")
@click.option("--destination", default=None, help="Only messages with an output for it; deliver re-sends to it only.")
@click.option("--mode", type=click.Choice(["deliver", "transform"]), default=None,
              help="deliver: re-send the journaled FHIR; transform: map again with today's mapping"
                   " (default: deliver for --dead, transform otherwise).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation of a bulk replay.")
@click.option("--no-wait", is_flag=True, help="Queue the replays and return at once.")
@click.option("--by", default=None, help="Who asks (journaled with the replay; default: $USER).")
@config_option
@_friendly
def replay(message_ids: tuple[str, ...], dead_of: str | None, channel: str | None, status: str | None,
           since: str | None, until: str | None, destination: str | None, mode: str | None, yes: bool,
           no_wait: bool, by: str | None, config_dir: Path | None) -> None:
    """Replay messages by id, by filter, or all dead letters of a destination, and follow them."""
    import os

    journal = _journal(config_dir)
    try:
        if dead_of:
            ids = journal.dead_letters(dead_of)
            destination = destination or dead_of
            mode = mode or "deliver"
        elif message_ids:
            ids = list(message_ids)
            missing = [m for m in ids if journal.get(m) is None]
            if missing:
                raise WaslaError(f"no message {', '.join(missing[:5])}")
        elif channel or status or since or until or destination:
            ids = list(journal.select_ids(channel=channel, status=status, since=_when(since), until=_when(until),
                                          destination=destination))
        else:
            raise WaslaError("say which messages: ids, --dead DESTINATION or a filter (--channel, --status, --since)")
        mode = mode or "transform"
        if not ids:
            click.echo("nothing to replay")
            return
        if len(ids) > 1 and not yes:
            click.confirm(f"replay {len(ids)} messages ({mode}{' to ' + destination if destination else ''})?",
                          abort=True)
        who = by or os.environ.get("USER", "")
        for n in range(0, len(ids), 1000):
            journal.request_replays(ids[n:n + 1000], mode, destination or "", who)
        click.echo(f"{len(ids)} replays queued ({mode})")
        if not no_wait:
            _follow(journal, ids)
    finally:
        journal.close()


def _follow(journal: Journal, ids: list[str], timeout: float = 3600.0) -> None:
    """Progress until every replayed message is final again; Ctrl-C withdraws those not yet taken."""
    start = datetime.now().astimezone()
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    try:
        with click.progressbar(length=len(ids), label="replay", show_pos=True) as bar:
            done = 0
            while time.monotonic() < deadline:
                counts = journal.replay_progress(ids, start)
                finished = sum(n for s, n in counts.items() if s in _FINAL)
                bar.update(finished - done)
                done = finished
                if finished >= len(ids):
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        withdrawn = journal.cancel_replays(ids)
        click.echo(f"\nstopped: replays not yet taken by the engine were withdrawn ({withdrawn} asked)")
        sys.exit(130)
    click.echo(", ".join(f"{s}: {n}" for s, n in sorted(counts.items())))
    if counts.get(Status.FAILED):
        sys.exit(EXIT_INPUT)
