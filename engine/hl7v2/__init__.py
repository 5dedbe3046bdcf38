"""HL7 v2 in ER7 (pipe-and-hat) form: a lazy parser and the ACK builder."""

from engine.hl7v2.ack import build_ack
from engine.hl7v2.er7 import Field, Message, Segment, decode, parse

__all__ = ["Field", "Message", "Segment", "build_ack", "decode", "parse"]
