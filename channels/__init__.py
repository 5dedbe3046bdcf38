"""Inbound and outbound connectors. Each module is one protocol; the engine finds them by entry point."""
