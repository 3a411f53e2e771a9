"""Money and exchange rates: exact ``Decimal`` amounts tagged with an ISO 4217 currency."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import (
    ROUND_HALF_UP,
    Clamped,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Underflow,
)
from typing import Any

import attrs

from oppcore.domain import _checks
from oppcore.domain._iso4217 import MINOR_UNITS
from oppcore.exceptions import CurrencyMismatchError, MissingRateError, ValidationError

#: The context for oppcore's own arithmetic.  Inputs have at most 21 significant digits, so
#: products of a few of them never come near 200 digits: sums and products stay exact.
EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow])
#: Division (a reverse exchange rate) cannot always be exact; 34 significant digits is
#: IEEE decimal128, far below a cent on any amount oppcore accepts.
DIVISION = Context(prec=34, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero])

#: The limit of Money's arithmetic (``_checks.EXACT_DIGITS``): operands and results have at
#: most this many significant digits and lie below ``10**(LIMIT + 1)``.
LIMIT = _checks.EXACT_DIGITS
#: Money's own arithmetic.  Two numbers within LIMIT never need more than ``3 * LIMIT + 2``
#: digits for an exact sum (exponents from ``-2 * LIMIT + 1`` to ``LIMIT``) or ``2 * LIMIT``
#: for an exact product, so with this precision nothing rounds; should anything round or
#: overflow all the same, a trap raises instead of a silent approximation.
_ARITHMETIC = Context(
    prec=3 * LIMIT + 8,
    traps=[InvalidOperation, DivisionByZero, Overflow, Underflow, Inexact, Rounded, Clamped],
)
#: ``rounded()``: an amount within LIMIT quantized to at most 4 places needs LIMIT + 5 digits.
_ROUNDING = Context(prec=LIMIT + 8, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_INT_LIMIT = 10**LIMIT
_LIMIT_TEXT = (
    f"Money's arithmetic is exact up to {LIMIT} significant digits, between "
    f"10**-{LIMIT} and 10**{LIMIT + 1}"
)


def _beyond(what: str) -> ValidationError:
    return ValidationError(f"{what} is beyond the limit: {_LIMIT_TEXT}.")


def _checked(result: Decimal, what: str) -> Decimal:
    if not _checks.within_exact_limit(result):
        raise _beyond(what)
    return result


def _add(a: Decimal, b: Decimal, what: Callable[[], str]) -> Decimal:
    try:
        return _checked(_ARITHMETIC.add(a, b), what())
    except DecimalException:
        raise _beyond(what()) from None


def _multiply(a: Decimal, b: Decimal, what: Callable[[], str]) -> Decimal:
    """``a x b`` exactly, or ``ValidationError`` naming the limit.

    The magnitudes are checked first, in constant time: a product that would be past the
    limit is refused before anything is computed.
    """
    if not (b.is_finite() and a.is_finite()) or not (
        -LIMIT - 1 <= a.adjusted() + b.adjusted() <= LIMIT
    ):
        raise _beyond(what())
    if not (_checks.within_exact_limit(a) and _checks.within_exact_limit(b)):
        raise _beyond(what())
    try:
        return _checked(_ARITHMETIC.multiply(a, b), what())
    except DecimalException:
        raise _beyond(what()) from None


def _divide(a: Decimal, b: Decimal, what: Callable[[], str]) -> Decimal:
    """``a / b`` to DIVISION's 34 digits (the documented rounding of a reverse rate)."""
    if not (
        _checks.within_exact_limit(a)
        and _checks.within_exact_limit(b)
        and -LIMIT - 1 <= a.adjusted() - b.adjusted() <= LIMIT
    ):
        raise _beyond(what())
    try:
        return _checked(DIVISION.divide(a, b), what())
    except DecimalException:
        raise _beyond(what()) from None


_CODES = {code: code for code in MINOR_UNITS}
_QUANTA = {places: Decimal(1).scaleb(-places) for places in set(MINOR_UNITS.values())}


def currency_code(value: object, what: str = "Currency") -> str:
    """An ISO 4217 code in upper case, or ``ValidationError``."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{what} must be an ISO 4217 code such as 'USD', not {_checks.short(value)}."
        )
    # One shared string per currency: millions of Money values must not each carry a copy.
    code = _CODES.get(value) or _CODES.get(value.strip().upper())
    if code is None:
        raise ValidationError(
            f"{what} {_checks.short(value)} is not an ISO 4217 currency code with a minor unit."
        )
    return code


def minor_units(currency: str) -> int:
    """The number of decimal places of ``currency``'s minor unit (THB 2, JPY 0, KWD 3)."""
    return MINOR_UNITS[currency_code(currency)]


