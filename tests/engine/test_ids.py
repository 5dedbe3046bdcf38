"""Resource ids: the hand-rolled UUIDv5 must be exactly the standard's, or ids would change on upgrade."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from engine.ids import namespace, resource_id, uuid5


@given(st.text(max_size=300))
def test_uuid5_matches_the_standard_library(name: str) -> None:
    ns = namespace("https://fhir.wasla.ma")
    assert uuid5(ns, name) == str(uuid.uuid5(ns, name))


def test_resource_id_depends_on_type_and_every_key_part() -> None:
    ns = namespace("https://fhir.wasla.ma")
    a = resource_id(ns, "Patient", "urn:oid:1.2|123")
    assert a == str(uuid.uuid5(ns, "Patient\x1furn:oid:1.2|123"))
    assert len({a, resource_id(ns, "Encounter", "urn:oid:1.2|123"), resource_id(ns, "Patient", "urn:oid:1.2|124"),
                resource_id(ns, "Patient", "urn:oid:1.2", "123")}) == 4
