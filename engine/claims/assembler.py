"""The claims stage: charges gathered per visit or account into one FHIR Claim, checked, then sent.

A destination of kind `claims` takes the converted Bundles of the billing feeds (DFT, BAR, the
ADT that opens and closes a visit, ChargeItems over REST, a CSV billing export) and keeps what they
say about each claim in the journal (`engine.store.claims`): the state survives restarts and is
shared by every worker process. A claim is closed by a configured event (`close_on`: ADT^A03,
BAR^P12 …), after a quiet period (`close_after_s`), or by an operator (`wasla claims close`). Once
closed it is built (`engine.claims.build`) and checked against the national rules
(`engine.claims.rules`, from nomenclatures/ma-tnr): a claim that fails is **parked** with each
reason, and released by itself when the tariff, the act tables or the rules change on disk (or by
`wasla claims release`); one that passes is journaled as a new message `FHIR^Claim` on the claims
channel (`channel:`), which carries it to that channel's outputs (the insurer's FHIR server, the
insurer adapter) like any other message: retries, dead letters, replay.

A charge or credit that arrives before the claim is sent amends it; after, it is sent again as the
next version (a correction, `related: prior`). The same resources give the same Claim bytes, so a
visit sent twice sends nothing twice. A ClaimResponse routed here marks its claim accepted or rejected.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog

from engine.claims.build import Built, ClaimOptions, build_claim, claim_id, keys_of
from engine.claims.rules import Rules, check
from engine.claims.tariff import Reason, TariffBook
from engine.config import Config, DestinationConfig
from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger
from engine.errors import ConfigError, ConfigErrors, PermanentDeliveryError
from engine.ids import message_id as new_message_id
from engine.logs import error_fields
from engine.pipeline.parking import folder_stamp
from engine.pipeline.route import type_matches
from engine.store import Journal
from engine.store.claims import ClaimRow, Decision
from engine.transport import Transport
from engine.types import Inbound

__all__ = ["CLAIMS_OPTIONS", "DEFAULT_RULES", "ClaimsOutput", "load_checks"]

_log = structlog.get_logger("wasla.claims")

#: what a claim is not built from (lineage); every other resource of a billing Bundle is kept, a claim may refer to it
SKIPPED = ("Provenance", "Bundle", "OperationOutcome")
_CENT = Decimal("0.01")
UNSENT_AFTER_S = 60  # a Claim message journaled this long ago and still not taken up was never published
_ANSWERS = {"complete": "accepted", "error": "rejected", "partial": "accepted", "queued": "submitted"}

DEFAULT_RULES = "ma-tnr/rules.yaml"


def load_checks(config: Config, rules: str = DEFAULT_RULES) -> tuple[TariffBook, Rules]:
    """The tariff and act tables (nomenclatures/ma-tnr, ma-ngap, ma-nabm) and the claim rules (`rules`,
    relative to the nomenclatures folder), checked against each other; ConfigErrors at file:line."""
    folder = config.nomenclatures_dir
    schema = config.config_dir / "schema" / "claim-rules.schema.json"
    book = TariffBook.load(folder, base=config.fhir_base)
    loaded = Rules.load(folder / rules, schema=schema if schema.is_file() else None)
    errors = loaded.against(book)
    if errors:
        raise ConfigErrors(errors)
    return book, loaded


CLAIMS_OPTIONS = (
    Field("channel", "string", required=True, pattern="^[a-z0-9][a-z0-9_-]*$",
          description="The channel (input kind `claims`) whose outputs take the claims made here.",
          examples=("claims-amo",)),
    Field("provider_inpe", "string", required=True, description="INPE of the facility that bills (Claim.provider).",
          examples=("123456789",)),
    Field("sector", "string", enum=("public", "private"), default="public",
          description="Which column of the tariff (nomenclatures/ma-tnr/tariffs.csv) prices the acts."),
    Field("insurer", "string", default="CNSS",
          description="AMO organisme (nomenclatures/ma-amo) when no coverage names one."),
    Field("close_on", "array", items={"type": "string"}, default=("ADT^A03", "BAR^P12"),
          description="Message types that close the visit's claim (ADT^A03 discharge, BAR^P12 end of account)."),
    Field("close_after_s", "integer", minimum=0, default=0,
          description="Close a claim nothing has changed for this many seconds (0: only by event or operator)."),
    Field("group_by", "array", items={"type": "string", "enum": ["fse", "visit", "account"]},
          default=("fse", "visit", "account"),
          description="Which identifiers gather charges into one claim, first found first: the FSE number, the "
                      "visit (PV1-19), the account (PID-18)."),
    Field("rules", "string", default=DEFAULT_RULES,
          description="The claim rules, relative to the nomenclatures folder."),
    Field("tick_s", "number", exclusive_minimum=0, default=1.0,
          description="How often closed, quiet and parked claims are looked at."),
)


#: the nomenclature folders the tariff, act tables and rules are read from: a change there re-checks parked claims
_WATCHED = ("ma-tnr", "ma-ngap", "ma-nabm", "ma-lettres-cles", "ma-amo", "identifier-systems")


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(s for name in _WATCHED for s in folder_stamp(folder / name))


class ClaimsOutput:
    """The output connector `claims`: owns the claims of its destination — gathering, closing, building,
    checking, parking and sending them — through the journal's claims tables and the claims channel.
    Guarantees each claim is sent once per content (a resend of the same visit sends nothing) and that
    nothing in a claim is lost across a crash: a message is applied idempotently, and a claim's
    decision and the journal message that sends it are one transaction.
    """

    description = ("Claims stage: gathers the charges of a visit or account into one FHIR Claim, checks it against "
                   "the national tariff and rules, parks it with reasons or sends it on its channel.")
    options_spec = CLAIMS_OPTIONS
    capabilities = Capabilities(takes_headers=True)

    def __init__(self, config: DestinationConfig, root: Path) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.root = root
        self.channel = str(o.channel)
        self.close_on = tuple(str(t) for t in o.close_on)
        self.close_after_s = int(o.close_after_s)
        self.group_by = tuple(str(g) for g in o.group_by)
        self.tick_s = float(o.tick_s)
        self.journal: Journal | None = None
        self.broker: Transport | None = None
        self.claim_options: ClaimOptions | None = None
        self._folder: Path | None = None
        self._config: Config | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self.book: TariffBook | None = None
        self.rules: Rules | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- wiring --------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, dest: DestinationConfig, config: Config) -> list[ConfigError]:
        """What `wasla check` and the start refuse: a claims channel that is missing or not of kind `claims`;
        a rules file of the destination's own that does not load or does not fit the nomenclatures (the
        shipped ma-tnr is checked by `wasla check` whatever the destinations)."""
        o = options_of(cls, dest.options)
        errors: list[ConfigError] = []
        try:
            channel = config.channel(str(o.channel))
        except KeyError:
            channel = None
            errors.append(ConfigError(f"claims.channel: no channel '{o.channel}' (it carries the claims out)",
                                      file=dest.file, field="claims.channel"))
        if channel is not None and channel.input_kind != "claims":
            errors.append(ConfigError(f"claims.channel: channel '{o.channel}' must have `input: claims: {{}}`",
                                      file=dest.file, field="claims.channel"))
        if str(o.rules) != DEFAULT_RULES:
            try:
                load_checks(config, str(o.rules))
            except ConfigErrors as exc:
                errors += exc.errors
            except ConfigError as exc:
                errors.append(exc)
        return errors

    def attach(self, config: Config, journal: Journal, broker: Transport, *, start: bool = True) -> None:
        """Given the engine's journal, broker and configuration: load the tariff and rules, check the claims
        channel exists, and start the thread that closes quiet claims and re-checks parked ones."""
        errors = self.check_config(config.destinations[self.id], config)
        if errors:
            raise ConfigErrors(errors)
        self.journal, self.broker = journal, broker
        self.claim_options = ClaimOptions(config.fhir_base, str(self.options.provider_inpe), str(self.options.sector),
                                          str(self.options.insurer), group_by=self.group_by)
        self._folder = config.nomenclatures_dir
        self._config = config
        self._load()
        if start:
            self._thread = threading.Thread(target=self._run, name=f"claims-{self.id}", daemon=True)
            self._thread.start()

    def _load(self) -> bool:
        """(Re)load the tariff, act tables and rules; keep the last good ones when a file is wrong."""
        assert self._folder is not None and self._config is not None
        stamp = _stamp(self._folder)
        try:
            book, rules = load_checks(self._config, str(self.options.rules))
        except (ConfigError, ConfigErrors) as exc:
            first = exc.errors[0] if isinstance(exc, ConfigErrors) else exc
            _log.error("claims_rules_reload_failed", destination=self.id, file=first.file, line=first.line,
                       error=first.message)
            if self.book is None:
                raise
            self._stamp = stamp
            return False
        self.book, self.rules, self._stamp = book, rules, stamp
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- the deliver side ------------------------------------------------------------------------
    def deliver(self, message_id: str, body: bytes, journal: OutputLedger,
                headers: dict[str, Any] | None = None) -> str | None:
        assert self.journal is not None, "attach() first"
        headers = headers or {}
        try:
            bundle = orjson.loads(body)
            entries = [e for e in bundle.get("entry", [])
                       if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise PermanentDeliveryError("not a FHIR Bundle: the claims stage takes converted messages") from None
        received = _when(headers.get("received_at"))
        answered = self._answer(message_id, entries)
        if answered is not None:
            return answered
        keys = keys_of(entries, self.group_by)
        if not keys:
            raise PermanentDeliveryError("no visit number (PV1-19), account number (PID-18) or FSE number to file "
                                         "the message's charges under")
        parts = [(f"{e['resource']['resourceType']}/{e['resource'].get('id') or e.get('fullUrl', '')}",
                  orjson.dumps(_without_lineage(e), option=orjson.OPT_SORT_KEYS))
                 for e in entries if e["resource"].get("resourceType") not in SKIPPED]
        mtype = str(headers.get("message_type", ""))
        close = mtype if self.close_on and type_matches(self.close_on, mtype) and mtype else ""
        keys = [self.journal.keys.patient_key(f"claim:{self.id}", k) for k in keys]  # visit numbers are not kept
        row, changed = self.journal.claims.apply(self.id, keys, claim_id(self.id, keys[0]), parts,
                                                 message_id=message_id, received_at=received, close=close)
        if row.closed and (changed or row.status == "closed"):
            self.settle(row.id)
        return f"Claim/{row.id}"

    def _answer(self, message_id: str, entries: list[dict[str, Any]]) -> str | None:
        """A ClaimResponse: its claim is marked accepted or rejected and linked to it."""
        for e in entries:
            r = e["resource"]
            if r.get("resourceType") != "ClaimResponse":
                continue
            target = str((r.get("request") or {}).get("reference", ""))
            cid = target.rsplit("/", 1)[-1] if target.startswith(("Claim/", "urn:uuid:")) else ""
            status = _ANSWERS.get(str(r.get("outcome", "")), "submitted")
            assert self.journal is not None
            if not cid or not self.journal.claims.respond(self.id, cid, status, message_id):
                raise PermanentDeliveryError("the ClaimResponse names no claim this claims stage sent "
                                             "(request.reference)")
            _log.info("claim_answered", destination=self.id, claim=cid, status=status, message_id=message_id)
            return f"Claim/{cid}"
        return None

    # -- deciding ---------------------------------------------------------------------------------
    def settle(self, cid: str) -> ClaimRow:
        """Build and check a closed claim; park it with its reasons, or send it (a new version when its
        content changed since the last one sent). Runs with the claim's row held."""
        assert self.journal is not None and self.broker is not None and self.claim_options is not None
        sent: list[tuple[bytes, str, str]] = []
        book, rules = self.book, self.rules
        assert book is not None and rules is not None
        options = self.claim_options
        journal = self.journal

        def decide(row: ClaimRow, parts: list[dict[str, Any]]) -> Decision | None:
            sent.clear()  # a group commit that failed runs this again alone: only its last run is journaled
            if not row.closed:
                return None
            created = (row.closed_at or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")

            def built(version: int) -> Built:
                return build_claim(parts, options, book, claim=row.id, version=version, created=created)

            current = built(max(row.version, 1))
            cancelled = not current.items and not current.reasons
            if cancelled and not row.version:
                return Decision("empty", reasons=[{"code": "NOTHING_TO_BILL", "where": "item",
                                                   "message": "no charge left to bill once credits are applied",
                                                   "fix": ""}])
            insurer, total, items = current.insurer, str(current.total.quantize(_CENT)), current.items
            if not cancelled:  # a claim sent before and now all credited back is cancelled, not checked again
                reasons = _causes(current.reasons + check(current.bundle, book, rules, sector=options.sector))
                if reasons:
                    return Decision("parked", insurer, total, items, [_reason(r) for r in reasons])
            if row.version and _claim_sha(current, cancelled) == row.content_sha:
                kept = row.status if row.status in ("submitted", "accepted", "rejected", "cancelled") else "submitted"
                return Decision(kept, insurer, total, items)
            version = row.version + 1
            final = current if version == max(row.version, 1) else built(version)
            sha = _claim_sha(final, cancelled)
            body = orjson.dumps(final.bundle)
            mid = new_message_id()
            inbound = Inbound(mid, self.channel, datetime.now(UTC), body, "FHIR^Claim", f"{row.id}/{version}",
                              self.id)
            work = journal.messages.receive_work(inbound, {"claim": row.id, "version": version,
                                                           "destination": self.id})
            sent.append((body, mid, inbound.received_at.isoformat()))
            return Decision("cancelled" if cancelled else "submitted", insurer, total, items, content_sha=sha,
                            message_id=mid, version=version, work=work)

        row = journal.claims.decide(cid, decide)
        for body, mid, at in sent:  # after the commit: a crash here is recovered by intake (journaled, not sent)
            self.broker.publish_in(body, message_id=mid, channel=self.channel, patient_key="",
                                   headers={"received_at": at, "message_type": "FHIR^Claim"})
            _log.info("claim_sent", destination=self.id, claim=cid, version=row.version, message_id=mid,
                      items=row.items)
        if row.status == "parked":
            _log.warning("claim_parked", destination=self.id, claim=cid,
                         reasons=sorted({r["code"] for r in row.reasons}))
        return row

    # -- the background turn ----------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> int:
        """Close quiet claims, carry out operators' requests, re-check parked claims when the rules or the
        tariff changed on disk. Returns the claims looked at."""
        assert self.journal is not None and self._folder is not None
        claims = self.journal.claims
        done = 0
        if self.close_after_s:
            before = (now or datetime.now(UTC)) - timedelta(seconds=self.close_after_s)
            for cid in claims.quiet(self.id, before):
                if claims.close(cid, "quiet"):
                    self.settle(cid)
                    done += 1
        for cid, mid in claims.unsent(self.id, (now or datetime.now(UTC)) - timedelta(seconds=UNSENT_AFTER_S)):
            self._republish(cid, mid)
            done += 1
        for row in claims.pending(self.id):
            if row.requested == "close" and not row.closed:
                claims.close(row.id, "operator")
            self.settle(row.id)
            done += 1
        if _stamp(self._folder) != self._stamp and self._load():
            for row in claims.search(destination=self.id, statuses=("parked",), limit=10_000):
                self.settle(row.id)
                done += 1
            _log.info("claims_rules_reloaded", destination=self.id)
        return done

    def _republish(self, cid: str, mid: str) -> None:
        """Publish again a Claim message the journal holds but nobody took up (its publish was lost after the
        commit). Safe if it was only slow: its destinations' ledger delivers a message once."""
        assert self.journal is not None and self.broker is not None
        row = self.journal.messages.get(mid)
        if row is None:
            return
        self.broker.publish_in(row.raw, message_id=mid, channel=self.channel, patient_key="",
                               headers={"received_at": row.received_at.isoformat(), "message_type": "FHIR^Claim"})
        _log.warning("claim_republished", destination=self.id, claim=cid, message_id=mid)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the next turn tries again; never kills the thread
                _log.error("claims_tick_failed", destination=self.id, **error_fields(exc))


def _without_lineage(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry without `meta` (which message, which mapping): the same resource resent by another message is
    the same part, so a visit sent twice changes no claim."""
    resource = {k: v for k, v in entry["resource"].items() if k != "meta"}
    return {**entry, "resource": resource}


def _claim_sha(built: Built, cancelled: bool) -> str:
    """What decides whether a claim changed: the Claim resource alone (a Patient's new address in the Bundle
    is no reason to send a correction); a claim all credited back goes out `cancelled`."""
    claim = built.bundle["entry"][0]["resource"]
    if cancelled:
        claim["status"] = "cancelled"
    return hashlib.sha256(orjson.dumps(claim)).hexdigest()


_UNPRICED = ("ACT_UNKNOWN", "TARIFF_MISSING")


def _causes(reasons: list[Reason]) -> list[Reason]:
    """Each reason once, causes only: an item the tariff cannot price also lacks its unitPrice and net,
    which the rules report too; the operator needs the cause (the act, the tariff row), once."""
    unpriced = {r.where.split(".")[0] for r in reasons if r.code in _UNPRICED}
    seen: set[tuple[str, str]] = set()
    out = []
    for r in reasons:
        item, _, element = r.where.partition(".")
        if r.code == "REQUIRED_MISSING" and item in unpriced and element in ("unitPrice", "net"):
            continue
        if (r.code, r.where) not in seen:
            seen.add((r.code, r.where))
            out.append(r)
    return out


def _reason(r: Reason) -> dict[str, str]:
    return {"code": r.code, "where": r.where, "message": r.message, "fix": r.fix}


def _when(value: Any) -> datetime:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