@attrs.frozen(init=False, order=False, repr=False)
class Money:
    """An exact amount of one currency.

    ``Money("5100.00", "THB")``; floats are refused.  Money from outside is checked for
    sanity; results of oppcore's own arithmetic stay exact however many places they have.
    Use ``rounded()`` to round half-up to the currency's minor unit.
    """

    amount: Decimal
    currency: str

    def __init__(self, amount: Decimal | int | str, currency: str) -> None:
        object.__setattr__(self, "amount", _checks.decimal(amount, "Money amount"))
        object.__setattr__(self, "currency", currency_code(currency))

    @classmethod
    def _exact(cls, amount: Decimal, currency: str) -> Money:
        """Build from oppcore's own arithmetic, skipping the checks for outside input."""
        money = object.__new__(cls)
        object.__setattr__(money, "amount", amount)
        object.__setattr__(money, "currency", currency)
        return money

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls._exact(Decimal(0), currency_code(currency))

    def __repr__(self) -> str:
        return f"Money('{self.amount}', '{self.currency}')"

    def __str__(self) -> str:
        if not _checks.within_exact_limit(self.amount):
            # Only code that builds Money past the limit by hand gets here; str() must not raise.
            return f"{self.amount} {self.currency}"
        return f"{self.rounded().amount:,} {self.currency}"

    def rounded(self) -> Money:
        """Rounded half-up to the currency's minor unit: the only place oppcore rounds."""
        if not _checks.within_exact_limit(self.amount):
            raise _beyond(f"Rounding {_checks.short(self)}")
        quantum = _QUANTA[MINOR_UNITS[self.currency]]
        return Money._exact(self.amount.quantize(quantum, ROUND_HALF_UP, _ROUNDING), self.currency)

    def _other(self, other: Money, operation: str) -> Decimal:
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"Cannot {operation} {self!r} and {other!r}: convert one currency first."
            )
        return other.amount

    def __add__(self, other: object) -> Money:
        if isinstance(other, Money):
            amount = _add(
                self.amount,
                self._other(other, "add"),
                lambda: f"The sum of {_checks.short(self)} and {_checks.short(other)}",
            )
            return Money._exact(amount, self.currency)
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # sum() starts from 0
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: object) -> Money:
        if isinstance(other, Money):
            amount = _add(
                self.amount,
                self._other(other, "subtract").copy_negate(),
                lambda: f"{_checks.short(self)} less {_checks.short(other)}",
            )
            return Money._exact(amount, self.currency)
        return NotImplemented

    def __neg__(self) -> Money:
        return Money._exact(self.amount.copy_negate(), self.currency)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, float):
            raise ValidationError(
                f"Cannot multiply {self!r} by the float {factor!r}: pass a Decimal such as "
                f"Decimal({str(factor)!r})."
            )
        if isinstance(factor, bool) or not isinstance(factor, (Decimal, int)):
            return NotImplemented
        if isinstance(factor, Decimal) and not factor.is_finite():
            raise ValidationError(f"Cannot multiply {self!r} by {factor!r}.")

        def what() -> str:
            return f"The product of {_checks.short(self)} and {_checks.short(factor)}"

        if isinstance(factor, int) and not -_INT_LIMIT < factor < _INT_LIMIT:
            # Refused by its size alone: converting a huge int to Decimal takes ages.
            raise _beyond(what())
        return Money._exact(_multiply(self.amount, Decimal(factor), what), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.amount < self._other(other, "compare")

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.amount <= self._other(other, "compare")

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.amount > self._other(other, "compare")

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.amount >= self._other(other, "compare")


def _rate_day(value: object, what: str) -> date:
    if isinstance(value, datetime):
        return _checks.aware(value, what).date()
    return _checks.day(value, what)


class ExchangeRates:
    """Dated exchange rates: ``(base, quote, effective_date, rate)`` means 1 base = rate quote.

    A rate holds from its effective date until the next rate of the same pair.  The reverse
    pair is derived as ``1 / rate`` when it is not given.  A missing rate raises
    ``MissingRateError``: it never guesses.
    """

    def __init__(self, rates: Iterable[tuple[str, str, date, Decimal | int | str]] = ()) -> None:
        table: dict[tuple[str, str], dict[date, Decimal]] = {}
        try:
            entries = list(rates)
        except TypeError:
            raise ValidationError(
                f"Exchange rates must be an iterable of tuples, not {_checks.short(rates)}."
            ) from None
        for index, entry in enumerate(entries):
            if not isinstance(entry, tuple) or len(entry) != 4:
                raise ValidationError(
                    f"Exchange rate {index} {_checks.short(entry)} is not a (base, quote, date, rate) tuple."
                )
            base_raw, quote_raw, on_raw, rate_raw = entry
            base = currency_code(base_raw, "Base currency")
            quote = currency_code(quote_raw, "Quote currency")
            on = _checks.day(on_raw, "Rate date")
            rate = _checks.decimal(rate_raw, f"Rate {base}/{quote}")
            if rate <= 0:
                raise ValidationError(
                    f"Rate {base}/{quote} on {on} is {rate_raw!r}; it must be positive."
                )
            if base == quote:
                raise ValidationError(f"Rate {base}/{quote} on {on} converts a currency to itself.")
            dates = table.setdefault((base, quote), {})
            if on in dates and dates[on] != rate:
                raise ValidationError(
                    f"Rate {base}/{quote} on {on} is given twice: {dates[on]} and {rate}."
                )
            dates[on] = rate
        self._dates: dict[tuple[str, str], list[date]] = {}
        self._rates: dict[tuple[str, str], list[Decimal]] = {}
        for pair, dates in table.items():
            ordered = sorted(dates)
            self._dates[pair] = ordered
            self._rates[pair] = [dates[d] for d in ordered]

    def __repr__(self) -> str:
        count = sum(len(v) for v in self._rates.values())
        return f"<ExchangeRates: {count} rates for {len(self._rates)} pairs>"

    def _lookup(self, pair: tuple[str, str], on: date) -> Decimal | None:
        dates = self._dates.get(pair)
        if not dates:
            return None
        index = bisect.bisect_right(dates, on) - 1
        return self._rates[pair][index] if index >= 0 else None

    def _find(self, base: str, quote: str, on: date) -> tuple[Decimal, bool]:
        """The rate and whether it is the reverse pair's (to be divided by)."""
        if (base, quote) in self._dates:
            direct = self._lookup((base, quote), on)
            if direct is not None:
                return direct, False
        elif (quote, base) in self._dates:
            reverse = self._lookup((quote, base), on)
            if reverse is not None:
                return reverse, True
        raise MissingRateError(f"No {base}/{quote} exchange rate is known on {on.isoformat()}.")

    def rate(self, base: str, quote: str, *, on: date) -> Decimal:
        """How many ``quote`` one ``base`` buys on ``on``."""
        base, quote = currency_code(base, "Base currency"), currency_code(quote, "Quote currency")
        day = _rate_day(on, "Rate date")
        if base == quote:
            return Decimal(1)
        rate, reverse = self._find(base, quote, day)
        return DIVISION.divide(Decimal(1), rate) if reverse else rate

    def conversion(self, base: str, quote: str, *, on: date) -> Callable[[Decimal], Decimal]:
        """A function turning an amount of ``base`` into ``quote`` exactly as ``convert`` does
        on ``on``: look the rate up once, then convert many amounts."""
        base, quote = currency_code(base, "Base currency"), currency_code(quote, "Quote currency")
        day = _rate_day(on, "Conversion date")
        if base == quote:
            return lambda amount: amount
        rate, reverse = self._find(base, quote, day)

        def what() -> str:
            return f"Converting {base} to {quote} at {rate}"

        if reverse:
            return lambda amount: _divide(amount, rate, what)
        return lambda amount: _multiply(amount, rate, what)

    def convert(self, money: Money, to: str, *, on: date) -> Money:
        """``money`` in currency ``to`` at the rate in force on ``on``."""
        if not isinstance(money, Money):
            raise ValidationError(f"Only Money can be converted, not {_checks.short(money)}.")
        quote = currency_code(to, "Target currency")
        day = _rate_day(on, "Conversion date")
        if money.currency == quote:
            return money
        rate, reverse = self._find(money.currency, quote, day)

        def what() -> str:
            return f"{_checks.short(money)} converted to {quote} at {rate}"

        if reverse:
            return Money._exact(_divide(money.amount, rate, what), quote)
        return Money._exact(_multiply(money.amount, rate, what), quote)


def total(values: Iterable[Money], currency: str) -> Money:
    """The exact sum of ``values``, all in ``currency``; zero for none."""
    result = Money.zero(currency)
    for value in values:
        result = result + value
    return result


def as_money(value: Any, what: str) -> Money:
    """``value`` as money a deal may hold: the same limits as any amount from outside.

    Money from oppcore's own arithmetic can have any number of places; before it becomes
    a deal's amount or a price it must be sane, so that what is stored always reads back.
    Round it (``rounded()``) first.
    """
    if not isinstance(value, Money):
        raise ValidationError(
            f"{what} must be Money, such as Money('100.00', 'USD'), not {_checks.short(value)}."
        )
    _checks.decimal(value.amount, what)
    return value
