"""Identifier validators: real-looking valid and invalid values; uncertain formats warn, never reject."""

from __future__ import annotations

import pytest

from engine.nomenclature import Registry
from tests.engine.nomenclature.conftest import ice_with_key, nir_with_key


@pytest.mark.parametrize(("system", "value", "level"), [
    ("cin", "AB123456", "ok"),
    ("cin", "k 456789", "ok"),          # normalised: spaces removed, upper-cased
    ("cin", "K45678", "ok"),
    ("cin", "K4567", "warning"),        # old card with dropped zeros: lenient form only
    ("cin", "123456", "warning"),       # no letter prefix: format uncertain (S), so a warning
    ("idcs", "1234567890", "ok"),
    ("idcs", "123456789", "warning"),   # 9 digits: one source says so (U)
    ("cnss", "123456789", "ok"),
    ("cnss", "12AB", "warning"),
    ("inpe", "123456789", "ok"),
    ("inpe", "12345678", "invalid"),    # 9 digits per ANAM's guide (P): a hard rule
    ("inpe", "12345678A", "invalid"),
    ("passport-ma", "AB1234567", "ok"),
    ("passport-ma", "A123456", "warning"),
])
def test_formats(registry: Registry, system: str, value: str, level: str) -> None:
    assert registry.validate_id(system, value).level == level


def test_ice_checksum_iso7064_mod_97_10(registry: Registry) -> None:
    good = ice_with_key("0015611910000")
    assert registry.validate_id("ice", good).ok
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    verdict = registry.validate_id("ice", wrong)
    assert verdict.level == "invalid" and "check digits" in verdict.reason
    assert registry.validate_id("ice", good[:-1]).level == "invalid"  # 14 digits


@pytest.mark.parametrize("body", ["1850275123456", "2991099123456", "18502" + "2A" + "123456"])
def test_nir_key_including_corsica(registry: Registry, body: str) -> None:
    good = nir_with_key(body)
    assert registry.validate_id("ins-nir", good).ok
    assert registry.validate_id("ins-nir", good[:-2] + f"{(int(good[-2:]) + 1) % 97:02d}").level == "invalid"


def test_reasons_never_carry_the_value(registry: Registry) -> None:
    """Verdicts go to events and logs: they say what was expected, never what was sent."""
    for system, value in [("cin", "ZZ1"), ("inpe", "99"), ("ice", "001561191000067")]:
        assert value not in registry.validate_id(system, value).reason


def test_systems_are_project_uris_never_moroccan_oids(registry: Registry) -> None:
    for ids in registry.identifiers.values():
        assert "2.16.504" not in ids.uri and "1.2.504" not in ids.uri
        if ids.key in ("cin", "idcs", "cnss", "inpe", "ice"):
            assert ids.uri == f"https://fhir.wasla.ma/sid/ma/{'cnss-immatriculation' if ids.key == 'cnss' else ids.key}"
    assert registry.identifier_system("https://fhir.wasla.ma/sid/ma/cin").key == "cin"
