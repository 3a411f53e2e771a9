"""What the analytics share: checking the input, money in one currency, exact statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from oppcore import clock as _clock
from oppcore._repr import short
from oppcore.domain import _checks
from oppcore.domain.money import DIVISION, EXACT, ExchangeRates, Money, currency_code
from oppcore.domain.opportunity import Opportunity
from oppcore.exceptions import CurrencyMismatchError, ValidationError

_DAY_SECONDS = Decimal(86400)


def deals(opps: Iterable[Opportunity], as_of: datetime | None) -> list[Opportunity]:
    """The opportunities to analyse: each as it stood at ``as_of`` (left out if not yet open)."""
    if isinstance(opps, (str, bytes, Mapping)) or not isinstance(opps, Iterable):
        raise ValidationError(f"Analytics take an iterable of Opportunity, not {short(opps)}.")
    moment = None if as_of is None else _checks.aware(as_of, "as_of")
    result = []
    for opp in opps:
        if not isinstance(opp, Opportunity):
            raise ValidationError(f"{short(opp)} is not an Opportunity.")
        if moment is not None:
            past = opp.as_of(moment)
            if past is None:
                continue
            opp = past
        result.append(opp)
    return result


def today(as_of: datetime | None, clock: _clock.Clock | None = None) -> date:
    """The day open deals without a date are valued on: ``as_of``'s, or the clock's today."""
    moment = _clock.resolve(clock).now() if as_of is None else as_of
    return _checks.aware(moment, "as_of").date()


class Valuation:
    """Money in the table's one currency: the deals' common currency, or ``currency=``
    with each deal converted by ``rates`` at its own date."""

    def __init__(
        self,
        opps: Sequence[Opportunity],
        currency: str | None,
        rates: ExchangeRates | None,
        valued_on: date,
    ) -> None:
        if rates is not None and not isinstance(rates, ExchangeRates):
            raise ValidationError(f"rates must be ExchangeRates, not {short(rates)}.")
        self.rates = rates
        self.valued_on = valued_on
        self._conversions: dict[tuple[str, date], Callable[[Decimal], Decimal]] = {}
        if currency is not None and rates is not None:
            self.currency: str | None = currency_code(currency)
            return  # every deal can be converted: no need to survey their currencies
        found = sorted({opp.currency for opp in opps if opp.amount is not None and opp.currency})
        if currency is not None:
            self.currency = currency_code(currency)
        elif len(found) > 1:
            raise CurrencyMismatchError(
                f"The deals are in {', '.join(found)}: pass currency= and rates= to convert "
                "them to one currency; nothing is summed across currencies."
            )
        else:
            self.currency = found[0] if found else None
        if self.currency is not None and rates is None:
            others = [code for code in found if code != self.currency]
            if others:
                raise CurrencyMismatchError(
                    f"Some deals are in {', '.join(others)}, not {self.currency}: pass rates= "
                    "to convert them."
                )

    def day(self, opp: Opportunity) -> date:
        """The date a deal's money is converted at: close date, expected close, or today."""
        if opp.closed_at is not None:
            return opp.closed_at.date()
        return opp.expected_close or self.valued_on

    def convert(self, money: Money | None, on: date) -> Money | None:
        if money is None or money.currency == self.currency or self.currency is None:
            return money
        if self.rates is None:  # checked in __init__; here for money that is not a deal's
            raise CurrencyMismatchError(
                f"{money!r} is not in {self.currency}: pass rates= to convert it."
            )
        return self.rates.convert(money, self.currency, on=on)

    def amount(self, opp: Opportunity) -> Money | None:
        value = self.value(opp)
        return (
            None if value is None or self.currency is None else Money._exact(value, self.currency)
        )

    def value(self, opp: Opportunity) -> Decimal | None:
        """The deal's amount in the table's currency, as a Decimal (the hot path: the rate of
        each currency and day is looked up once)."""
        money = opp.amount
        if money is None:
            return None
        if money.currency == self.currency or self.currency is None:
            return money.amount
        key = (money.currency, self.day(opp))
        conversion = self._conversions.get(key)
        if conversion is None:
            if self.rates is None:  # checked in __init__
                raise CurrencyMismatchError(f"{money!r} is not in {self.currency}.")
            conversion = self.rates.conversion(money.currency, self.currency, on=key[1])
            self._conversions[key] = conversion
        return conversion(money.amount)


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    if not whole:
        return None
    return DIVISION.divide(Decimal(part), Decimal(whole))


def per(money: Money | None, count: int | Decimal) -> Money | None:
    if money is None or not count:
        return None
    return Money._exact(DIVISION.divide(money.amount, Decimal(count)), money.currency)


def days(delta: timedelta) -> Decimal:
    """A duration in days, exactly (to the microsecond)."""
    micro = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return DIVISION.divide(Decimal(micro), _DAY_SECONDS * 1_000_000)


def quantile(sorted_values: Sequence[Decimal], q: Decimal) -> Decimal | None:
    """Linear interpolation between closest ranks, as numpy and pandas do by default."""
    if not sorted_values:
        return None
    position = DIVISION.multiply(Decimal(len(sorted_values) - 1), q)
    lower = int(position)
    fraction = position - lower
    if lower + 1 >= len(sorted_values) or not fraction:
        return sorted_values[lower]
    low, high = sorted_values[lower], sorted_values[lower + 1]
    return low + DIVISION.multiply(high - low, fraction)


def mean(values: Sequence[Decimal]) -> Decimal | None:
    if not values:
        return None
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return DIVISION.divide(total, Decimal(len(values)))


def probabilities_map(value: object) -> dict[str, Decimal]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"probabilities must map a stage key to a percentage, not {short(value)}."
        )
    return {
        _checks.text(key, "Stage key", allow_empty=False): _checks.percentage(
            chance, f"Probability for {key!r}"
        )
        for key, chance in value.items()
    }
