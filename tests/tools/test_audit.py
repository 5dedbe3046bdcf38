"""`make audit` (tools/audit.py): a package the advisory service could not answer for fails the audit unless
it is told it runs offline, and then the count is printed; a vulnerability fails it either way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "tools" / "audit.py"
NOT_FOUND = "Dependency not found on PyPI and could not be audited: {0} (1.0)"


def _audit(tmp_path: Path, deps: list[dict[str, object]], *args: str) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"dependencies": deps, "fixes": []}), encoding="utf-8")
    return subprocess.run([sys.executable, str(SCRIPT), "--report", str(report), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _ok(name: str, vulns: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"name": name, "version": "1.0", "vulns": vulns or []}


def _skipped(name: str) -> dict[str, object]:
    return {"name": name, "skip_reason": NOT_FOUND.format(name)}


EDITABLE = {"name": "wasla", "skip_reason": "distribution marked as editable"}
VULN = {"id": "PYSEC-2099-1", "fix_versions": ["1.1"], "aliases": [], "description": ""}


class TestAudit:
    def test_every_package_audited_and_clean_passes(self, tmp_path: Path) -> None:
        """All audited, none vulnerable (the project's own editable install aside): exit 0."""
        done = _audit(tmp_path, [_ok("a"), _ok("b"), EDITABLE])
        assert done.returncode == 0, done.stdout
        assert "audit: 2 packages, 2 audited, 0 not audited, 0 with known vulnerabilities" in done.stdout
        assert "no known vulnerabilities in any package" in done.stdout

    def test_packages_not_audited_fail_the_audit(self, tmp_path: Path) -> None:
        """The case `make audit` used to pass with "No known vulnerabilities found": now exit 1, with the count."""
        done = _audit(tmp_path, [_ok("a"), _skipped("b"), _skipped("c"), EDITABLE])
        assert done.returncode == 1
        assert "audit: FAILED: 2 of 3 packages could not be audited" in done.stdout
        assert "no known vulnerabilities" not in done.stdout.lower()

    def test_offline_passes_and_says_how_many_were_not_audited(self, tmp_path: Path) -> None:
        """Told it runs offline, the audit passes on what it could check and prints the count and the names."""
        done = _audit(tmp_path, [_ok("a"), _skipped("b"), _skipped("c")], "--offline")
        assert done.returncode == 0, done.stdout
        assert "audit: OFFLINE: 2 of 3 packages were not audited" in done.stdout
        assert "b, c" in done.stdout

    @pytest.mark.parametrize("offline", [(), ("--offline",)])
    def test_a_vulnerability_fails_online_and_offline(self, tmp_path: Path, offline: tuple[str, ...]) -> None:
        """A known vulnerability in an audited package fails the audit and names the advisory and the fix."""
        done = _audit(tmp_path, [_ok("a", [VULN]), _ok("b")], *offline)
        assert done.returncode == 1
        assert "a 1.0: PYSEC-2099-1 (fixed in: 1.1)" in done.stdout
        assert "audit: FAILED: 1 packages with known vulnerabilities" in done.stdout

    def test_not_a_report_is_an_error(self, tmp_path: Path) -> None:
        """Something other than a pip-audit report: exit 2, not a pass."""
        bad = tmp_path / "bad.json"
        bad.write_text("[]", encoding="utf-8")
        done = subprocess.run([sys.executable, str(SCRIPT), "--report", str(bad)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2 and "not a pip-audit JSON report" in done.stderr

    def test_the_real_audit_fails_exactly_when_packages_were_not_audited(self) -> None:
        """pip-audit on this environment: the exit status follows the count (here the advisory service
        answers for none, so it must fail), and --offline turns that count into a printed note."""
        done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600,
                              check=False)
        found = re.search(r"audit: (\d+) packages, (\d+) audited, (\d+) not audited, (\d+) with", done.stdout)
        assert found, done.stdout + done.stderr
        total, _, missing, vulnerable = map(int, found.groups())
        assert done.returncode == (1 if missing or vulnerable else 0)
        offline = subprocess.run([sys.executable, str(SCRIPT), "--offline"], capture_output=True, text=True,
                                 timeout=600, check=False)
        assert offline.returncode == (1 if vulnerable else 0)
        if missing:
            assert f"audit: OFFLINE: {missing} of {total} packages were not audited" in offline.stdout

    def test_make_passes_offline_only_when_asked(self) -> None:
        """`make audit` runs tools/audit.py, with --offline for OFFLINE=1 only."""
        def recipe(*args: str) -> str:
            out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "audit", *args],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            return out.strip().splitlines()[-1].strip()

        assert recipe().endswith("tools/audit.py")
        assert recipe("OFFLINE=1").endswith("tools/audit.py --offline")
        assert recipe("OFFLINE=0").endswith("tools/audit.py")
