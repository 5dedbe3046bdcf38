"""Coded-value converters: v2 CWE → FHIR CodeableConcept or Coding, free text → CodeableConcept.text
(IG CWE[CodeableConcept], CWE[Coding], ST[CodeableConcept.text]).

Coding systems are named by `engine.mapping.systems` (table 0396); a sender's local code gets the national
coding its local map gives beside it, never instead of it.
"""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes.strings import tx_string
from engine.mapping.systems import coding_system


def _triplet(f: Field, ctx: Context, code: int, display: int, system: int, version: int) -> dict[str, str] | None:
    value = f.component(code)
    if not value:
        return None
    out: dict[str, str] = {}
    uri = coding_system(ctx, f.component(system))
    if uri:
        out["system"] = uri
    if f.component(version):
        out["version"] = f.component(version)
    out["code"] = value
    if f.component(display):
        out["display"] = f.component(display)
    return out


def cwe_codeable_concept(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG CWE[CodeableConcept]: each triplet (1-3, 4-6, 10-12) a coding; CWE.9, else a code-less CWE.2, the text."""
    codings = [c for c in (_triplet(f, ctx, 1, 2, 3, 7), _triplet(f, ctx, 4, 5, 6, 8),
                           _triplet(f, ctx, 10, 11, 12, 13)) if c]
    if codings and opts.get("local_map") and ctx.registry is not None:
        _add_national(codings, ctx)
    if codings and opts.get("codeset") and ctx.registry is not None:
        _add_equivalents(codings, ctx, opts["codeset"])
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    text = f.component(9) or ("" if codings else f.component(2) or f.component(5))
    if text:
        out["text"] = text
    return out or None


def _add_national(codings: list[dict[str, str]], ctx: Context) -> None:
    """Beside a sender's local code, the national coding its map gives (never instead of it)."""
    msg = ctx.msg
    lm = ctx.registry.local_map(msg.sending_facility, msg.sending_application)  # type: ignore[union-attr]  # caller checked
    if lm is None:
        return
    target = lm.meta.get("target")
    if target and any(c.get("system") == target for c in codings):
        return  # the sender already coded it nationally
    for coding in list(codings):
        if coding.get("system", lm.source_system) != lm.source_system:  # no CWE.3: the sender's own code
            continue
        added = lm.national(coding["code"])
        if added is None:
            ctx.warn("LOCAL_CODE_UNMAPPED", ctx.rule, ctx.field_spec, f"{lm.name}: {coding['code']}",
                     code_map=lm.name, local_code=coding["code"])
            continue
        codings.extend(c for c in added if c not in codings)


def _add_equivalents(codings: list[dict[str, str]], ctx: Context, name: str) -> None:
    """Beside a sender's code of a national code set (the PNI vaccine PENTA), the equivalents its row gives
    (CVX 102, ATC J07CA11), never instead. The set's `_meta.yaml` says which columns hold equivalents
    (`equivalents: {cvx: http://hl7.org/fhir/sid/cvx}`, display in `<column>_display`) and the CWE.3 names
    senders give it (`v2_names: [PNI]`). Only this way: a CVX code does not say which PNI dose it was."""
    cs = ctx.registry.codeset(name)  # type: ignore[union-attr]  # caller checked
    meta = cs.meta
    ours = {cs.url} | {coding_system(ctx, n) for n in meta.get("v2_names") or ()}
    coding = next((c for c in codings if c.get("system") in ours), None)
    if coding is None:
        return
    concept = cs.lookup(coding["code"])
    if concept is None:  # the set's name and the code (a vaccine's, never a patient's): `unmapped_codes: park` holds it
        ctx.warn("CODE_UNMAPPED", ctx.rule, ctx.field_spec, f"not in {name}", code_map=name, local_code=coding["code"])
        return
    coding["system"], coding["code"] = cs.url, concept.code
    coding.setdefault("display", concept.display)
    for column, uri in (meta.get("equivalents") or {}).items():
        code = concept.properties.get(column)
        if code and not any(c.get("system") == uri for c in codings):
            added = {"system": uri, "code": code}
            if display := concept.properties.get(f"{column}_display"):
                added["display"] = display
            codings.append(added)


def st_codeable_concept(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """A free-text coded element (ST where FHIR wants a CodeableConcept): text only, never a made-up code."""
    text = tx_string(f, ctx, opts)
    return {"text": text} if text else None


def cwe_coding(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    return _triplet(f, ctx, 1, 2, 3, 7)
