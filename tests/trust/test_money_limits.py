"""Money stays exact or says which limit it met: never rounds silently, never stalls (issue 11, case 6)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import ExchangeRates, Money, ValidationError
from oppcore.domain._checks import EXACT_DIGITS

LIMIT_WORDS = f"exact up to {EXACT_DIGITS} significant digits"


def _coefficient(number: Decimal) -> tuple[int, int]:
    """``number`` as ``(integer coefficient, exponent)``, read off its digits (no context)."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    value = int("".join(map(str, digits)))
    return (-value if sign else value), exponent


def _fits(number: Decimal) -> bool:
    """The limit, restated independently: digits and magnitude of the number as it is written."""
    coefficient, exponent = _coefficient(number)
    digits = len(str(abs(coefficient)))
    adjusted = exponent + digits - 1
    return digits <= EXACT_DIGITS and -EXACT_DIGITS <= adjusted <= EXACT_DIGITS


def _decimal(coefficient: int, exponent: int, *, negative_zero: bool = False) -> Decimal:
    """``coefficient x 10**exponent`` built from its digits, exactly."""
    sign = 1 if coefficient < 0 or (coefficient == 0 and negative_zero) else 0
    return Decimal((sign, tuple(map(int, str(abs(coefficient)))), exponent))


def _exact_product(a: Decimal, b: Decimal) -> Decimal:
    """``a x b`` from the integer coefficients: no decimal context involved."""
    (ca, ea), (cb, eb) = _coefficient(a), _coefficient(b)
    return _decimal(ca * cb, ea + eb, negative_zero=a.is_signed() != b.is_signed())


amounts = st.decimals(
    min_value=Decimal("-999999999999999"), max_value=Decimal("999999999999999"), places=6
).map(lambda d: Money(d, "USD"))
int_factors = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=1, max_value=260).flatmap(
        lambda n: st.integers(min_value=10 ** (n - 1), max_value=10**n - 1)
    ),
    st.integers(min_value=190, max_value=260).map(lambda n: 10**n + 1),
)
decimal_factors = st.builds(
    lambda coefficient, exponent: _decimal(coefficient, exponent),
    st.one_of(st.integers(-(10**12), 10**12), st.integers(1, 260).map(lambda n: 10**n - 1)),
    st.integers(min_value=-260, max_value=260),
)


def test_a_product_past_the_limit_is_refused_naming_the_limit() -> None:
    """``Money * (10**250 + 1)`` is a ValidationError naming the limit, not ``1E+250``."""
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        Money("1", "USD") * (10**250 + 1)


def test_a_multiplier_of_a_million_digits_is_refused_at_once() -> None:
    """``Money * 10**1000000`` is refused by its size, without computing the product."""
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        Money("1.50", "USD") * 10**1_000_000
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        Money("1.50", "USD") * Decimal("1E+1000000")


def test_a_large_product_within_the_limit_prints_and_rounds() -> None:
    """``str()`` and ``rounded()`` of a product near the limit work and stay exact."""
    big = Money("1.5", "USD") * (10**150 + 1)
    assert Fraction(big.amount) == Fraction(15 * (10**150 + 1), 10)
    assert big.rounded() == big
    assert str(big) == f"{int(big.amount):,}.{str(big.amount).split('.')[1]}0 USD"


def test_a_sum_past_the_limit_is_refused_naming_the_limit() -> None:
    """Adding a millionth to a 200-digit amount would need 206 digits: refused, not rounded."""
    big = Money("1", "USD") * (10**199)
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        big + Money("0.000001", "USD")
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        sum([big, Money("0.000001", "USD")])
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        big - Money("0.000001", "USD")


def test_a_conversion_past_the_limit_is_refused_naming_the_limit() -> None:
    """A conversion whose exact result is past the limit raises instead of rounding."""
    rates = ExchangeRates([("USD", "THB", date(2026, 1, 1), "36.123457")])
    big = Money("9", "USD") * (10**199 + 1)
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        rates.convert(big, "THB", on=date(2026, 2, 1))
    with pytest.raises(ValidationError, match=LIMIT_WORDS):
        rates.conversion("USD", "THB", on=date(2026, 2, 1))(big.amount)
    small = Money("1.5", "USD") * (10**100 + 1)
    assert rates.convert(small, "THB", on=date(2026, 2, 1)).amount == _exact_product(
        small.amount, Decimal("36.123457")
    )


@given(amounts, st.one_of(int_factors, decimal_factors))
def test_a_product_is_exact_within_the_limit_and_refused_past_it(
    money: Money, factor: int | Decimal
) -> None:
    """Money times an int or Decimal is the exact product, or a ValidationError past the limit."""
    as_decimal = Decimal(factor)
    exact = _exact_product(money.amount, as_decimal)
    if _fits(as_decimal) and _fits(exact):
        result = money * factor
        assert Fraction(result.amount) == Fraction(money.amount) * Fraction(as_decimal)
        assert result.amount.as_tuple() == exact.as_tuple()
        assert str(result).endswith(" USD")
        assert abs(Fraction(result.rounded().amount) - Fraction(result.amount)) <= Fraction(1, 200)
    else:
        with pytest.raises(ValidationError, match=LIMIT_WORDS):
            money * factor


@given(amounts, amounts, st.integers(min_value=0, max_value=200))
def test_a_sum_is_exact_within_the_limit_and_refused_past_it(
    a: Money, b: Money, shift: int
) -> None:
    """The sum of two amounts (one scaled up towards the limit) is exact, or refused past it."""
    scaled = a * 10**shift if _fits(_exact_product(a.amount, Decimal(10**shift))) else a
    (ca, ea), (cb, eb) = _coefficient(scaled.amount), _coefficient(b.amount)
    exponent = min(ea, eb)
    for other, operator in ((cb, 1), (-cb, -1)):
        exact = ca * 10 ** (ea - exponent) + other * 10 ** (eb - exponent)
        if _fits(_decimal(exact, exponent)):
            result = scaled + b if operator == 1 else scaled - b
            assert Fraction(result.amount) == Fraction(exact) * Fraction(10) ** exponent
        else:
            with pytest.raises(ValidationError, match=LIMIT_WORDS):
                scaled + b if operator == 1 else scaled - b
