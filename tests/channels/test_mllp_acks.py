"""Enhanced-mode ACKs, `ack: after_transform` and batches, through a real engine (embedded defaults)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.test_mllp import configure
from tests.support import adt, engine, make_project, mllp_read, msa, port_of, wait_lines

# MSH-7 impossible: the Bundle needs the message's time, so the adt mapping fails on it (a bad PID-7 would only
# lose the birth date, with a VALUE_INVALID warning)
BAD_DATE = (b"|20050110045504+0700|", b"|20051310045504+0700|")


def asking(control_id: str, accept: str, application: str, bad: bool = False) -> bytes:
    raw = adt(control_id).replace(b"|P|2.3|||", f"|P|2.3|||{accept}|{application}".encode(), 1)
    return raw.replace(*BAD_DATE) if bad else raw


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    project = make_project(tmp_path)
    with engine(project):
        yield port_of(project)


def exchange(port: int, payload: bytes, replies: int) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"\x0b" + payload + b"\x1c\r")
        out = [mllp_read(s) for _ in range(replies)]
        s.settimeout(1.0)
        try:  # nothing more may come
            extra = s.recv(100)
        except TimeoutError:
            extra = b""
        assert extra == b"", f"unexpected extra reply {extra[:80]!r}"
        return out


class TestEnhancedMode:
    def test_accept_then_application_ack(self, port: int) -> None:
        """AL/AL: CA once durable, then AA once transformed, both for the message's MSH-10."""
        commit, application = exchange(port, asking("ENH-1", "AL", "AL"), 2)
        assert msa(commit)[1:3] == ["CA", "ENH-1"]
        assert msa(application)[1:3] == ["AA", "ENH-1"]

    def test_application_ack_only_on_error(self, port: int) -> None:
        """AL/ER and a message that converts: CA and nothing else."""
        (commit,) = exchange(port, asking("ENH-2", "AL", "ER"), 1)
        assert msa(commit)[1:3] == ["CA", "ENH-2"]

    def test_never_accept_and_mapping_error(self, port: int) -> None:
        """NE/AL and a message the mapping cannot convert: no CA; the AE carries the mapping error."""
        (application,) = exchange(port, asking("ENH-3", "NE", "AL", bad=True), 1)
        assert msa(application)[1:3] == ["AE", "ENH-3"]
        assert b"at MSH-7: expected a valid calendar date" in application

    def test_unreadable_is_commit_reject(self, port: int) -> None:
        """A message whose MSH-2 is broken but asks for enhanced mode cannot be read: its answer is original AR."""
        (reply,) = exchange(port, b"MSH|^^\\&|X|Y|||||ADT^A01|C|P|2.5|||AL|AL\r", 1)
        assert msa(reply)[1] == "AR"


class TestAfterTransform:
    @pytest.fixture
    def port(self, tmp_path: Path) -> Iterator[int]:
        project = configure(make_project(tmp_path), "    ack: after_transform\n")
        with engine(project):
            yield port_of(project)

    def test_aa_after_the_bundle_is_made(self, port: int) -> None:
        (reply,) = exchange(port, adt("AT-1"), 1)
        assert msa(reply)[1:3] == ["AA", "AT-1"]

    def test_ae_with_the_mapping_error(self, port: int) -> None:
        """The sender learns at once that its message cannot be converted, with the rule and field."""
        (reply,) = exchange(port, adt("AT-2").replace(*BAD_DATE), 1)
        assert msa(reply)[1:3] == ["AE", "AT-2"]
        assert b"at MSH-7: expected a valid calendar date" in reply


class TestBatch:
    def test_batch_is_split_journaled_and_answered_once(self, tmp_path: Path) -> None:
        """FHS/BHS + 3 messages + BTS/FTS: one batch of 3 ACKs back, 3 Bundles delivered."""
        project = make_project(tmp_path)
        body = b"".join(adt(f"BAT-{i}", f"P{i}").rstrip(b"\r") + b"\r" for i in range(3))
        batch = (b"FHS|^~\\&|LIS|CHU|WASLA|HUB|20261124||||F-1\rBHS|^~\\&|LIS|CHU|WASLA|HUB|20261124||||B-1\r"
                 + body + b"BTS|3\rFTS|1\r")
        with engine(project):
            (reply,) = exchange(port_of(project), batch, 1)
            segments = reply.decode().strip("\r").split("\r")
            assert segments[0].startswith("FHS|") and segments[1].split("|")[11] == "B-1"
            assert [s.split("|")[1:3] for s in segments if s.startswith("MSA|")] == [
                ["AA", "BAT-0"], ["AA", "BAT-1"], ["AA", "BAT-2"]]
            assert segments[-2] == "BTS|3" and segments[-1] == "FTS|1"
            assert len(wait_lines(project, 3)) == 3
