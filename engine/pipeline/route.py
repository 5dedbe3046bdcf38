"""Routing: which destinations take a converted message, and why the others do not.

A destination takes a message of a channel that lists it in `output:` (or that it names in
`route.channels`) when the message's type, sending facility and condition match its `route:`.
Channel and type are also in the `wasla.out` routing key, so the broker already keeps most
messages away from a destination's queues; facility and condition need the message itself and
are decided here, once, in the transform. A message that no destination takes is journaled as
`filtered`, with each destination's reason. A message no mapping converted (a channel's
`unmapped_types: pass`) goes only to the destinations whose output forwards HL7 v2
(`Capabilities.forwards_v2`): `Router.forwards_v2`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.config import Config, DestinationConfig
from engine.connectors.registry import connectors
from engine.errors import ConfigError
from engine.hl7v2.er7 import Message
from engine.mapping.conditions import ConditionError, compile_condition
from engine.mapping.context import Context

__all__ = ["Router", "check_conditions", "type_matches"]


def type_matches(patterns: tuple[str, ...], message_type: str) -> bool:
    """`ADT^A08` matches `ADT^A08` and `ADT^*`; no patterns match every type."""
    if not patterns:
        return True
    mtype, _, event = message_type.partition("^")
    return any(p == message_type or (p.endswith("^*") and p[:-2] == mtype) for p in patterns) or (
        not event and mtype in patterns)


def check_conditions(config: Config) -> list[ConfigError]:
    """Every destination whose `route.when` does not compile, at its file:line:col (wasla check, wasla run)."""
    errors: list[ConfigError] = []
    for d in config.destinations.values():
        if d.route.when is None:
            continue
        try:
            compile_condition(dict(d.route.when), ["route", "when"])
        except ConditionError as exc:
            errors.append(d.doc.error(str(exc), exc.where) if d.doc is not None
                          else ConfigError(str(exc), file=d.file, field="route.when"))
    return errors


@dataclass(frozen=True)
class _Target:
    destination: DestinationConfig
    when: Callable[[Context], bool] | None


class Router:
    """Which destinations take a converted message of a channel, and each other destination's reason.
    Owns every channel's targets with their `route.when` conditions, compiled once at start.
    """

    def __init__(self, config: Config, context: Callable[[Message], Context]) -> None:
        self._context = context
        outputs = connectors("outputs")
        self._v2 = frozenset(d.id for d in config.destinations.values()
                             if getattr(getattr(outputs.get(d.kind), "capabilities", None), "forwards_v2", False))
        self._targets: dict[str, list[_Target]] = {}
        for ch in config.channels:
            chosen = [d for d in config.destinations.values() if d.id in ch.outputs or ch.id in d.route.channels]
            self._targets[ch.id] = [
                _Target(d, compile_condition(dict(d.route.when), ["route", "when"]) if d.route.when else None)
                for d in chosen]

    def destinations(self, channel: str) -> list[DestinationConfig]:
        """Every destination a message of `channel` may reach (the broker's bindings)."""
        return [t.destination for t in self._targets.get(channel, [])]

    def forwards_v2(self, destination: str) -> bool:
        """Whether the destination's output sends the original HL7 v2 (it can take an unconverted message)."""
        return destination in self._v2

    def route(self, channel: str, message_type: str, facility: str,
              msg: Message | None) -> tuple[tuple[str, ...], dict[str, str]]:
        """(destinations that take the message, {destination: why not} for the others)."""
        taken: list[str] = []
        refused: dict[str, str] = {}
        ctx: Context | None = None
        for t in self._targets.get(channel, []):
            r = t.destination.route
            if not type_matches(r.types, message_type):
                refused[t.destination.id] = f"type {message_type} not in {', '.join(r.types)}"
            elif r.facilities and facility not in r.facilities:
                refused[t.destination.id] = "sending facility not in route.facilities"
            elif t.when is not None and msg is None:
                refused[t.destination.id] = "route.when needs an HL7 v2 message"
            elif t.when is not None:
                ctx = ctx or self._context(msg)  # type: ignore[arg-type]  # msg is set: the branch above took None
                if not t.when(ctx):
                    refused[t.destination.id] = "route.when is false"
                else:
                    taken.append(t.destination.id)
            else:
                taken.append(t.destination.id)
        return tuple(taken), refused
