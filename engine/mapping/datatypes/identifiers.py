"""Identifier converters: v2 CX, EI and CWE → FHIR Identifier (IG CX[Identifier], EI[Identifier], CWE[Identifier]).

Systems are named by `engine.mapping.systems`: a known national identifier by the registry, which also
checks its value; else the assigning authority, else the sender's namespace.
"""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes._common import V2_0203
from engine.mapping.systems import coding_system, hd_system, identifier_system, slug


def cx_identifier(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    value = f.component(1)
    if not value:
        return None
    out: dict[str, Any] = {}
    id_type = f.component(5) or opts.get("type", "")
    if not id_type and ctx.policy.get("default_identifier_type"):  # one hospital's IPP is one system
        id_type = ctx.policy["default_identifier_type"]
        ctx.warn("IDENTIFIER_TYPE_DEFAULTED", ctx.rule, ctx.field_spec, f"no CX-5: the channel's {id_type}")
    if id_type:
        out["type"] = {"coding": [{"system": V2_0203, "code": id_type}]}
    known = ctx.registry.for_cx(f.component(4, 1), f.component(5)) if ctx.registry is not None else None
    if known is not None:
        out["system"] = known.uri
        verdict = known.validate(value)
        if not verdict.ok:  # the value is kept: a suspicious CIN is still the patient's, and it is flagged
            code = "IDENTIFIER_INVALID" if verdict.level == "invalid" else "IDENTIFIER_SUSPECT"
            ctx.warn(code, ctx.rule, ctx.field_spec, f"{known.key}: {verdict.reason}", identifier_system=known.key)
            if ctx.policy.get("invalid_identifiers") == "tag":  # the receiver sees it on the identifier itself
                out["extension"] = [{"url": f"{ctx.base}/StructureDefinition/identifier-check",
                                     "valueCode": verdict.level}]
    else:
        system = identifier_system(f, ctx, opts)
        if system:
            out["system"] = system
    out["value"] = value
    return out


def ei_identifier(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG EI[Identifier]: EI.1 value, EI.2-4 the assigner's namespace as system; `type` (PLAC, FILL …) from options.

    `in_component: N` reads an EI held in the subcomponents of component N (EIP, SPM-2).
    """
    c = int(opts.get("in_component", 0))
    part = (lambda i: f.component(c, i)) if c else (lambda i: f.component(i))
    value = part(1)
    if not value:
        return None
    out: dict[str, Any] = {}
    if opts.get("type"):
        out["type"] = {"coding": [{"system": V2_0203, "code": opts["type"]}]}
    system = hd_system(part(2), part(3), part(4))
    authority = part(2) or part(3) or ctx.msg.sending_facility
    if system is None and authority:
        system = f"{ctx.base}/sid/{slug(authority)}/{slug(opts.get('type') or 'id')}"
    if system:
        out["system"] = system
    out["value"] = value
    return out


def cwe_identifier(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG CWE[Identifier]: CWE.1 value, CWE.3 system; `in_component: 4` the alternate (CWE.4 value, CWE.6 system).

    The system is CWE.3 (CWE.6) read as a coding-system name, as for a CWE's codings; none when none is named.
    """
    c = int(opts.get("in_component", 1))
    value = f.component(c)
    if not value:
        return None
    system = coding_system(ctx, f.component(c + 2))
    return {"system": system, "value": value} if system else {"value": value}
