"""engine/cli/check.py: `wasla check` also loads the tariffs and claim rules of nomenclatures/ma-tnr."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import WASLA, make_project


def _check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "check", "--config", str(project / "config")], cwd=project,
                          capture_output=True, text=True, timeout=60)


class TestClaimFiles:
    def test_overlapping_tariffs_and_a_bad_rule_are_reported(self, tmp_path: Path) -> None:
        """Two overlapping TEST rows of tariffs.csv and a bad rules.yaml value: each at its file:line, exit 2."""
        project = make_project(tmp_path)
        tnr = project / "nomenclatures" / "ma-tnr"
        with (tnr / "tariffs.csv").open("a", encoding="utf-8") as fh:
            fh.write("C,public,1,2020-01-01,,TEST,TEST VALUE (not a tariff),indicative\n"
                     "C,public,2,2021-01-01,,TEST,TEST VALUE (not a tariff),indicative\n")
        rules = tnr / "rules.yaml"
        rules.write_text(rules.read_text(encoding="utf-8").replace("currency: MAD", "currency: dirham"),
                         encoding="utf-8")
        result = _check(project)
        assert result.returncode == 2, result.stdout
        assert "ma-tnr/tariffs.csv:3: the validity of C (public) overlaps the row at line 2" in result.stderr
        assert "ma-tnr/rules.yaml:9:" in result.stderr and "Traceback" not in result.stderr
