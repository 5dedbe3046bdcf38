"""Wasla's errors, as one small tree.

    WaslaError
    ├── ConfigError              a configuration or mapping file is wrong (file, line, column, field)
    │   └── ConfigErrors         several ConfigErrors collected before stopping
    ├── ParseError               an inbound message cannot be read (segment, field, what was expected)
    ├── MappingError             a readable message cannot be converted (rule, field, reason)
    ├── StoreError               the journal cannot be reached or migrated
    ├── BrokerError              the message broker refused or lost a publish
    └── DeliveryError
        ├── TransientDeliveryError   retry later: the destination may come back
        └── PermanentDeliveryError   dead letter: retrying cannot help

Errors carry their context as attributes so the CLI, the ACK builder and the
journal can each render them without parsing a string. None of them holds PHI
in its message: they name fields, never values.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BrokerError",
    "ConfigError",
    "ConfigErrors",
    "DeliveryError",
    "MappingError",
    "ParseError",
    "PermanentDeliveryError",
    "StoreError",
    "TransientDeliveryError",
    "WaslaError",
]


class WaslaError(Exception):
    """Base of every error Wasla raises on purpose."""


@dataclass(frozen=True)
class Location:
    """Where in a file something is: file, and line and column when known (1-based); prints as
    `file:line:col`. Immutable.
    """

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


class ConfigError(WaslaError):
    """A configuration, schema or mapping file is wrong; printed as `file:line:col: field: message`."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "<config>",
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        super().__init__(str(self))

    @property
    def location(self) -> Location:
        return Location(self.file, self.line, self.column)

    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.line or 0, self.column or 0)

    def __str__(self) -> str:
        where = str(self.location)
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class ConfigErrors(ConfigError):
    """Every problem found in one pass, sorted by file and line (Vector's habit: report all, then stop)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = sorted(errors, key=ConfigError.sort_key)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, column=first.column, field=first.field)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)


class ParseError(WaslaError):
    """An inbound message cannot be read.

    `segment`, `sequence` (segment position, 1-based), `field` and `code` (HL7 table 0357)
    let the ACK builder write a precise ERR segment.
    """

    def __init__(
        self,
        message: str,
        *,
        segment: str | None = None,
        sequence: int | None = None,
        field: int | None = None,
        code: str = "100",
    ) -> None:
        self.message = message
        self.segment = segment
        self.sequence = sequence
        self.field = field
        self.code = code
        super().__init__(message)


class MappingError(WaslaError):
    """A readable message cannot be converted by its mapping."""

    def __init__(self, message: str, *, rule: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.rule = rule
        self.field = field
        prefix = " ".join(p for p in (f"rule {rule}" if rule else "", f"at {field}" if field else "") if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class StoreError(WaslaError):
    """The journal cannot be opened, migrated or written.

    `transient` is False when the database answered and refused this very write (a constraint, a
    value it cannot store): the same write tried again would fail again, so a caller holding a
    batch isolates the message instead of waiting for the journal to come back.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class BrokerError(WaslaError):
    """The broker is unreachable or did not confirm a publish."""


class DeliveryError(WaslaError):
    """A destination did not take a message; `response` keeps what it answered (an OperationOutcome)."""

    def __init__(self, message: str, *, response: str = "") -> None:
        super().__init__(message)
        self.response = response


class TransientDeliveryError(DeliveryError):
    """Retry later: timeouts, 5xx, 429, a full disk that may be cleaned."""


class PermanentDeliveryError(DeliveryError):
    """Dead letter: the destination rejected the content itself."""
