"""What the engine last wrote of a resource for a patient: the memory behind a mapping's `keep_earlier`.

A FHIR PUT replaces the whole resource, so an element a message leaves unstated (an A08 without
PV1-2 says nothing of the visit's state) would overwrite what an earlier message stated. The
transform asks this for the resource as it last left the engine, only when a mapping needs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from engine.store.journal import Journal

__all__ = ["History"]

Lookup = Callable[[str], dict[str, Any] | None]


class History:
    """Owns the recent conversions of this transform process, newest per patient, over the journal.

    Messages of one patient are transformed in order by one consumer, so what the journal holds for
    them, received before this message, is what this engine wrote before. Two things are not in the
    journal yet and are looked at first: the conversions of the batch being handled (its journal
    write comes after the whole batch), and, on the embedded broker where journal writes are lazy,
    the last conversions this process made (`remember` keeps up to that many patients). On RabbitMQ
    a shard may move to another process, so only the current batch is remembered there.
    """

    def __init__(self, journal: Journal, remember: int = 0) -> None:
        self.journal = journal
        self.remember = remember
        self._recent: OrderedDict[str, list[bytes]] = OrderedDict()

    def start_batch(self) -> None:
        if not self.remember:
            self._recent.clear()

    def wrote(self, patient_key: str, bundle: bytes) -> None:
        if not patient_key:
            return
        self._recent.setdefault(patient_key, []).insert(0, bundle)
        self._recent.move_to_end(patient_key)
        del self._recent[patient_key][4:]
        while self.remember and len(self._recent) > self.remember:
            self._recent.popitem(last=False)

    def lookup(self, patient_key: str, message_id: str, received_at: datetime) -> Lookup | None:
        """A lookup `"Type/id"` → the resource as this engine last wrote it for the patient, read on first use."""
        if not patient_key:
            return None
        bundles: list[dict[str, Any]] | None = None

        def find(ref: str) -> dict[str, Any] | None:
            nonlocal bundles
            if bundles is None:
                raw = [*self._recent.get(patient_key, []),
                       *self.journal.outputs.earlier_fhir(patient_key, received_at, message_id)]
                bundles = [orjson.loads(b) for b in raw]
            for bundle in bundles:
                for entry in bundle.get("entry", []):
                    if entry.get("request", {}).get("url") == ref:
                        return entry.get("resource")
            return None

        return find
