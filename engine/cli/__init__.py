"""The `wasla` command: run, check, convert, and the operator's work on messages, claims, mappings,
nomenclatures and users.

One module per command group; `common` holds what they share (exit codes, `--config`, errors
printed as one line each, never a traceback), `text` makes sender-controlled text safe for the
terminal. This module only assembles them: nothing here is imported by the command modules, so the
package has no import cycle.
"""

from __future__ import annotations

import click

from engine.cli.audit import main_audit
from engine.cli.check import check
from engine.cli.claims import claims
from engine.cli.connectors import connectors_group
from engine.cli.convert import convert
from engine.cli.ingest import ingest
from engine.cli.mapping import mapping
from engine.cli.messages import messages
from engine.cli.nomenclature import nomenclature
from engine.cli.run import run
from engine.cli.tokens import token
from engine.cli.users import user

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wasla")
def main() -> None:
    """Wasla: HL7 v2 / CSV / REST in, FHIR R4 out, every message journaled."""


main.add_command(check)
main.add_command(run)
main.add_command(convert)
main.add_command(ingest)
main.add_command(token)
main.add_command(user)
main.add_command(mapping)
main.add_command(nomenclature)
main.add_command(messages)
main.add_command(claims)
main.add_command(main_audit)
main.add_command(connectors_group)
