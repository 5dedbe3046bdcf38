"""Two enabled channels may not hold one resource (a port, a folder), whatever their connector."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigErrors
from tests.support import make_project


def _channel(project: Path, name: str, text: str) -> None:
    (project / "config" / "channels" / f"{name}.yaml").write_text(text + "pipeline: {mapping: adt}\n"
                                                                   "output: [archive-ndjson]\n")


def _errors(project: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(project / "config", env={})
    return [f"{Path(e.file or '').name}:{e.line}: {e.field}: {e.message}" for e in info.value.errors]


TOKEN = "{name: his, sha256: '" + "0" * 64 + "'}"


class TestConflicts:
    def test_mllp_and_rest_on_one_port(self, tmp_path: Path) -> None:
        """A REST channel on the MLLP channel's port is refused at its port line."""
        project = make_project(tmp_path, port=40123)
        _channel(project, "zz-rest", f"input:\n  rest:\n    port: 40123\n    tokens: [{TOKEN}]\n")
        assert _errors(project) == ["zz-rest.yaml:3: input.rest.port: port 40123 already used by channel 'adt-mllp'"]

    def test_other_host_or_disabled_is_fine(self, tmp_path: Path) -> None:
        """The same port on another address, or in a disabled channel, is not a conflict."""
        project = make_project(tmp_path, port=40124)
        _channel(project, "other-host", "input:\n  mllp: {host: 127.0.0.2, port: 40124}\n")
        _channel(project, "off", "enabled: false\ninput:\n  mllp: {port: 40124}\n")
        assert len(load_config(project / "config", env={}).channels) == 3

    def test_two_csv_drops_on_one_folder(self, tmp_path: Path) -> None:
        """Two csv_drop channels on one folder (written differently) are refused at the second one's folder."""
        project = make_project(tmp_path)
        for name, folder in (("lab-a", "var/in/lab"), ("lab-b", "./var/in/../in/lab")):
            _channel(project, name, f"input:\n  csv_drop:\n    folder: {folder}\n    csv_map: csv_lab\n"
                                    "    sender: LAB\n")
        assert _errors(project) == ["lab-b.yaml:3: input.csv_drop.folder: folder "
                                    f"{(project / 'var/in/lab').resolve()} already used by channel 'lab-a'"]
