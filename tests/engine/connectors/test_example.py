"""The third-party example (examples/connectors/wasla-folder-store) is validated, documented and delivers,
with no change to engine/ (`make install-test` installs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.config import load_config
from engine.connectors.docs import reference
from engine.connectors.registry import connector
from tests.support import WASLA, make_project

GOOD = "folder_store:\n  folder: var/objects\n  bucket: fhir-bundles\n"


def _project(tmp_path: Path, destination: str) -> Path:
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "objects.yaml").write_text(destination)
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "  - archive-ndjson\n  - objects\n"))
    return project


def _check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "check", "--config", str(project / "config")], cwd=project,
                          capture_output=True, text=True, timeout=60)


class TestFolderStore:
    def test_check_accepts_its_options(self, tmp_path: Path) -> None:
        """`wasla check` on a project using it says ok."""
        result = _check(_project(tmp_path, GOOD))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ok: 1 channel(s), 2 destination(s)")

    def test_check_reports_a_bad_option_at_its_line(self, tmp_path: Path) -> None:
        """A wrong type and an unknown option are file:line:col errors, exit 2 (and the channel naming the
        destination says it is unknown, as for any invalid destination)."""
        result = _check(_project(tmp_path, GOOD + "  fsync: often\n  buckett: x\n"))
        assert result.returncode == 2
        assert result.stderr.splitlines()[1:] == [
            "config/destinations/objects.yaml:4:10: folder_store.fsync: expected true or false, got a string",
            "config/destinations/objects.yaml:5:3: folder_store.buckett: unknown key 'buckett' "
            "(did you mean 'bucket'?)"]

    def test_delivers_a_bundle_as_an_object(self, tmp_path: Path) -> None:
        """A message's Bundle is stored whole at <folder>/<bucket>/<key>, its location the object's name."""
        project = _project(tmp_path, GOOD.replace("fhir-bundles\n", "fhir-bundles\n  key: '{message_id}.json'\n"))
        config = load_config(project / "config", env={})
        out = connector("outputs", "folder_store")(config.destinations["objects"], config.root)
        assert out.deliver("m-1", b'{"resourceType": "Bundle"}', None) == "fhir-bundles/m-1.json"
        assert (project / "var/objects/fhir-bundles/m-1.json").read_bytes() == b'{"resourceType": "Bundle"}'

    def test_listed_in_the_reference(self) -> None:
        """The generated reference of the installed connectors has its section and options."""
        text = reference()
        assert "### `folder_store` (output)" in text and "| `bucket` | string | required |" in text
        assert "### `folder_store`" not in reference("wasla")
