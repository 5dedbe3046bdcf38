"""Wasla engine: intake, transform, deliver, and the journal that makes them honest."""

__version__ = "0.1.0"
