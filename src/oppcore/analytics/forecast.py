"""The forecast: how much revenue to expect, and when."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

import attrs

from oppcore.analytics import _common
from oppcore.analytics.periods import FiscalCalendar, Grain, Period, check_calendar, check_grain
from oppcore.analytics.periods import period_of as _period_of
from oppcore.analytics.table import Table
from oppcore.domain.money import ExchangeRates, Money
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import ForecastCategory


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
    open_count: int = 0
    pipeline: Money | None = None
    best_case: Money | None = None
    commit: Money | None = None
    weighted: Money | None = None
    won_count: int = 0
    won: Money | None = None
    lost_count: int = 0


def forecast(
    opps: Iterable[Opportunity],
    *,
    period: Grain = "month",
    calendar: FiscalCalendar | None = None,
    as_of: datetime | None = None,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    probabilities: Mapping[str, Decimal | int | str] | None = None,
) -> Table[ForecastRow]:
    """Revenue by period: the open pipeline by expected close, won and lost by close date.

    ``as_of`` answers for the pipeline as it stood then.  ``probabilities`` maps stage keys
    to percentages that replace each deal's own (for example learned win rates).
    """
    grain = check_grain(period)
    fiscal = check_calendar(calendar)
    chances = _common.probabilities_map(probabilities)
    deals = _common.deals(opps, as_of)
    money = _common.Valuation(deals, currency, rates, _common.today(as_of))
    buckets: dict[Period | None, _Bucket] = {}
    periods: dict[object, Period] = {}

    def bucket(day: object) -> _Bucket:
        if day is None:
            return buckets.setdefault(None, _Bucket())
        found = periods.get(day)
        if found is None:
            found = periods[day] = _period_of(day, grain, fiscal)  # type: ignore[arg-type]
        return buckets.setdefault(found, _Bucket())

    for opp in deals:
        amount = money.amount(opp)
        if opp.is_open:
            row = bucket(opp.expected_close)
            row.open_count += 1
            if amount is None:
                continue
            category = opp.forecast_category
            if category is not ForecastCategory.OMITTED:
                row.pipeline = _common.add(row.pipeline, amount)
            if category is ForecastCategory.BEST_CASE:
                row.best_case = _common.add(row.best_case, amount)
            elif category is ForecastCategory.COMMIT:
                row.commit = _common.add(row.commit, amount)
            chance = chances.get(opp.stage_key, opp.probability)
            row.weighted = _common.add(row.weighted, _common.weighted(amount, chance))
        else:
            closed = opp.closed_at.date() if opp.closed_at is not None else None
            row = bucket(closed)
            if opp.is_won:
                row.won_count += 1
                row.won = _common.add(row.won, amount)
            else:
                row.lost_count += 1
    zero = money.zero()
    ordered = sorted((p for p in buckets if p is not None), key=lambda p: p.start)
    if None in buckets:
        ordered.append(None)  # type: ignore[arg-type]
    rows = [
        ForecastRow(
            period=key,
            open_count=b.open_count,
            pipeline=b.pipeline or zero,
            best_case=b.best_case or zero,
            commit=b.commit or zero,
            weighted=b.weighted or zero,
            won_count=b.won_count,
            won=b.won or zero,
            lost_count=b.lost_count,
        )
        for key in ordered
        for b in (buckets[key],)
    ]
    return Table.of(ForecastRow, rows, title=f"Forecast by {grain}")


__all__ = ["ForecastRow", "forecast"]
