"""engine/claims/tariff.py: act tables, NGAP written forms, key-letter values per sector and date, load errors.

Every amount here comes from the TEST rows of conftest.py, not from a tariff."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from engine.claims import Priced, Reason, TariffBook
from engine.errors import ConfigError
from engine.nomenclature import load_registry
from tests.engine.claims.conftest import BASE, TARIFFS, TEST
from tests.support import ROOT

NGAP = f"{BASE}/CodeSystem/ma-ngap"
NABM = f"{BASE}/CodeSystem/ma-nabm"
ON = date(2026, 3, 1)


def _priced(book: TariffBook, system: str, code: str, sector: str = "public", on: date = ON) -> Priced:
    got = book.price(system, code, sector=sector, on=on)
    assert isinstance(got, Priced), got
    return got


def _reason(book: TariffBook, system: str, code: str, sector: str = "public", on: date = ON) -> Reason:
    got = book.price(system, code, sector=sector, on=on)
    assert isinstance(got, Reason), got
    return got


class TestActTable:
    def test_a_code_of_the_table_is_priced_by_its_letter_and_coefficient(self, book: TariffBook) -> None:
        """TEST-ECHO is KE × 1,5 (comma decimal) at 10 → 15.00, with the table's display."""
        p = _priced(book, NGAP, "TEST-ECHO")
        assert (p.key_letter, p.coefficient, p.unit_value, p.unit_price) == ("KE", Decimal("1.5"), Decimal(10),
                                                                              Decimal("15.00"))
        assert p.display == "TEST act: echography" and p.system == NGAP and p.code == "TEST-ECHO"

    def test_the_system_is_found_by_name_and_without_a_base(self, nomenclatures: Path) -> None:
        """A book loaded without a base matches the URL by its path; the set's name works too."""
        book = TariffBook.load(nomenclatures)
        assert _priced(book, "https://other.example/fhir/CodeSystem/ma-nabm", "TEST-GLY").unit_price == Decimal("27.00")
        assert _priced(book, "ma-nabm", "TEST-GLY").unit_price == Decimal("27.00")

    def test_an_unknown_system_is_act_unknown(self, book: TariffBook) -> None:
        """A coding system that is no act table cannot be priced."""
        assert _reason(book, "http://loinc.org", "C").code == "ACT_UNKNOWN"


class TestWrittenForm:
    @pytest.mark.parametrize(("code", "letter", "coefficient", "price"), [
        ("C", "C", "1", "60.00"),
        ("Cs", "Cs", "1", "75.00"),
        ("cs", "Cs", "1", "75.00"),
        ("Z 15", "Z", "15", "135.00"),
        ("Z15", "Z", "15", "135.00"),
        ("KE 1,5", "KE", "1.5", "15.00"),
        ("KE1.5", "KE", "1.5", "15.00"),
        (" C2 ", "C", "2", "120.00"),
    ])
    def test_key_letter_and_optional_coefficient(self, book: TariffBook, code: str, letter: str, coefficient: str,
                                                  price: str) -> None:
        """'key letter + optional coefficient' (space, comma or dot decimals; case-insensitive letter) is priced."""
        p = _priced(book, NGAP, code)
        assert (p.key_letter, p.coefficient, p.unit_price) == (letter, Decimal(coefficient), Decimal(price))

    def test_nabm_letters_under_nabm(self, book: TariffBook) -> None:
        """B120 under NABM: 120 × 0,90 = 108.00; K50 under NGAP in the private sector: 50 × 13.5 = 675.00."""
        assert _priced(book, NABM, "B120").unit_price == Decimal("108.00")
        assert _priced(book, NGAP, "K50", sector="private").unit_price == Decimal("675.00")

    def test_rounding_is_half_up_to_the_centime(self, book: TariffBook) -> None:
        """0.125 → 0.13 and 3 × 0.125 = 0.375 → 0.38 (banker's rounding would give 0.12 and 0.38)."""
        assert _priced(book, NGAP, "D").unit_price == Decimal("0.13")
        assert _priced(book, NGAP, "D3").unit_price == Decimal("0.38")

    @pytest.mark.parametrize("code", ["XYZ-999", "Q12", "C-2", "C 0", "12", ""])
    def test_an_unknown_act_or_letter(self, book: TariffBook, code: str) -> None:
        """Neither a row of the table nor a known key letter with a positive coefficient: ACT_UNKNOWN, fix codes.csv."""
        r = _reason(book, NGAP, code)
        assert (r.code, r.fix) == ("ACT_UNKNOWN", "nomenclatures/ma-ngap/codes.csv")

    @pytest.mark.parametrize(("system", "code"), [(NGAP, "B120"), (NGAP, "P"), (NABM, "C"), (NABM, "K50")])
    def test_a_letter_of_the_other_nomenclature(self, book: TariffBook, system: str, code: str) -> None:
        """NABM accepts B and P only, NGAP the other letters."""
        r = _reason(book, system, code)
        assert r.code == "ACT_UNKNOWN" and "letter" in r.message


