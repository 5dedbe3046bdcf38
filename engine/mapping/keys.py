"""Business keys: which v2 fields identify a resource, and the text of a key part for one message."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import MappingError
from engine.hl7v2.reference import field_info
from engine.mapping.context import Context
from engine.mapping.paths import V2Path, compile_path
from engine.mapping.systems import identifier_system

__all__ = ["KeyAlt", "KeyPart", "key_alt", "key_part", "sender_namespace"]


@dataclass(frozen=True, slots=True)
class KeyAlt:
    """One alternative of a key part, and where its assigning authority sits.

    An order number (EI.1) or a visit number (CX.1) means nothing without its namespace: two labs
    both number orders from 1000. `namespace` holds the paths of EI.2/EI.3 (or CX.4.1/CX.4.2);
    when they are empty the message's sender (MSH-3^MSH-4) scopes the value instead.
    """

    path: V2Path
    namespace: tuple[V2Path, ...] = ()

    @property
    def spec(self) -> str:
        return self.path.spec


@dataclass(frozen=True, slots=True)
class KeyPart:
    """Alternatives for one part of a business key: the first valued one is the part.
    An optional part (written `OBX-4?`) may be empty; a required empty part makes the key missing."""

    alts: tuple[KeyAlt, ...]
    optional: bool = False

    @property
    def spec(self) -> str:
        return "|".join(a.spec for a in self.alts) + ("?" if self.optional else "")


# Fields whose first component is a number issued by an authority named in later components.
_NAMESPACED = {"EI": ((2,), (3,)), "CX": ((4, 1), (4, 2)), "EIP": None}


def key_alt(path: V2Path) -> KeyAlt:
    """Compile-time: where the namespace of this key path's value sits (hl7apy's datatype of the field)."""
    info = field_info(path.segment, path.field)
    datatype = info[0] if info else ""
    rep = "*" if path.rep is None else str(path.rep)
    head = f"{path.segment}-{path.field}[{rep}]"
    if datatype in ("EI", "CX") and path.component == 1 and path.subcomponent in (None, 1):
        where = _NAMESPACED[datatype] or ()
        return KeyAlt(path, tuple(compile_path(f"{head}." + ".".join(map(str, w))) for w in where))
    if datatype == "EIP" and path.component in (1, 2) and path.subcomponent == 1:  # EIP.n is an EI
        c = path.component
        return KeyAlt(path, (compile_path(f"{head}.{c}.2"), compile_path(f"{head}.{c}.3")))
    return KeyAlt(path)


def sender_namespace(ctx: Context) -> str:
    """The sending application and facility (MSH-3^MSH-4): who issued an unscoped number."""
    known = ctx.memo.get("sender_namespace")
    if known is not None:
        return known
    app, facility = ctx.msg.sending_application, ctx.msg.sending_facility
    if app == '""':
        app = ""
    if facility == '""':
        facility = ""
    known = ctx.memo["sender_namespace"] = f"{app}^{facility}" if (app or facility) else ""
    return known


def key_part(part: KeyPart | V2Path, ctx: Context) -> str:
    """One business-key part: the first valued alternative; a whole CX field counts as `system|value`,
    an EI or CX number as `namespace|value` (its assigning authority, else the message's sender)."""
    alts = (KeyAlt(part),) if isinstance(part, V2Path) else part.alts
    for alt in alts:
        path = alt.path
        if path.component is None:
            fields = path.fields(ctx)
            if not fields or not fields[0].component(1) or fields[0].component(1) == '""':
                continue
            f = fields[0]
            known = ctx.cx_keys.get(id(f))  # PID-3 keys the patient and everything made for them
            if known is None:
                system = identifier_system(f, ctx, {})
                if not system:
                    raise MappingError(f"{path.spec} has no namespace: no assigning authority (CX-4), no channel "
                                       "sender and no MSH-3/MSH-4; the identifier would merge patients of "
                                       "every sender", field=path.spec)
                known = ctx.cx_keys[id(f)] = f"{system}|{f.component(1)}"
            return known
        text = path.text(ctx)
        if not text:
            continue
        if not alt.namespace:
            return text
        # the authority, else the sender: MSH-3^MSH-4, else the channel's `pipeline.sender` (as for a CX)
        ns = ("^".join(p.text(ctx) for p in alt.namespace).rstrip("^") or sender_namespace(ctx)
              or ctx.policy.get("sender", ""))
        if not ns:
            raise MappingError(f"{path.spec} has no namespace: no assigning authority, no MSH-3/MSH-4 and no "
                               "channel sender; "
                               "the number would be shared with every other sender", field=path.spec)
        return f"{ns}|{text}"
    return ""
