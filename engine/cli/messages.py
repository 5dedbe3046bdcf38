"""`wasla messages`: find journaled messages, see one, replay them.

Replays are requests in the journal; the running engine (any process running the stage) takes
them. A bulk replay shows its progress, and Ctrl-C withdraws what the engine has not taken yet.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from engine.cli.common import EXIT_INPUT, _friendly, _when, _who, config_option
from engine.cli.text import json_printable, printable
from engine.config import load_config
from engine.errors import WaslaError
from engine.store import Journal, mapping_warnings, open_journal
from engine.store.journal import REUSED
from engine.types import Status

__all__ = ["messages"]

_FINAL = (Status.DELIVERED, Status.FAILED, Status.FILTERED, Status.PARKED)
_COLOURS = {Status.DELIVERED: "green", Status.FAILED: "red", Status.FILTERED: "blue", Status.PARKED: "yellow"}


def _journal(config_dir: Path | None) -> Journal:
    return open_journal(load_config(config_dir).store.url)


@click.group()
def messages() -> None:
    """Journaled messages: search, tail, show, replay."""


def _marks(row: Any) -> str:
    """The flags of a message in a list: control id reused (other content), duplicates received."""
    marks = [REUSED] if row.reused_of else []
    if row.duplicates:
        marks.append(f"DUPLICATES={row.duplicates}")
    return f"[{' '.join(marks)}] " if marks else ""


def _line(row: Any) -> str:
    """One message in a list; everything from the message is escaped (engine.cli.text)."""
    return printable(f"{row.id}  {row.received_at.astimezone():%Y-%m-%d %H:%M:%S}  {row.channel:<16}"
                     f" {row.message_type:<10} {row.control_id:<20} {row.status:<11} {_marks(row)}{row.reason[:80]}")


def _filters(channel: str | None, status: str | None, control_id: str | None, message_type: str | None,
             sender: str | None, patient: str | None, destination: str | None, journal: Journal,
             reused: bool = False, duplicated: bool = False) -> dict[str, Any]:
    key = None
    if patient:
        system, sep, value = patient.rpartition("|")
        if not sep:
            raise WaslaError("--patient takes SYSTEM|VALUE, e.g. https://fhir.wasla.ma/sid/chu-ibn-sina/pi|IPP123456")
        key = journal.keys.patient_key(system, value)  # searched by its keyed hash, never in clear
    return {"channel": channel, "status": status, "control_id": control_id, "message_type": message_type,
            "sender": sender, "patient_key": key, "destination": destination, "reused": reused,
            "duplicated": duplicated}


_FILTER_OPTIONS = [
    click.option("--channel", default=None),
    click.option("--status", type=click.Choice([*Status.UNFINISHED, *_FINAL]), default=None),
    click.option("--control-id", default=None, help="MSH-10"),
    click.option("--type", "message_type", default=None, help="ADT^A08, or ADT for every trigger"),
    click.option("--sender", default=None, help="MSH-4 sending facility"),
    click.option("--patient", default=None, metavar="SYSTEM|VALUE", help="a patient identifier (hashed to search)"),
    click.option("--destination", default=None, help="messages with an output for this destination"),
    click.option("--reused", is_flag=True,
                 help=f"only messages flagged {REUSED}: an earlier message had their MSH-4 + MSH-10, other content"),
    click.option("--duplicated", is_flag=True, help="only messages that were sent again (duplicates answered AA)"),
]


def _with_filters(fn: Any) -> Any:
    for option in reversed(_FILTER_OPTIONS):
        fn = option(fn)
    return fn


@messages.command("search")
@_with_filters
@click.option("--since", default=None, help="Received at or after (ISO 8601).")
@click.option("--until", default=None, help="Received before (ISO 8601).")
@click.option("--limit", default=50, show_default=True)
@click.option("--before", default=None, metavar="CURSOR", help="The cursor printed after a page: the next page.")
@config_option
@_friendly
def search(channel: str | None, status: str | None, control_id: str | None, message_type: str | None,
           sender: str | None, patient: str | None, destination: str | None, reused: bool, duplicated: bool,
           since: str | None, until: str | None, limit: int, before: str | None, config_dir: Path | None) -> None:
    """Newest messages first, by indexed metadata: id, received, channel, type, control id, status, flags
    ([CONTROL_ID_REUSED], [DUPLICATES=n]), reason."""
    journal = _journal(config_dir)
    try:
        cursor = None
        if before:
            at, _, mid = before.partition("/")
            when = _when(at)
            if when is None:
                raise WaslaError(f"not a cursor: {before!r} (expected <received_at>/<id>)")
            cursor = (when, mid)
        rows = journal.messages.search(**_filters(channel, status, control_id, message_type, sender, patient,
                                                  destination, journal, reused, duplicated),
                                       since=_when(since), until=_when(until), before=cursor, limit=limit)
        for row in rows:
            click.secho(_line(row), fg=_COLOURS.get(row.status))
        if len(rows) == limit:
            click.echo(f"next page: --before {rows[-1].received_at.isoformat()}/{rows[-1].id}")
    finally:
        journal.close()


@messages.command("tail")
@_with_filters
@click.option("--interval", default=1.0, show_default=True, help="Seconds between looks at the journal.")
@config_option
@_friendly
def tail(channel: str | None, status: str | None, control_id: str | None, message_type: str | None,
         sender: str | None, patient: str | None, destination: str | None, reused: bool, duplicated: bool,
         interval: float, config_dir: Path | None) -> None:
    """Follow new messages as they arrive (and their status when they settle), coloured by status."""
    journal = _journal(config_dir)
    seen: dict[str, str] = {}
    try:
        filters = _filters(channel, status, control_id, message_type, sender, patient, destination, journal,
                           reused, duplicated)
        since = datetime.now().astimezone()
        while True:
            rows = journal.messages.search(**filters, since=since, limit=500)
            for row in reversed(rows):
                if seen.get(row.id) != row.status:
                    seen[row.id] = row.status
                    click.secho(_line(row), fg=_COLOURS.get(row.status))
            if len(seen) > 10_000:  # forget the oldest: only recent ones can still change
                for mid in sorted(seen)[:5_000]:
                    del seen[mid]
            time.sleep(interval)
    finally:
        journal.close()


@messages.command("show")
@click.argument("message_id")
@click.option("--raw", is_flag=True, help="Also print the HL7 v2 as received (audited: patient data).")
@click.option("--fhir", "fhir_of", default=None, metavar="DESTINATION",
              help="Also print the FHIR sent to DESTINATION (audited: patient data).")
@click.option("--by", default=None, help="Who looks (recorded in the audit trail; default: $USER).")
@config_option
@_friendly
def show(message_id: str, raw: bool, fhir_of: str | None, by: str | None, config_dir: Path | None) -> None:
    """A message's metadata, mapping warnings, events and outputs (with each destination's answer);
    --raw / --fhir its content."""
    journal = _journal(config_dir)
    try:
        row = journal.messages.get(message_id)
        if row is None:
            raise WaslaError(f"no message {message_id}")
        click.echo(printable(f"{row.id}  {row.channel}  {row.message_type}  control id {row.control_id}"
                             f"  sender {row.sender}  {row.status}" + (f"  ({row.reason})" if row.reason else "")))
        if row.reused_of:
            click.secho(f"  {REUSED}: an earlier message had this sender and control id, with other content:"
                        f" {printable(row.reused_of)}", fg="yellow", bold=True)
        if row.duplicates:
            click.echo(f"  sent again {row.duplicates} time(s) with the same content: answered AA, not processed"
                       " again (intake duplicate events)")
        events = journal.messages.events(message_id)
        warnings = mapping_warnings(events)
        if warnings:  # first, before the timeline: what the conversion could not honour
            click.secho(f"  mapping warnings ({len(warnings)}):", fg="yellow", bold=True)
            for w in warnings:
                click.secho(printable(f"    {w['code']}  field {w['field'] or '-'}  rule {w['rule'] or '-'}"
                                      + (f"  {w['detail']}" if w["detail"] else "")), fg="yellow")
        for ev in events:
            detail = orjson.dumps({k: v for k, v in ev["detail"].items() if k != "warnings"}).decode()
            click.echo(printable(f"  {ev['at']}  {ev['stage']:<12} {ev['status']:<18} {detail[:200]}"))
        for dest in journal.outputs.destinations(message_id):
            out = journal.outputs.get(message_id, dest)
            if out is None:
                continue
            click.echo(printable(f"  output {dest}: {out.status}  {out.location[:200]}"))
            answer = journal.outputs.response(message_id, dest)
            if answer and out.status != "delivered":
                click.echo(printable(f"    answer: {answer[:2000]}"))
        who, where = _who(by)
        if raw:
            journal.audit.record(who, "view-raw", [message_id], where)  # recorded before it is shown
            text = row.raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
            click.echo(printable(text, lines=True))
        if fhir_of:
            out = journal.outputs.get(message_id, fhir_of)
            if out is None:
                raise WaslaError(f"message {message_id} has no output for {fhir_of}")
            journal.audit.record(who, "view-fhir", [message_id], where, {"destination": fhir_of})
            click.echo(json_printable(out.body.decode("utf-8", "replace")))
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

    journal = _journal(config_dir)
    try:
        if dead_of:
            ids = journal.outputs.dead_letters(dead_of)
            destination = destination or dead_of
            mode = mode or "deliver"
        elif message_ids:
            ids = list(message_ids)
            found = journal.messages.present(ids)
            missing = [m for m in ids if m not in found]
            if missing:
                raise WaslaError(f"no message {', '.join(missing[:5])}")
        elif channel or status or since or until or destination:
            ids = list(journal.replays.select_ids(channel=channel, status=status, since=_when(since),
                                                  until=_when(until), destination=destination))
        else:
            raise WaslaError("say which messages: ids, --dead DESTINATION or a filter (--channel, --status, --since)")
        mode = mode or "transform"
        if not ids:
            click.echo("nothing to replay")
            return
        if len(ids) > 1 and not yes:
            click.confirm(f"replay {len(ids)} messages ({mode}{' to ' + destination if destination else ''})?",
                          abort=True)
        who, where = _who(by)
        for n in range(0, len(ids), 1000):
            journal.replays.request(ids[n:n + 1000], mode, destination or "", who)
            journal.audit.record(who, "replay", ids[n:n + 1000], where,
                                 {"mode": mode, "destination": destination or ""})
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
                counts = journal.replays.progress(ids, start)
                finished = sum(n for s, n in counts.items() if s in _FINAL)
                bar.update(finished - done)
                done = finished
                if finished >= len(ids):
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        withdrawn = journal.replays.cancel(ids)
        click.echo(f"\nstopped: replays not yet taken by the engine were withdrawn ({withdrawn} asked)")
        sys.exit(130)
    click.echo(", ".join(f"{s}: {n}" for s, n in sorted(counts.items())))
    if counts.get(Status.FAILED):
        sys.exit(EXIT_INPUT)
