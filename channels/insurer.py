"""Insurer adapter destination: each claim version as a JSON file, and a daily bordereau per insurer.

For insurers (AMO organismes) that take files rather than FHIR: each `FHIR^Claim` message of a claims
channel (a transaction Bundle whose first entry is the Claim, then the resources it references) is
written as `claim-<claim id>-v<version>.json` in the shape docs/claims-insurer-json.md describes
(`format: wasla-insurer-claim/1`), and one line per claim version is appended to
`bordereau-<insurer>-<YYYY-MM-DD>.csv` (the day the claim was made, `Claim.created`; columns
claim_id, version, items, total).

Exactly once across crashes: the claim file is written to a temporary name, fsynced, renamed into
place and the folder fsynced; a redelivery finds it and writes nothing again (it returns None), but
still adds the bordereau line if a crash came between the two. A bordereau is appended under an
exclusive lock, never with a second line for the same claim version, and a torn last line (crash
mid-write) is cut before the next append. A message that is not a Claim Bundle is a
PermanentDeliveryError naming what is missing.
"""

from __future__ import annotations

import fcntl
import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger
from engine.connectors.toolkit import DestinationConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["FORMAT", "InsurerOutput", "claim_document"]

FORMAT = "wasla-insurer-claim/1"
BORDEREAU_HEADER = b"claim_id,version,items,total\n"
_CENT = Decimal("0.01")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # what a claim id or insurer code may be in a file name

INSURER_OPTIONS = (
    Field("path", "string", required=True, min_length=1,
          description="Folder of the claim files and bordereaux, relative to the working directory.",
          examples=("var/out/amo",)),
    Field("fsync", "boolean", default=True,
          description="fsync each claim file, the folder and the bordereau before a claim counts as delivered."),
)


def _suffix(identifiers: Any, suffix: str) -> str:
    """The value of the first identifier whose system ends with `suffix` (the project base varies)."""
    for ident in identifiers or []:
        if isinstance(ident, dict) and str(ident.get("system", "")).endswith(suffix) and ident.get("value"):
            return str(ident["value"])
    return ""


def _money(value: Any) -> str:
    """A FHIR Money value as decimal text with two decimals ('' when absent)."""
    if not isinstance(value, dict) or value.get("value") is None:
        return ""
    try:
        return str(Decimal(str(value["value"])).quantize(_CENT))
    except InvalidOperation:
        return ""


def _code(concept: Any) -> tuple[str, str]:
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding.get("system", "")), str(coding["code"])
    return "", ""


