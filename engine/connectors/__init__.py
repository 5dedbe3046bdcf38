"""Connectors: what inputs and outputs are given by the engine, and what they declare to it."""
