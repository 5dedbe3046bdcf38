"""Logs are JSON lines without PHI, even for errors that no handler caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import gc, threading
from engine.logs import configure
configure()

class Finaliser:
    def __del__(self):
        raise ValueError("patient DUPONT Jean, born 1970-01-01")

Finaliser()
gc.collect()

def work():
    raise KeyError("CIN AB123456")

t = threading.Thread(target=work, name="transform-0")
t.start()
t.join()

import logging
logging.getLogger("psycopg").warning("error ignored terminating %r: %s", "<psycopg.Pipeline [BAD]>",
                                     "invalid input: 'DUPONT'")
logging.getLogger("kombu").info("routine chatter")
"""


def test_errors_nobody_caught_and_library_warnings_are_json_lines_without_their_message() -> None:
    """Python's defaults print a traceback with the exception's message, and a library's warning as
    bare text (psycopg printed one when PostgreSQL restarted): not JSON, and it can quote a patient."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert [(e["event"], e.get("error")) for e in events] == [
        ("error_ignored", "ValueError"), ("thread_died", "KeyError"), ("library_log", None)]
    assert events[0]["object"] == "Finaliser.__del__" and events[1]["thread"] == "transform-0"
    assert events[2]["logger"] == "psycopg" and events[2]["template"] == "error ignored terminating %r: %s"
    assert "DUPONT" not in out.stderr and "AB123456" not in out.stderr
