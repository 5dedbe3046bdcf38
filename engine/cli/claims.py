"""`wasla claims`: the claims the claims stage gathered (engine.claims), one claim, and an operator's
close or release.

`close` and `release` are requests in the journal (`claims.requested`): the engine's claims stage
carries them out on its next turn (every `tick_s`), in whichever process runs it, so the command
returns at once and says so. A list and a claim's state carry no patient data (ids, codes, amounts,
reasons); `show --json` prints the last Claim sent, which is patient data, and is audited first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from engine.cli.common import EXIT_INPUT, _friendly, _who, config_option
from engine.cli.text import json_printable, printable
from engine.config import load_config
from engine.errors import WaslaError
from engine.store import Journal, open_journal
from engine.store.claims import STATES, ClaimRow

__all__ = ["claims"]

_COLOURS = {"parked": "yellow", "submitted": "blue", "accepted": "green", "rejected": "red", "empty": "white",
            "cancelled": "white"}


def _journal(config_dir: Path | None) -> Journal:
    return open_journal(load_config(config_dir).store.url)


def _claim(journal: Journal, ref: str) -> ClaimRow:
    """The claim `ref` names: its id, or the first characters of one id only."""
    row = journal.claims.get(ref)
    if row is not None:
        return row
    found = journal.claims.find(ref) if len(ref) >= 4 else []
    if not found:
        raise WaslaError(f"no claim {ref}" + (" (give at least 4 characters of its id)" if len(ref) < 4 else ""))
    if len(found) > 1:
        raise WaslaError(f"{ref} is the start of several claims: {', '.join(r.id for r in found)}")
    return found[0]


def _first_code(row: ClaimRow) -> str:
    return row.reasons[0]["code"] if row.reasons else ""


@click.group()
def claims() -> None:
    """Claims (AMO care sheets): list, show, close, release."""


@claims.command("list")
@click.option("--status", type=click.Choice(STATES), default=None)
@click.option("--destination", default=None, help="The claims destination (default: every one).")
@click.option("--limit", default=50, show_default=True)
@config_option
@_friendly
def list_claims(status: str | None, destination: str | None, limit: int, config_dir: Path | None) -> None:
    """Most recently changed first: id, status, version, items, total MAD, insurer, updated, close reason,
    first reason code."""
    journal = _journal(config_dir)
    try:
        rows = journal.claims.search(destination=destination, state=status or "", limit=limit)
        if not rows:
            click.echo("no claim")
        for row in rows:
            click.secho(printable(f"{row.id}  {row.state:<9} v{row.version:<3} {row.items:>3}  {row.total or '-':>10}"
                                  f"  {row.insurer or '-':<6} {row.updated_at.astimezone():%Y-%m-%d %H:%M:%S}"
                                  f"  {row.close_reason or '-':<9} {_first_code(row)}"), fg=_COLOURS.get(row.state))
    finally:
        journal.close()


@claims.command("show")
@click.argument("claim")
@click.option("--json", "as_json", is_flag=True, help="Print the last Claim sent (audited: patient data).")
@click.option("--by", default=None, help="Who looks (recorded in the audit trail; default: $USER).")
@config_option
@_friendly
def show(claim: str, as_json: bool, by: str | None, config_dir: Path | None) -> None:
    """A claim's state, each reason it is parked for (where, what, which file fixes it), its versions (the
    FHIR^Claim messages and their delivery) and the insurer's response; --json the last Claim."""
    journal = _journal(config_dir)
    try:
        row = _claim(journal, claim)
        if as_json:
            if not row.message_id:
                raise WaslaError(f"claim {row.id} was never sent: no Claim to print ({row.state})")
            message = journal.messages.get(row.message_id)
            if message is None or not message.raw:
                raise WaslaError(f"the Claim message {row.message_id} is not in the journal any more (retention)")
            who, where = _who(by)
            journal.audit.record(who, "view-fhir", [row.message_id], where, {"claim": row.id})  # before it is shown
            resource = orjson.loads(message.raw)["entry"][0]["resource"]
            click.echo(json_printable(orjson.dumps(resource, option=orjson.OPT_INDENT_2).decode()))
            return
        click.secho(printable(f"{row.id}  {row.state}  destination {row.destination}  version {row.version}"
                              f"  items {row.items}  total {row.total or '-'} MAD  insurer {row.insurer or '-'}"),
                    fg=_COLOURS.get(row.state), bold=True)
        click.echo(f"  opened {row.opened_at.astimezone():%Y-%m-%d %H:%M:%S}"
                   f"  updated {row.updated_at.astimezone():%Y-%m-%d %H:%M:%S}"
                   + (f"  closed {row.closed_at.astimezone():%Y-%m-%d %H:%M:%S} ({row.close_reason})"
                      if row.closed_at else "")
                   + (f"  submitted {row.submitted_at.astimezone():%Y-%m-%d %H:%M:%S}" if row.submitted_at else ""))
        if row.requested:
            click.echo(f"  requested: {row.requested} (the claims stage carries it out on its next turn)")
        if row.reasons:
            click.secho(f"  reasons ({len(row.reasons)}):", fg="yellow", bold=True)
            for r in row.reasons:
                click.secho(printable(f"    {r.get('code', '')}  at {r.get('where') or '-'}  {r.get('message', '')}"
                                      + (f"  fix: {r['fix']}" if r.get("fix") else "")), fg="yellow")
        versions = _versions(journal, row)
        if versions:
            click.echo("  versions:")
        for line in versions:
            click.echo(printable(line))
        if row.response_id:
            answer = journal.messages.get(row.response_id)
            click.echo(printable(f"  response: {row.response_id}"
                                 + (f"  {answer.message_type}  {answer.received_at.astimezone():%Y-%m-%d %H:%M:%S}"
                                    f"  {answer.status}" if answer else "  (not in the journal any more)")))
    finally:
        journal.close()


