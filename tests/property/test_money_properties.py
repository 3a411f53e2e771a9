"""Properties of Money and ExchangeRates: exact arithmetic, one currency at a time, dated rates."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Context, Decimal, Inexact, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import CurrencyMismatchError, ExchangeRates, MissingRateError, Money, OppcoreError
from tests.strategies import (
    CURRENCIES,
    MINOR_UNITS,
    amounts,
    currencies,
    dates,
    money,
    positive_amounts,
)

EXACT = Context(prec=500)

ORDERINGS: dict[str, Callable[[Money, Money], object]] = {
    "+": operator.add,
    "-": operator.sub,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

two_currencies = st.lists(currencies(), min_size=2, max_size=2, unique=True)
rates = positive_amounts(max_integer_digits=6)


def same_currency(size: int) -> st.SearchStrategy[list[Money]]:
    """``size`` Money values, all in one currency."""
    return currencies().flatmap(lambda code: st.lists(money(code), min_size=size, max_size=size))


# -- arithmetic -----------------------------------------------------------------------------


@given(same_currency(3))
def test_addition_is_associative_and_exact(values: list[Money]) -> None:
    """(a + b) + c == a + (b + c), and both are the exact decimal sum."""
    a, b, c = values
    with localcontext(EXACT):
        exact = a.amount + b.amount + c.amount
    assert (a + b) + c == a + (b + c)
    assert ((a + b) + c).amount == exact
    assert ((a + b) + c).currency == a.currency


@given(same_currency(2))
def test_addition_commutes_and_subtraction_undoes_it(values: list[Money]) -> None:
    """a + b == b + a, and (a + b) - b == a exactly."""
    a, b = values
    assert a + b == b + a
    assert (a + b) - b == a
    assert (a - b).amount == a.amount - b.amount


@given(currencies().flatmap(lambda code: st.lists(money(code), min_size=1, max_size=12)))
def test_sum_of_parts_equals_the_total(parts: list[Money]) -> None:
    """sum() of Money parts is the exact total, in the parts' currency."""
    with localcontext(EXACT):
        exact = sum((part.amount for part in parts), Decimal(0))
    total = sum(parts)
    assert isinstance(total, Money)
    assert total.amount == exact
    assert total.currency == parts[0].currency


@given(money())
def test_zero_is_the_identity_of_addition(value: Money) -> None:
    """0 + m == m + 0 == m, so sum() can start from 0, and zero money of the currency adds nothing."""
    assert 0 + value == value
    assert value + 0 == value
    assert sum([value]) == value
    assert value + Money.zero(value.currency) == value


@given(two_currencies, amounts(), amounts())
def test_mixing_currencies_in_arithmetic_or_ordering_raises(
    codes: list[str], left: Decimal, right: Decimal
) -> None:
    """+, -, <, <=, >, >= across currencies raise CurrencyMismatchError, also a TypeError."""
    a, b = Money(left, codes[0]), Money(right, codes[1])
    for symbol, operation in ORDERINGS.items():
        with pytest.raises(CurrencyMismatchError) as caught:
            operation(a, b)
        assert isinstance(caught.value, TypeError), symbol
        assert isinstance(caught.value, OppcoreError), symbol


@given(two_currencies, amounts())
def test_equality_across_currencies_is_false(codes: list[str], amount: Decimal) -> None:
    """The same amount in two currencies is not equal, and comparing them with == never raises."""
    a, b = Money(amount, codes[0]), Money(amount, codes[1])
    assert a != b
    assert not a == b  # noqa: SIM201 (the == operator itself is under test)
    assert a == Money(str(amount), codes[0].lower())


@given(money(), st.integers(-(10**6), 10**6))
def test_multiplication_by_an_int_is_exact(value: Money, factor: int) -> None:
    """m * k == k * m, the exact product, in m's currency."""
    product = value * factor
    with localcontext(EXACT):
        assert product.amount == value.amount * factor
    assert product == factor * value
    assert product.currency == value.currency


@given(money(), amounts())
def test_multiplication_by_a_decimal_is_exact(value: Money, factor: Decimal) -> None:
    """m * d == d * m, the exact product however many places it has."""
    product = value * factor
    with localcontext(EXACT):
        assert product.amount == value.amount * factor
    assert product == factor * value


@given(same_currency(2), amounts())
def test_multiplication_distributes_over_addition(values: list[Money], factor: Decimal) -> None:
    """(a + b) * d == a * d + b * d exactly."""
    a, b = values
    assert (a + b) * factor == a * factor + b * factor


# -- rounding -------------------------------------------------------------------------------


@given(money())
def test_rounded_is_idempotent(value: Money) -> None:
    """Rounding a rounded value changes nothing."""
    once = value.rounded()
    assert once.rounded() == once
    assert once.currency == value.currency


@given(money(), amounts(max_integer_digits=4))
def test_rounded_is_within_half_a_minor_unit_and_has_no_more_places(
    value: Money, factor: Decimal
) -> None:
    """rounded() moves at most half a minor unit and keeps only the currency's places."""
    for candidate in (value, value * factor):  # a product may have up to 12 places
        places = MINOR_UNITS[candidate.currency]
        rounded = candidate.rounded()
        with localcontext(EXACT):
            assert abs(rounded.amount - candidate.amount) <= Decimal(5).scaleb(-places - 1)
        exponent = rounded.amount.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -places