def claim_document(bundle: Any) -> dict[str, Any]:
    """The insurer's JSON of a Claim Bundle (docs/claims-insurer-json.md); PermanentDeliveryError when the
    Bundle is no Claim Bundle or the Claim lacks its id, version or insurer."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PermanentDeliveryError("not a Claim Bundle: the body is not a FHIR Bundle (the insurer adapter takes "
                                     "the FHIR^Claim messages of a claims channel)")
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    claim = entries[0]["resource"] if entries else {}
    if claim.get("resourceType") != "Claim":
        raise PermanentDeliveryError("not a Claim Bundle: its first entry is not a Claim (the insurer adapter takes "
                                     "the FHIR^Claim messages of a claims channel)")
    urls = {str(e.get("fullUrl", "")): e["resource"] for e in entries}

    def target(ref: Any) -> dict[str, Any]:
        found = urls.get(str((ref or {}).get("reference", ""))) if isinstance(ref, dict) else None
        return found or {}

    version = next((str(t.get("code", "")) for t in (claim.get("meta") or {}).get("tag", [])
                    if str(t.get("system", "")).endswith("/CodeSystem/claim-version")), "")
    insurer = _suffix(target(claim.get("insurer")).get("identifier"), "/sid/ma/amo")
    missing = [name for name, value in (("id", claim.get("id")), ("version (meta.tag claim-version)", version),
                                        ("insurer (Organization with an AMO code)", insurer)) if not value]
    if missing or not version.isdigit():
        raise PermanentDeliveryError(f"the Claim has no {', '.join(missing) or 'numeric version'}: not written")
    coverage: dict[str, Any] = {}
    for ins in claim.get("insurance", []):
        coverage = target(ins.get("coverage"))
        if ins.get("focal"):
            break
    team: dict[int, tuple[str, str]] = {}  # sequence → (INPE, role)
    for member in claim.get("careTeam", []):
        role = _code(member.get("role"))[1]
        team[int(member.get("sequence", 0))] = (_suffix(target(member.get("provider")).get("identifier"),
                                                        "/sid/ma/inpe"), role)
    acts = []
    for item in claim.get("item", []):
        system, code = _code(item.get("productOrService"))
        acts.append({
            "sequence": item.get("sequence"), "system": system, "code": code,
            "date": item.get("servicedDate", ""), "quantity": (item.get("quantity") or {}).get("value"),
            "unit_price": _money(item.get("unitPrice")), "net": _money(item.get("net")),
            "care_team_inpe": [team[s][0] for s in item.get("careTeamSequence", []) if s in team and team[s][0]]})
    period = claim.get("billablePeriod") or {}
    return {
        "format": FORMAT,
        "claim": {"id": str(claim["id"]), "version": int(version),
                  "type": _code(claim.get("type"))[1], "use": claim.get("use", ""),
                  "replaces": next((str(((r.get("claim") or {}).get("identifier") or {}).get("value", ""))
                                    for r in claim.get("related", [])), "")},
        "facility": {"inpe": _suffix(target(claim.get("provider")).get("identifier"), "/sid/ma/inpe")},
        "insurer": {"code": insurer},
        "patient": {"registration": str(coverage.get("subscriberId") or "")
                    or _suffix(coverage.get("identifier"), "/sid/ma/cnss-immatriculation")},
        "beneficiary": {"relationship": _code(coverage.get("relationship"))[1] or "self",
                        "dependent": str(coverage.get("dependent") or "")},
        "prescribers_inpe": [inpe for inpe, role in team.values() if role == "primary" and inpe],
        "diagnoses_icd10": [_code(d.get("diagnosisCodeableConcept"))[1] for d in claim.get("diagnosis", [])
                            if "icd-10" in _code(d.get("diagnosisCodeableConcept"))[0]],
        "acts": acts,
        "total": _money(claim.get("total")),
        "currency": str((claim.get("total") or {}).get("currency", "MAD")),
        "dates": {"created": claim.get("created", ""), "start": period.get("start", ""),
                  "end": period.get("end", "")},
    }


class InsurerOutput:
    """The outbound connector `insurer`: owns the claim files and bordereaux of its folder. Writes each claim
    version once, whole or not at all (temporary file, fsync, rename), and one bordereau line per claim
    version. Options: `INSURER_OPTIONS`."""

    description = ("Insurer adapter: each claim version (a FHIR^Claim message) as a versioned JSON file, and a daily "
                   "bordereau (CSV) per insurer; for AMO organismes that take files.")
    options_spec = INSURER_OPTIONS
    capabilities = Capabilities()

    def __init__(self, config: DestinationConfig, root: Path) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.folder = (root / str(o.path)).resolve()
        self.fsync = bool(o.fsync)
        self.folder.mkdir(parents=True, exist_ok=True)

    def deliver(self, message_id: str, body: bytes, journal: OutputLedger) -> str | None:
        try:
            doc = claim_document(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise PermanentDeliveryError("not a Claim Bundle: the body is not JSON") from exc
        claim, version, insurer = doc["claim"]["id"], doc["claim"]["version"], doc["insurer"]["code"]
        for what, value in (("claim id", claim), ("insurer code", insurer)):
            if not _SAFE.match(value):
                raise PermanentDeliveryError(f"the {what} cannot name a file: only letters, digits, '.', '_', '-'")
        day = str(doc["dates"]["created"])[:10]
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise PermanentDeliveryError("the Claim has no creation date (Claim.created): no bordereau day")
        name = f"claim-{claim}-v{version}.json"
        try:
            written = self._write_once(name, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            line = f"{claim},{version},{len(doc['acts'])},{doc['total']}\n".encode()
            self._bordereau(f"bordereau-{insurer}-{day}.csv", f"{claim},{version},".encode(), line)
        except OSError as exc:
            raise TransientDeliveryError(f"{self.id}: cannot write {self.folder.name}: {exc.strerror}") from exc
        return name if written else None

    def _write_once(self, name: str, data: bytes) -> bool:
        """Write `name` whole (temporary file, fsync, rename, folder fsync); False when it is there already."""
        final = self.folder / name
        if final.exists():
            return False
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
        if self.fsync:
            self._sync_folder()
        return True

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _bordereau(self, name: str, key: bytes, line: bytes) -> None:
        """Append `line` unless a line starting with `key` (claim id, version) is there; a torn last line
        is cut first; a new file starts with the header."""
        fd = os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            held = os.pread(fd, size, 0) if size else b""
            if held and not held.endswith(b"\n"):  # torn by a crash mid-write
                held = held[:held.rfind(b"\n") + 1]
                os.ftruncate(fd, len(held))
            if any(existing.startswith(key) for existing in held.splitlines()):
                return
            data = (BORDEREAU_HEADER if not held else b"") + line
            os.pwrite(fd, data, len(held))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        return None