def _versions(journal: Journal, row: ClaimRow) -> list[str]:
    """One line per version sent: its FHIR^Claim message and each output's delivery status."""
    lines = []
    for version in range(1, row.version + 1):
        for m in journal.messages.search(control_id=f"{row.id}/{version}", message_type="FHIR^Claim", limit=5):
            outputs = []
            for dest in journal.outputs.destinations(m.id):
                out = journal.outputs.get(m.id, dest)
                if out is not None:
                    outputs.append(f"{dest}: {out.status}")
            lines.append(f"    v{version}  {m.id}  {m.received_at.astimezone():%Y-%m-%d %H:%M:%S}  {m.status}"
                         + (f"  ({', '.join(outputs)})" if outputs else ""))
    return lines


def _ask(journal: Journal, claim: str, what: str, yes: bool, by: str | None, allowed: tuple[str, ...]) -> None:
    row = _claim(journal, claim)
    if row.state not in allowed:
        raise WaslaError(f"claim {row.id} is {row.state}: only a claim {' or '.join(allowed)} can be asked to {what}")
    if not yes:
        try:
            agreed = click.confirm(f"{what} claim {row.id} ({row.state}, {row.items} items, {row.total or '-'} MAD)?")
        except click.Abort:  # no terminal, or Ctrl-C/Ctrl-D at the prompt
            agreed = False
        if not agreed:
            click.echo(f"nothing asked: claim {row.id} is left {row.state}", err=True)
            sys.exit(EXIT_INPUT)
    who, where = _who(by)
    if not journal.claims.request(row.id, what):
        raise WaslaError(f"no claim {row.id}")
    journal.audit.record(who, f"claim-{what}", [row.message_id], where, {"claim": row.id, "by": who})
    done = ("closes it, then builds, checks and sends it (or parks it with its reasons)" if what == "close"
            else "checks it again against today's tariff and rules, and sends it if it passes")
    click.echo(f"{what} of claim {row.id} requested: the engine's claims stage ({row.destination}) {done} on its"
               f" next turn; see `wasla claims show {row.id}`")


@claims.command("close")
@click.argument("claim")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--by", default=None, help="Who asks (recorded in the audit trail; default: $USER).")
@config_option
@_friendly
def close(claim: str, yes: bool, by: str | None, config_dir: Path | None) -> None:
    """Ask the engine to close an open claim now (no discharge or end of account is coming)."""
    journal = _journal(config_dir)
    try:
        _ask(journal, claim, "close", yes, by, ("open",))
    finally:
        journal.close()


@claims.command("release")
@click.argument("claim")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--by", default=None, help="Who asks (recorded in the audit trail; default: $USER).")
@config_option
@_friendly
def release(claim: str, yes: bool, by: str | None, config_dir: Path | None) -> None:
    """Ask the engine to check a parked claim again now (after fixing the file its reasons name)."""
    journal = _journal(config_dir)
    try:
        _ask(journal, claim, "release", yes, by, ("parked", "closed"))
    finally:
        journal.close()