@given(currencies(), st.integers(0, 10**12), st.booleans())
def test_rounded_goes_half_up_on_a_tie(code: str, units: int, negative: bool) -> None:
    """A value exactly half-way between two minor units rounds away from zero."""
    places = MINOR_UNITS[code]
    with localcontext(EXACT):
        tie = (Decimal(units) + Decimal("0.5")).scaleb(-places)
        expected = Decimal(units + 1).scaleb(-places)
    if negative:
        tie, expected = -tie, -expected
    assert Money(tie, code).rounded().amount == expected


# -- exchange rates -----------------------------------------------------------------------


@given(two_currencies, dates(), rates, amounts(), st.integers(0, 3650))
def test_convert_there_and_back_with_a_direct_rate_is_exact(
    codes: list[str], effective: date, rate: Decimal, amount: Decimal, days_later: int
) -> None:
    """Base to quote at the given rate, then back through the derived reverse, gives the start."""
    base, quote = codes
    table = ExchangeRates([(base, quote, effective, rate)])
    on = effective + timedelta(days=days_later)
    start = Money(amount, base)
    there = table.convert(start, quote, on=on)
    with localcontext(EXACT):
        assert there.amount == amount * rate
    assert there.currency == quote
    assert table.convert(there, base, on=on) == start


@given(two_currencies, dates(), rates)
def test_the_reverse_pair_is_derived_as_one_over_the_rate(
    codes: list[str], effective: date, rate: Decimal
) -> None:
    """Without a rate for quote/base, rate(quote, base) is 1 / rate(base, quote), to 34 digits."""
    base, quote = codes
    table = ExchangeRates([(base, quote, effective, rate)])
    assert table.rate(base, quote, on=effective) == rate
    reverse = table.rate(quote, base, on=effective)
    with localcontext(EXACT):
        assert abs(reverse * rate - 1) <= Decimal("1e-32")
    exact = Context(prec=34, traps=[])
    inverse = exact.divide(Decimal(1), rate)
    if not exact.flags[Inexact]:  # 1 / rate has an exact decimal form: nothing to round
        assert reverse == inverse


@given(two_currencies, dates(), rates, rates)
def test_a_given_reverse_rate_is_used_as_given(
    codes: list[str], effective: date, rate: Decimal, reverse: Decimal
) -> None:
    """When both directions are given, each is used as given, not derived from the other."""
    base, quote = codes
    table = ExchangeRates([(base, quote, effective, rate), (quote, base, effective, reverse)])
    assert table.rate(base, quote, on=effective) == rate
    assert table.rate(quote, base, on=effective) == reverse


@given(
    two_currencies,
    st.lists(st.tuples(dates(), rates), min_size=1, max_size=6, unique_by=lambda pair: pair[0]),
    dates(),
)
def test_a_rate_holds_from_its_effective_date_until_the_next_rate_of_the_pair(
    codes: list[str], history: list[tuple[date, Decimal]], on: date
) -> None:
    """The rate on a day is the one with the latest effective date not after it; none before the first."""
    base, quote = codes
    table = ExchangeRates([(base, quote, day, rate) for day, rate in history])
    in_force = [rate for day, rate in sorted(history) if day <= on]
    if in_force:
        assert table.rate(base, quote, on=on) == in_force[-1]
        assert table.convert(Money("1", base), quote, on=on) == Money(in_force[-1], quote)
    else:
        with pytest.raises(MissingRateError):
            table.rate(base, quote, on=on)
    for day, rate in history:
        assert table.rate(base, quote, on=day) == rate


@given(two_currencies, dates(), rates, st.integers(1, 3650))
def test_a_rate_does_not_hold_before_its_effective_date(
    codes: list[str], effective: date, rate: Decimal, days: int
) -> None:
    """Before its effective date a pair's rate, and its derived reverse, are missing."""
    base, quote = codes
    table = ExchangeRates([(base, quote, effective, rate)])
    earlier = effective - timedelta(days=days)
    with pytest.raises(MissingRateError):
        table.rate(base, quote, on=earlier)
    with pytest.raises(MissingRateError):
        table.rate(quote, base, on=earlier)


@given(st.lists(currencies(), min_size=3, max_size=3, unique=True), dates(), rates, amounts())
def test_a_missing_rate_raises_missing_rate_error_and_never_guesses(
    codes: list[str], on: date, rate: Decimal, amount: Decimal
) -> None:
    """A pair with no rate, direct or reverse, raises MissingRateError (a LookupError)."""
    known, other, unknown = codes
    table = ExchangeRates([(known, other, on, rate)])
    for base, quote in ((known, unknown), (unknown, known), (other, unknown)):
        with pytest.raises(MissingRateError) as caught:
            table.rate(base, quote, on=on)
        assert isinstance(caught.value, LookupError)
        with pytest.raises(MissingRateError):
            table.convert(Money(amount, base), quote, on=on)
    with pytest.raises(MissingRateError):
        ExchangeRates().rate(known, other, on=on)


@given(money(), dates())
def test_converting_to_the_same_currency_changes_nothing(value: Money, on: date) -> None:
    """Converting Money to its own currency needs no rate and returns it unchanged."""
    table = ExchangeRates()
    assert table.convert(value, value.currency, on=on) == value
    assert table.rate(value.currency, value.currency, on=on) == 1


def test_rounding_uses_each_currencys_minor_unit() -> None:
    """KWD keeps 3 places, THB 2 and JPY none; the drawn currencies cover all three widths."""
    assert {MINOR_UNITS[code] for code in CURRENCIES} == {0, 2, 3}
    assert Money("1.005", "KWD").rounded() == Money("1.005", "KWD")
    assert Money("1.5", "JPY").rounded() == Money("2", "JPY")
    assert Money("1.005", "THB").rounded() == Money("1.01", "THB")
