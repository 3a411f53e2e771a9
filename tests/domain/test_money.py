"""Money: exact amounts, ISO 4217 minor units, one rounding rule, dated exchange rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from oppcore import CurrencyMismatchError, ExchangeRates, MissingRateError, Money, ValidationError
from oppcore.domain import minor_units
from oppcore.domain._iso4217 import MINOR_UNITS, PUBLISHED


def test_minor_units_match_the_iso_4217_list_shipped_by_the_iso4217_package() -> None:
    """The embedded table equals ISO 4217 list one as the maintained iso4217 package ships it."""
    iso4217 = pytest.importorskip("iso4217")
    published = {
        currency.code: currency.exponent
        for currency in iso4217.Currency
        if currency.exponent is not None
    }
    assert published == MINOR_UNITS, f"regenerate with tools/make_iso4217.py (table of {PUBLISHED})"


@pytest.mark.parametrize(
    ("code", "units"),
    [
        ("THB", 2),
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("VND", 0),
        ("BHD", 3),
        ("KWD", 3),
    ],
)
def test_minor_units_of_common_currencies(code: str, units: int) -> None:
    """THB, USD, EUR have 2 places; JPY, KRW, VND none; BHD and KWD 3."""
    assert minor_units(code) == units


@pytest.mark.parametrize(
    ("amount", "code", "rounded"),
    [
        ("2.345", "USD", "2.35"),
        ("2.344999", "USD", "2.34"),
        ("-2.345", "USD", "-2.35"),
        ("1234.5", "JPY", "1235"),
        ("0.0005", "KWD", "0.001"),
        ("10", "THB", "10.00"),
    ],
)
def test_rounded_goes_half_up_to_the_minor_unit(amount: str, code: str, rounded: str) -> None:
    """rounded() rounds half-up (away from zero at the half) to the currency's minor unit."""
    result = Money(amount, code).rounded()

    assert result.amount == Decimal(rounded)
    assert str(result.amount) == rounded


def test_currency_codes_are_normalised_to_upper_case() -> None:
    """'thb' is THB."""
    assert Money("1", "thb").currency == "THB"


def test_a_float_is_refused_with_a_message_that_says_to_pass_a_string() -> None:
    """Floats cannot hold money exactly."""
    with pytest.raises(ValidationError, match=r"pass a string such as '0\.1'"):
        Money(0.1, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "amount",
    ["NaN", "Infinity", "-Infinity", "sNaN", "1234567890123456", "0.0000001", "1e20", "abc", ""],
)
def test_absurd_or_non_numeric_amounts_are_refused(amount: str) -> None:
    """NaN, infinities, more than 15 integer digits or 6 places, and non-numbers are refused."""
    with pytest.raises(ValidationError):
        Money(amount, "USD")


def test_arithmetic_results_stay_exact_beyond_six_places() -> None:
    """oppcore's own arithmetic keeps every digit, past Decimal's default 28; only rounded() rounds."""
    price = Money("999999999999999.999999", "USD")

    product = price * Decimal("99.999999")

    exact = Decimal(f"{999999999999999999999 * 99999999}E-12")
    assert product.amount == exact
    assert len(exact.as_tuple().digits) > 28


def test_sum_of_money_starts_from_zero() -> None:
    """sum() works because 0 is the identity."""
    parts = [Money("0.10", "USD"), Money("0.20", "USD"), Money("0.30", "USD")]

    assert sum(parts) == Money("0.60", "USD")


def test_mixed_currencies_raise_and_are_never_equal() -> None:
    """Arithmetic and ordering across currencies raise; == across currencies is False."""
    baht, dollars = Money("100", "THB"), Money("100", "USD")

    assert baht != dollars
    with pytest.raises(CurrencyMismatchError, match="THB"):
        _ = baht + dollars
    with pytest.raises(CurrencyMismatchError):
        _ = baht < dollars


def test_exchange_rates_hold_from_their_date_until_the_next_rate() -> None:
    """A rate is in force from its effective date until the next rate of the same pair."""
    rates = ExchangeRates(
        [
            ("USD", "THB", date(2026, 1, 1), "35.50"),
            ("USD", "THB", date(2026, 2, 1), "34.25"),
        ]
    )

    assert rates.rate("USD", "THB", on=date(2026, 1, 31)) == Decimal("35.50")
    assert rates.rate("USD", "THB", on=date(2026, 2, 1)) == Decimal("34.25")
    assert rates.convert(Money("100", "USD"), "THB", on=date(2026, 3, 1)) == Money("3425", "THB")
    with pytest.raises(MissingRateError, match="2025-12-31"):
        rates.rate("USD", "THB", on=date(2025, 12, 31))


def test_the_reverse_pair_is_derived_and_a_missing_pair_is_never_guessed() -> None:
    """THB to USD uses 1 / the USD to THB rate; EUR to THB raises MissingRateError."""
    rates = ExchangeRates([("USD", "THB", date(2026, 1, 1), "32")])

    assert rates.convert(Money("3200", "THB"), "USD", on=date(2026, 6, 1)) == Money("100", "USD")
    assert rates.rate("THB", "USD", on=date(2026, 6, 1)) == Decimal("0.03125")
    with pytest.raises(MissingRateError, match="EUR/THB"):
        rates.convert(Money("1", "EUR"), "THB", on=date(2026, 6, 1))


def test_conflicting_rates_for_one_day_are_refused() -> None:
    """Two different rates for the same pair and day raise ValidationError."""
    with pytest.raises(ValidationError, match="given twice"):
        ExchangeRates(
            [("USD", "THB", date(2026, 1, 1), "32"), ("USD", "THB", date(2026, 1, 1), "33")]
        )
