"""The forecast: how much revenue to expect, and when."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.periods import FiscalCalendar, Grain, Period, check_calendar, check_grain
from oppcore.analytics.periods import period_of as _period_of
from oppcore.analytics.table import Table
from oppcore.clock import Clock
from oppcore.domain import _checks
from oppcore.domain.money import DIVISION, EXACT, ExchangeRates, Money
from oppcore.domain.stages import ForecastCategory, Outcome
from oppcore.exceptions import ValidationError


@attrs.frozen
class ForecastRow:
    """One period of the forecast; ``period`` is None for open deals with no expected close.

    Open deals count by expected close: ``pipeline`` is the amount of those not omitted,
    ``best_case`` and ``commit`` the amounts in those forecast categories, ``weighted`` the
    sum of expected revenues.  Won deals count by close date (``won_count``, ``won``), and so
    do lost ones (``lost_count``).  Deals with no amount are counted and add nothing.
    """

    period: Period | None
    open_count: int
    pipeline: Money | None
    best_case: Money | None
    commit: Money | None
    weighted: Money | None
    won_count: int
    won: Money | None
    lost_count: int


@attrs.define
class _Bucket:
    # Plain Decimals in the table's currency while summing; Money only in the finished rows.
    open_count: int = 0
    pipeline: Decimal = Decimal(0)
    best_case: Decimal = Decimal(0)
    commit: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)
    won_count: int = 0
    won: Decimal = Decimal(0)
    lost_count: int = 0


def forecast(
    opps: _common.Deals,
    *,
    period: Grain = "month",
    calendar: FiscalCalendar | None = None,
    as_of: datetime | date | None = None,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    probabilities: Mapping[str, Decimal | int | str] | None = None,
    clock: Clock | None = None,
    time_zone: _common.ZoneLike = None,
) -> Table[ForecastRow]:
    """Revenue by period: the open pipeline by expected close, won and lost by close date.

    ``as_of`` answers for the pipeline as it stood then (a date: the end of that day).
    ``probabilities`` maps stage keys to percentages that replace each deal's own (for
    example learned win rates).  Periods are those of ``time_zone``'s calendar (default
    UTC): a deal closed at 01:00 on 1 April in Bangkok counts in April with
    ``time_zone="Asia/Bangkok"``, in March in UTC.  Expected closes are dates, never moved.
    """
    grain = check_grain(period)
    fiscal = check_calendar(calendar)
    chances = _common.probabilities_map(probabilities)
    zone = _common.time_zone(time_zone)
    if _frames.looks_like_frame(opps):
        found = _frames.forecast(
            opps,
            grain=grain,
            fiscal=fiscal,
            as_of=None if as_of is None else _common.instant(as_of, "as_of", zone),
            currency=currency,
            rates=rates,
            chances=chances,
            zone=zone,
            valued_on=_common.today(as_of, clock, zone),
        )
        return Table.of(ForecastRow, found, title=f"Forecast by {grain}")
    deals = _common.deals(opps, as_of, zone)
    money = _common.Valuation(deals, currency, rates, _common.today(as_of, clock, zone), zone)
    local_date = _common.local_date
    buckets: dict[Period | None, _Bucket] = {}
    by_day: dict[object, _Bucket] = {}  # each day's bucket, so a period is worked out once a day

    def bucket(day: date | None) -> _Bucket:
        found = by_day.get(day)
        if found is None:
            key = None if day is None else _period_of(day, grain, fiscal)
            found = by_day[day] = buckets.setdefault(key, _Bucket())
        return found

    add, multiply = EXACT.add, EXACT.multiply
    fractions: dict[Decimal, Decimal] = {}
    open_, won_, omitted = Outcome.OPEN, Outcome.WON, ForecastCategory.OMITTED
    best, committed = ForecastCategory.BEST_CASE, ForecastCategory.COMMIT
    for opp in deals:
        stage = opp.stage
        if stage.outcome is open_:
            row = bucket(opp.expected_close)
            row.open_count += 1
            value = money.value(opp)
            if value is None:
                continue
            category = stage.forecast_category
            if category is not omitted:
                row.pipeline = add(row.pipeline, value)
            if category is best:
                row.best_case = add(row.best_case, value)
            elif category is committed:
                row.commit = add(row.commit, value)
            chance = chances.get(stage.key, opp.probability) if chances else opp.probability
            factor = fractions.get(chance)
            if factor is None:  # as Opportunity.expected_revenue computes it: p / 100 first
                factor = fractions[chance] = EXACT.divide(chance, _HUNDRED)
            row.weighted = add(row.weighted, multiply(value, factor))
        else:
            closed = opp.closed_at
            row = bucket(None if closed is None else local_date(closed, zone))
            if stage.outcome is won_:
                row.won_count += 1
                value = money.value(opp)
                if value is not None:
                    row.won = add(row.won, value)
            else:
                row.lost_count += 1
    rows = _finished(buckets, money.currency)
    return Table.of(ForecastRow, rows, title=f"Forecast by {grain}")


def _finished(buckets: Mapping[Period | None, _Bucket], code: str | None) -> list[ForecastRow]:
    """The rows of the forecast: periods in time order, then the unscheduled row."""
    scheduled = sorted((p for p in buckets if p is not None), key=lambda p: p.start)
    ordered: list[Period | None] = [*scheduled, *([None] if None in buckets else [])]

    def cash(amount: Decimal) -> Money | None:
        return None if code is None else Money._exact(amount, code)

    return [
        ForecastRow(
            period=key,
            open_count=b.open_count,
            pipeline=cash(b.pipeline),
            best_case=cash(b.best_case),
            commit=cash(b.commit),
            weighted=cash(b.weighted),
            won_count=b.won_count,
            won=cash(b.won),
            lost_count=b.lost_count,
        )
        for key in ordered
        for b in (buckets[key],)
    ]


@attrs.frozen
class ForecastRangeRow:
    """How sure one period's revenue is, if each open deal is won with its probability,
    independently: exact ``mean`` and ``stdev``, and Monte Carlo ``quantiles``
    (quantile -> Money)."""

    period: Period | None
    mean: Money | None
    stdev: Money | None
    quantiles: Mapping[Decimal, Money]


def forecast_range(
    opps: _common.Deals,
    *,
    period: Grain = "quarter",
    calendar: FiscalCalendar | None = None,
    simulations: int = 10_000,
    seed: int | None = None,
    quantiles: Iterable[Decimal | int | str] = (Decimal("0.1"), Decimal("0.5"), Decimal("0.9")),
    as_of: datetime | date | None = None,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    clock: Clock | None = None,
    time_zone: _common.ZoneLike = None,
) -> Table[ForecastRangeRow]:
    """The spread of each period's revenue from its open deals.

    ``mean`` (the weighted pipeline) and ``stdev`` are exact:
    ``sum(a * p)`` and ``sqrt(sum(a**2 * p * (1 - p)))``.  The quantiles come from
    ``simulations`` runs in which each deal is won with its probability; the same ``seed``
    gives the same answer, whatever order the deals come in (each period's deals are drawn
    in opportunity id order, on a deal frame too).  Open deals without an expected close
    make the last row.  Deals fall in periods by their expected close, a date;
    ``time_zone`` (default UTC) is the calendar of ``as_of`` (a date: the end of that day)
    and of today.
    """
    grain = check_grain(period)
    fiscal = check_calendar(calendar)
    runs = _count(simulations)
    levels = _levels(quantiles)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValidationError(f"seed must be a whole number or None, not {short(seed)}.")
    zone = _common.time_zone(time_zone)
    valued_on = _common.today(as_of, clock, zone)
    # (opportunity id, amount in the table's currency, probability, expected close)
    deals: list[tuple[str, Money, Decimal, date | None]] = []
    if _frames.looks_like_frame(opps):
        moment = None if as_of is None else _common.instant(as_of, "as_of", zone)
        found, picked = _frames.open_deals(opps, moment)
        valuation = _frames.valuation(found, currency, rates, valued_on)
        code = valuation.currency
        for opp_id, value, in_currency, chance, close in picked:
            converted = valuation.value_in(value, in_currency, close or valued_on)
            deals.append((opp_id, Money._exact(converted, code), chance, close))
    else:
        opened = _common.deals(opps, as_of, zone)
        money = _common.Valuation(opened, currency, rates, valued_on, zone)
        for opp in opened:
            amount = money.amount(opp) if opp.is_open else None  # closed: never converted
            if amount is not None:
                deals.append((opp.id, amount, opp.probability, opp.expected_close))
        deals.sort(key=lambda deal: deal[0])  # the draws follow the ids, not the input order
    groups: dict[Period | None, list[tuple[Money, Decimal]]] = {}
    for _, amount, chance, close in deals:
        key = None if close is None else _period_of(close, grain, fiscal)
        groups.setdefault(key, []).append((amount, chance / _HUNDRED))
    scheduled = sorted((p for p in groups if p is not None), key=lambda p: p.start)
    ordered: list[Period | None] = [*scheduled, *([None] if None in groups else [])]
    rng = random.Random(seed)
    rows = [_range_row(key, groups[key], runs, levels, rng) for key in ordered]
    return Table.of(ForecastRangeRow, rows, title=f"Forecast range by {grain}")


_HUNDRED = Decimal(100)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise ValidationError(
            f"simulations must be a whole number 1 to 10,000,000, not {short(value)}."
        )
    return value


def _levels(value: object) -> tuple[Decimal, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError(f"quantiles must be a list of fractions 0 to 1, not {short(value)}.")
    levels = []
    for item in value:
        level = _checks.decimal(item, "Quantile")
        if not 0 <= level <= 1:
            raise ValidationError(f"Quantile {short(item)} is outside 0 to 1.")
        levels.append(level)
    return tuple(levels)


#: Binary digits of each probability used by the sampler: a bias under one in a million.
_PRECISION = 20


def _simulate(deals: list[tuple[int, Decimal]], runs: int, rng: random.Random) -> list[int]:
    """Total won in each of ``runs`` independent runs, every deal won with its probability.

    Pure Python, bit-parallel: bit ``s`` of an int of ``runs`` bits stands for run ``s``.
    Each deal's wins are one such mask, drawn with ``_PRECISION`` calls of ``getrandbits``
    (each binary digit of p either ORs or ANDs a fair random mask in, which gives each bit
    probability p).  The masks are added, scaled by each amount's binary digits, into
    bit-sliced counters (plane ``b`` holds bit ``b`` of every run's total), so the work per
    deal is a few dozen big-int operations instead of one Python step per run.
    """
    everything = (1 << runs) - 1
    planes: list[int] = []
    for amount, chance in deals:
        mask = _wins(chance, runs, everything, rng)
        if not mask or not amount:
            continue
        bit = 0
        while amount:
            if amount & 1:
                _add(planes, bit, mask)
            amount >>= 1
            bit += 1
    digits = [format(plane, f"0{runs}b") for plane in planes]
    # Transpose: run s is character runs-1-s of each plane's digits, most significant plane first.
    return (
        [int("".join(column), 2) for column in zip(*reversed(digits), strict=True)]
        if planes
        else [0] * runs
    )


def _wins(chance: Decimal, runs: int, everything: int, rng: random.Random) -> int:
    if chance >= 1:
        return everything
    numerator = int(chance * (1 << _PRECISION))  # p to _PRECISION binary digits
    mask = 0
    for position in range(_PRECISION):  # least significant digit first
        draw = rng.getrandbits(runs)
        mask = mask | draw if numerator >> position & 1 else mask & draw
    return mask


def _add(planes: list[int], bit: int, mask: int) -> None:
    """Add ``mask << bit`` (per run) into the bit-sliced counters ``planes``."""
    carry = mask
    while carry:
        if bit >= len(planes):
            planes.extend([0] * (bit - len(planes)))
            planes.append(carry)
            return
        planes[bit], carry = planes[bit] ^ carry, planes[bit] & carry
        bit += 1


def _range_row(
    key: Period | None,
    deals: list[tuple[Money, Decimal]],
    runs: int,
    levels: tuple[Decimal, ...],
    rng: random.Random,
) -> ForecastRangeRow:
    currency = deals[0][0].currency
    mean = Decimal(0)
    variance = Decimal(0)
    for amount, chance in deals:
        mean = EXACT.add(mean, EXACT.multiply(amount.amount, chance))
        variance = EXACT.add(
            variance,
            EXACT.multiply(
                EXACT.multiply(amount.amount, amount.amount), EXACT.multiply(chance, 1 - chance)
            ),
        )
    # Simulate in integers: scale every amount to the smallest exponent, so each run's total
    # is an exact int.
    exponent = min(int(amount.amount.as_tuple().exponent) for amount, _ in deals)
    scaled = [(int(amount.amount.scaleb(-exponent, EXACT)), chance) for amount, chance in deals]
    totals = _simulate(scaled, runs, rng)
    totals.sort()
    unit = Decimal(1).scaleb(exponent)
    values = [Decimal(total) * unit for total in totals]
    return ForecastRangeRow(
        period=key,
        mean=Money._exact(mean, currency),
        stdev=Money._exact(DIVISION.sqrt(variance), currency),
        quantiles={
            level: Money._exact(_common.quantile(values, level) or Decimal(0), currency)
            for level in levels
        },
    )


__all__ = ["ForecastRangeRow", "ForecastRow", "forecast", "forecast_range"]