class TestValidity:
    def test_missing_for_the_sector(self, book: TariffBook) -> None:
        """K has a private value only: in the public sector it is TARIFF_MISSING, naming tariffs.csv."""
        r = _reason(book, NGAP, "K50", sector="public")
        assert (r.code, r.fix) == ("TARIFF_MISSING", "nomenclatures/ma-tnr/tariffs.csv")
        assert "K" in r.message and "public" in r.message

    @pytest.mark.parametrize(("on", "value"), [
        (date(2019, 12, 31), None), (date(2020, 1, 1), "50.00"), (date(2025, 12, 31), "50.00"),
        (date(2026, 1, 1), "60"), (date(2099, 1, 1), "60"),
    ])
    def test_date_edges(self, book: TariffBook, on: date, value: str | None) -> None:
        """valid_from and valid_until are both included; an empty valid_until runs on; before the first, missing."""
        got = book.price(NGAP, "C", sector="public", on=on)
        if value is None:
            assert isinstance(got, Reason) and got.code == "TARIFF_MISSING"
        else:
            assert isinstance(got, Priced) and got.unit_value == Decimal(value)

    def test_an_unknown_sector_is_a_programming_error(self, book: TariffBook) -> None:
        """The sector is a destination option: anything but public or private raises."""
        with pytest.raises(ValueError, match="sector"):
            book.price(NGAP, "C", sector="privé", on=ON)


