"""`wasla ingest`: hand a CSV file to a running engine's channel and follow it to the end."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import EXIT_INPUT, _friendly, config_option
from engine.config import load_config
from engine.connectors.inputs import drop_folder_option
from engine.connectors.registry import connector
from engine.errors import WaslaError
from engine.store import open_journal

__all__ = ["ingest"]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--channel", "channel_id", required=True, help="A csv_drop channel of this installation.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to follow the file before giving up.")
@config_option
@_friendly
def ingest(file: Path, channel_id: str, timeout: float, config_dir: Path | None) -> None:
    """Hand FILE to a running engine's CSV channel and follow it to the end with a progress bar.

    The channel's connector must take dropped files (its `drop_folder` names the folder option).
    """
    import hashlib
    import shutil
    import time


    config = load_config(config_dir)
    try:
        channel = config.channel(channel_id)
    except KeyError as exc:
        raise WaslaError(f"no channel '{channel_id}'") from exc
    option = drop_folder_option(connector("inputs", channel.input_kind))
    if option is None:
        raise WaslaError(f"channel '{channel_id}' is not a csv_drop channel")
    folder = Path(str(channel.input[option]))
    digest, total = hashlib.sha256(), -1  # the header line is not a row
    with file.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            total += chunk.count(b"\n")
    sha = digest.hexdigest()
    part = folder / f".{file.name}.part"
    shutil.copyfile(file, part)
    part.rename(folder / file.name)
    (folder / f"{file.name}.ready").touch()
    journal = open_journal(config.store.url)
    deadline = time.monotonic() + timeout
    try:
        with click.progressbar(length=max(total, 1), label=file.name, show_pos=True) as bar:
            done = 0
            while time.monotonic() < deadline:
                state = journal.files.status(channel.id, sha)
                if state is not None:
                    status, rows, messages, rejected = state
                    bar.update(rows - done)
                    done = rows
                    if status != "processing":
                        break
                time.sleep(0.2)
            else:
                raise WaslaError(f"{file.name}: not finished after {timeout:g} s (is the engine running?)")
    finally:
        journal.close()
    click.echo(f"{file.name}: {status}, {rows} rows, {messages} messages, {rejected} rejected"
               + (f" (see {folder / 'failed' / (file.name + '.rejects.csv')})" if rejected else ""))
    if status != "done":
        sys.exit(EXIT_INPUT)
