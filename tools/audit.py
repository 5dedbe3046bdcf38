"""`make audit`: known vulnerabilities in the installed dependencies (pip-audit), a check that can fail.

pip-audit prints "No known vulnerabilities found" even when the advisory service could answer for none
of the packages ("Dependency not found on PyPI and could not be audited"): such an audit proves nothing.
Here a package that was not audited fails the audit, like a vulnerability, unless the caller says the
machine is offline (`--offline`, `make audit OFFLINE=1`): then the audit passes on what it could check
and says how many packages it could not.

    python tools/audit.py [--offline] [--report FILE]   exit 0 clean, 1 vulnerable or not audited, 2 broken
    python tools/audit.py --reachable                   exit 0 when the advisory service answers (CI asks first)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# A release PyPI has had for years: the service answers for it with its (empty) list of vulnerabilities.
PROBE = "https://pypi.org/pypi/pip/24.0/json"


def reachable(url: str = PROBE, timeout: float = 15.0) -> bool:
    """Whether the advisory service pip-audit asks (PyPI's JSON API) answers for a known release."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - a fixed https URL
            return "vulnerabilities" in json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


def run_pip_audit(extra: list[str]) -> dict[str, Any]:
    """pip-audit's JSON report of the environment this Python runs in (editable installs left out)."""
    pip_audit = Path(sys.executable).with_name("pip-audit")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        done = subprocess.run([str(pip_audit), "--skip-editable", "--progress-spinner", "off", "--format", "json",
                               "--output", str(out), *extra], check=False, capture_output=True, text=True)
        if done.returncode not in (0, 1) or not out.exists():  # 1: vulnerabilities found, in the report
            sys.stderr.write(done.stderr[-4000:])
            raise RuntimeError(f"pip-audit failed (exit {done.returncode})")
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return report


def judge(report: dict[str, Any], *, offline: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for a pip-audit JSON report."""
    deps = report.get("dependencies") if isinstance(report, dict) else None
    if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
        raise ValueError("not a pip-audit JSON report (no dependencies)")
    mine = [d for d in deps if "editable" in str(d.get("skip_reason", ""))]  # this project, skipped on purpose
    deps = [d for d in deps if d not in mine]
    skipped = sorted(str(d.get("name")) for d in deps if d.get("skip_reason"))
    audited = [d for d in deps if not d.get("skip_reason")]
    lines = []
    vulnerable = 0
    for d in audited:
        for v in d.get("vulns") or []:
            fixes = ", ".join(v.get("fix_versions") or []) or "none yet"
            lines.append(f"{d.get('name')} {d.get('version')}: {v.get('id')} (fixed in: {fixes})")
        vulnerable += bool(d.get("vulns"))
    total = len(deps)
    lines.append(f"audit: {total} packages, {len(audited)} audited, {len(skipped)} not audited, "
                 f"{vulnerable} with known vulnerabilities"
                 + (f" (editable, not audited: {', '.join(str(d.get('name')) for d in mine)})" if mine else ""))
    if skipped:
        lines.append(f"audit: not audited (the advisory service did not answer for them): {', '.join(skipped)}")
    status = 1 if vulnerable else 0
    if skipped and not offline:
        lines.append(f"audit: FAILED: {len(skipped)} of {total} packages could not be audited. If this machine "
                     "cannot reach the advisory service, say so: `make audit OFFLINE=1` (tools/audit.py --offline)")
        status = 1
    elif skipped:
        lines.append(f"audit: OFFLINE: {len(skipped)} of {total} packages were not audited")
    if vulnerable:
        lines.append(f"audit: FAILED: {vulnerable} packages with known vulnerabilities")
    elif not skipped:
        lines.append("audit: no known vulnerabilities in any package")
    return status, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline", action="store_true",
                        help="the advisory service is out of reach: packages not audited do not fail the audit")
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON report instead of running pip-audit")
    parser.add_argument("--reachable", action="store_true", help="only say whether the advisory service answers")
    args, extra = parser.parse_known_args(argv)
    if args.reachable:
        ok = reachable()
        print(f"audit: the advisory service {'answers' if ok else 'does not answer'} ({PROBE})")
        return 0 if ok else 1
    try:
        report = (json.loads(args.report.read_text(encoding="utf-8")) if args.report else run_pip_audit(extra))
        status, lines = judge(report, offline=args.offline)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"audit: ERROR: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