class TestLoad:
    def _load_with(self, nomenclatures: Path, rows: str) -> ConfigError:
        (nomenclatures / "ma-tnr" / "tariffs.csv").write_text(TARIFFS + rows, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            TariffBook.load(nomenclatures)
        return err.value

    def test_overlapping_rows_are_refused_at_file_and_line(self, nomenclatures: Path) -> None:
        """A third C/public row inside the first one's period: the error names tariffs.csv:11 and line 2."""
        e = self._load_with(nomenclatures, f"C,public,55,2025-06-01,2025-06-30,{TEST},{TEST},indicative\n")
        assert e.file.endswith("ma-tnr/tariffs.csv") and e.line == 11
        assert "overlaps the row at line 2" in str(e) and ":11:" in str(e)

    def test_an_open_row_overlaps_a_later_one(self, nomenclatures: Path) -> None:
        """B/public runs on (no valid_until): a later B/public row overlaps it."""
        e = self._load_with(nomenclatures, f"B,public,1,2030-01-01,,{TEST},{TEST},indicative\n")
        assert e.line == 11 and "line 4" in str(e)

    def test_adjacent_periods_and_other_sectors_do_not_overlap(self, nomenclatures: Path) -> None:
        """C/public ends 2025-12-31 and the next starts 2026-01-01; C/private is another series."""
        (nomenclatures / "ma-tnr" / "tariffs.csv").write_text(
            TARIFFS + f"C,private,80,2020-01-01,,{TEST},{TEST},indicative\n", encoding="utf-8")
        assert _priced(TariffBook.load(nomenclatures), "ma-ngap", "C", sector="private").unit_price == Decimal("80.00")

    @pytest.mark.parametrize(("row", "what"), [
        (f"Q,public,1,2020-01-01,,{TEST},{TEST},indicative", "key_letter"),
        (f"C,privé,1,2020-01-01,,{TEST},{TEST},indicative", "sector"),
        (f"Cs,private,abc,2020-01-01,,{TEST},{TEST},indicative", "value_mad"),
        (f"Cs,private,-1,2020-01-01,,{TEST},{TEST},indicative", "value_mad"),
        (f"Cs,private,1,01/01/2020,,{TEST},{TEST},indicative", "valid_from"),
        (f"Cs,private,1,2020-01-01,2019-01-01,{TEST},{TEST},indicative", "valid_until"),
        (f"Cs,private,1,2020-01-01,,{TEST},{TEST},official", "status"),
        (f"Cs,private,1,2020-01-01,,{TEST},,indicative", "source"),
        ("Cs,private,1", "columns"),
    ])
    def test_a_bad_row_names_its_line_and_column(self, nomenclatures: Path, row: str, what: str) -> None:
        """Each kind of bad row is a ConfigError at tariffs.csv:11 naming what is wrong."""
        e = self._load_with(nomenclatures, row + "\n")
        assert e.line == 11 and what in str(e)

    def test_every_bad_row_is_reported(self, nomenclatures: Path) -> None:
        """Two bad rows: both are listed, sorted by line."""
        e = self._load_with(nomenclatures, f"Q,public,1,2020-01-01,,{TEST},{TEST},indicative\n"
                                           f"C,private,x,2020-01-01,,{TEST},{TEST},indicative\n")
        assert [line.split(": ")[0].rsplit(":", 1)[1] for line in str(e).splitlines()] == ["11", "12"]

    def test_an_act_row_with_a_letter_of_the_other_nomenclature(self, nomenclatures: Path) -> None:
        """ma-ngap/codes.csv may not price an act with B (a NABM letter), nor with a zero coefficient."""
        (nomenclatures / "ma-ngap" / "codes.csv").write_text(
            "code,display,key_letter,coefficient\nX1,TEST,B,1\nX2,TEST,C,0\n", encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            TariffBook.load(nomenclatures)
        text = str(err.value)
        assert "ma-ngap/codes.csv:2: key_letter" in text and "ma-ngap/codes.csv:3: coefficient" in text


class TestInsurer:
    @pytest.mark.parametrize(("code", "display"), [
        ("CNSS", "Caisse nationale de sécurité sociale"), ("cnops", "Caisse nationale des organismes de prévoyance "
                                                                    "sociale"),
        ("ANAM", None), ("AMO_TNS", None), ("AXA", None),
    ])
    def test_paying_organismes_only(self, book: TariffBook, code: str, display: str | None) -> None:
        """CNSS and CNOPS pay; ANAM regulates; a scheme or an unknown code is not an insurer."""
        assert book.insurer(code) == display


class TestShipped:
    def test_the_shipped_nomenclatures_load_with_no_tariff(self) -> None:
        """The shipped tariffs.csv and act tables are templates: the book loads and every act is TARIFF_MISSING
        or ACT_UNKNOWN, never priced from a value no primary source states."""
        book = TariffBook.load(ROOT / "nomenclatures", base=BASE)
        assert book.rates == {} and all(len(t.codes) == 0 for t in book.tables.values())
        assert _reason(book, NGAP, "C").code == "TARIFF_MISSING"

    def test_the_registry_loads_the_new_folders(self) -> None:
        """load_registry reads ma-ngap/ma-nabm as code sets and skips ma-tnr (kind Tariffs), keeping its meta."""
        reg = load_registry(ROOT / "nomenclatures", BASE)
        assert reg.codeset("ma-ngap").url == NGAP and reg.codeset("ma-nabm").url == NABM
        assert "ma-tnr" not in reg.codesets and reg.metas["ma-tnr"]["kind"] == "Tariffs"
