"""Nomenclatures hot-reload, and parked messages come back by themselves: when `nomenclatures/` changes
on disk the registry is reloaded (and the mappings recompiled if a vocabulary map changed), then every
message parked on a local code that is now mapped goes back to the transform.

Runs beside the transform role. Several workers may notice the same change: the journal lets only
one of them release each message, so a message is re-run once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import structlog

from engine.errors import BrokerError, ConfigError, ConfigErrors, StoreError
from engine.logs import error_fields
from engine.mapping import Converter
from engine.nomenclature import load_registry
from engine.nomenclature.codesets import CodeSet
from engine.nomenclature.localmaps import LocalMap
from engine.nomenclature.vocab import VocabMap, load_vocab
from engine.store import Journal
from engine.transport import Transport

__all__ = ["NomenclatureWatcher", "folder_stamp"]

_log = structlog.get_logger("wasla.nomenclature")


def folder_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every file under `folder`, sorted: equal stamps, nothing changed on disk."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _vocab_part(stamp: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, int, int], ...]:
    return tuple(s for s in stamp if "/hl7v2-fhir/" in s[0])


class NomenclatureWatcher:
    """Watches `nomenclatures/` for changes: reloads the registry (and recompiles the mappings when a
    vocabulary map changed), keeping the last good state when a file is wrong, then publishes each
    parked message whose code is now mapped. The journal lets one worker release each message once.
    """

    def __init__(self, folder: Path, base: str, converter: Converter, journal: Journal, broker: Transport,
                 interval_s: float = 1.0) -> None:
        self.folder = folder
        self.base = base
        self.converter = converter
        self.journal = journal
        self.broker = broker
        self.interval_s = interval_s
        self._stamp = folder_stamp(folder)

    def check(self) -> int:
        """Reload if a file changed, then release what is now mapped. Returns the messages released."""
        stamp = folder_stamp(self.folder)
        if stamp != self._stamp:
            vocab_changed = _vocab_part(stamp) != _vocab_part(self._stamp)
            self._stamp = stamp
            try:
                registry = load_registry(self.folder, self.base)
                recompiled = self.converter.recompile() if vocab_changed else []
            except ConfigErrors as exc:  # keep serving with the last good state; say where the file is wrong
                first = exc.errors[0]
                _log.error("nomenclature_reload_failed", file=first.file, line=first.line, error=first.message,
                           errors=len(exc.errors))
                return 0
            except ConfigError as exc:
                _log.error("nomenclature_reload_failed", file=exc.file, line=exc.line, error=exc.message)
                return 0
            self.converter.registry = registry
            _log.info("nomenclature_reloaded", local_maps=len(registry.local_maps), mappings_recompiled=recompiled)
        return self.release()

    def release(self) -> int:
        registry = self.converter.registry
        count = 0
        for code_map in sorted({m for m, *_ in self.journal.parked.codes()}):
            lm = registry.local_maps.get(code_map)
            cs = registry.codesets.get(code_map)
            if lm is not None:
                is_mapped: Callable[[str], bool] = partial(_in_local_map, lm)
            elif cs is not None:  # a national code set a mapping's `codeset:` option reads (the PNI vaccines)
                is_mapped = partial(_in_codeset, cs)
            else:  # an HL7 table's map (nomenclatures/hl7v2-fhir/<name>.csv), as the mappings read it now
                try:
                    vm = load_vocab(self.converter.vocab_dir, code_map)
                except (ConfigError, ConfigErrors, OSError):
                    continue
                is_mapped = partial(_in_vocab, vm)
            for row in self.journal.parked.release(code_map, is_mapped):
                self.broker.publish_in(row.raw, message_id=row.id, channel=row.channel, patient_key=row.patient_key,
                                       headers={"received_at": row.received_at.isoformat(),
                                                "message_type": row.message_type})
                count += 1
        if count:
            _log.info("parked_released", messages=count)
        return count

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except (StoreError, BrokerError) as exc:
                _log.error("parked_release_failed", **error_fields(exc))  # the next turn tries again
            stop.wait(self.interval_s)


def _in_local_map(lm: LocalMap, code: str) -> bool:
    """Whether the local map gives `code` a national code."""
    return lm.national(code) is not None


def _in_vocab(vm: VocabMap, code: str) -> bool:
    """Whether the HL7 table's map knows `code`."""
    return bool(vm.lookup(code))


def _in_codeset(cs: CodeSet, code: str) -> bool:
    """Whether the national code set has `code`."""
    return cs.lookup(code) is not None
