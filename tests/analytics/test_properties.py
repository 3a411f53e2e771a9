"""Properties of forecast and effectiveness (Hypothesis), and agreement with pandas group-and-sum."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Context, Decimal, Inexact, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import FixedClock, ForecastCategory, Money, Opportunity, Pipeline
from oppcore.analytics import (
    EffectivenessRow,
    FiscalCalendar,
    ForecastRow,
    Period,
    Table,
    effectiveness,
    forecast,
    period_of,
)
from tests.strategies import (
    currencies,
    dates,
    money,
    offsets,
    optional,
    percentages,
    pick,
    pipelines,
)

#: Exact sums for the test's own arithmetic: any rounding is an error.
EXACT = Context(prec=500, traps=[Inexact])

needs_pandas = pytest.mark.skipif(
    importlib.util.find_spec("pandas") is None, reason="pandas is not installed"
)

GRAINS: tuple[str, ...] = ("week", "month", "quarter", "year")
BY_NAMES: tuple[str, ...] = ("campaign", "lead_source", "type", "owner", "account")
FIELDS: dict[str, str] = {
    "campaign": "campaign_id",
    "lead_source": "lead_source",
    "type": "type",
    "owner": "owner",
    "account": "account",
}
KEY_VALUES: tuple[str | None, ...] = (None, "a", "b", "ลูกค้าใหม่")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

grains = st.sampled_from(GRAINS)
calendars = st.one_of(st.none(), st.integers(1, 12).map(lambda m: FiscalCalendar(start_month=m)))
opened_times = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=offsets()
)
expected_closes = st.dates(min_value=date(2023, 6, 1), max_value=date(2030, 12, 31))


# -- deals --------------------------------------------------------------------------------


def _draw_deal(
    draw: st.DrawFn, index: int, currency: str, choices: Sequence[Pipeline]
) -> Opportunity:
    """One deal opened on a FixedClock, then maybe won, lost, or won and reopened."""
    pipeline = pick(draw, choices)
    clock = FixedClock(draw(opened_times))
    opp = Opportunity.open(
        id=f"deal-{index}",
        name=f"Deal {index}",
        pipeline=pipeline,
        stage=pick(draw, pipeline.open_stages).key,
        amount=draw(optional(money(currency, non_negative=True))),
        currency=currency,
        probability=draw(optional(percentages())),
        expected_close=draw(optional(expected_closes)),
        campaign_id=pick(draw, KEY_VALUES),
        lead_source=pick(draw, KEY_VALUES),
        type=pick(draw, KEY_VALUES),
        owner=pick(draw, KEY_VALUES),
        account=pick(draw, KEY_VALUES),
        clock=clock,
    )
    ending = pick(draw, ("open", "won", "lost", "reopened"))
    if ending == "open":
        return opp
    clock.advance(draw(st.timedeltas(timedelta(0), timedelta(days=400))))
    at = clock.now().astimezone(draw(offsets()))  # the close date is the date where it closed
    if ending == "lost":
        return opp.lose(stage=pick(draw, pipeline.lost_stages).key, at=at, clock=clock)
    opp = opp.win(stage=pick(draw, pipeline.won_stages).key, at=at, clock=clock)
    if ending == "reopened":
        clock.advance(timedelta(days=1))
        opp = opp.reopen(clock=clock)
    return opp


@st.composite
def deal_lists(draw: st.DrawFn, max_size: int = 10) -> list[Opportunity]:
    """Deals in one currency, on the default, Salesforce and a random custom pipeline."""
    currency = draw(currencies())
    custom = draw(pipelines(with_transitions=False, with_required=False))
    choices = (Pipeline.default(), Pipeline.salesforce(), custom)
    size = draw(st.integers(0, max_size))
    return [_draw_deal(draw, index, currency, choices) for index in range(size)]


# -- helpers ------------------------------------------------------------------------------


def _sum(values: Iterable[Money | Decimal | None]) -> Decimal:
    """The exact sum of amounts, None counting as nothing."""
    total = Decimal(0)
    for value in values:
        if value is not None:
            total = EXACT.add(total, value.amount if isinstance(value, Money) else value)
    return total


def _expected(opp: Opportunity) -> Decimal:
    """amount x probability / 100, worked out here."""
    if opp.amount is None:
        return Decimal(0)
    return EXACT.divide(EXACT.multiply(opp.amount.amount, opp.probability), Decimal(100))


def _opens(opps: Iterable[Opportunity]) -> list[Opportunity]:
    return [opp for opp in opps if opp.is_open]


def _counts(row: ForecastRow) -> tuple[Any, ...]:
    """A forecast row's numbers, money as exact amounts (None as 0)."""
    return (
        row.open_count,
        _sum([row.pipeline]),
        _sum([row.best_case]),
        _sum([row.commit]),
        _sum([row.weighted]),
        row.won_count,
        _sum([row.won]),
        row.lost_count,
    )


def _by_period(table: Table[ForecastRow]) -> dict[Period | None, tuple[Any, ...]]:
    return {row.period: _counts(row) for row in table}


# -- forecast -----------------------------------------------------------------------------


@given(opps=deal_lists(), grain=grains, calendar=calendars)
def test_the_weighted_total_equals_the_sum_of_open_expected_revenues_exactly(
    opps: list[Opportunity], grain: Any, calendar: FiscalCalendar | None
) -> None:
    """Over all rows, weighted is the exact sum of every open deal's expected revenue."""
    table = forecast(opps, period=grain, calendar=calendar)

    assert _sum(row.weighted for row in table) == _sum(opp.expected_revenue for opp in _opens(opps))
    assert _sum(row.weighted for row in table) == _sum(_expected(opp) for opp in _opens(opps))
    currencies_seen = {row.weighted.currency for row in table if row.weighted is not None}
    assert currencies_seen <= {opp.currency for opp in opps}


@given(opps=deal_lists(), grain=grains, calendar=calendars)
def test_every_open_deal_lands_in_exactly_one_row(
    opps: list[Opportunity], grain: Any, calendar: FiscalCalendar | None
) -> None:
    """Rows are disjoint periods in time order; each holds the open deals expected in it."""
    table = forecast(opps, period=grain, calendar=calendar)
    periods = [row.period for row in table if row.period is not None]
    opens = _opens(opps)

    assert sum(row.open_count for row in table) == len(opens)
    assert all(a.end < b.start for a, b in itertools.pairwise(periods))
    assert all(row.period is not None for row in table.rows[:-1])
    for opp in opens:
        if opp.expected_close is not None:
            holding = [p for p in periods if opp.expected_close in p]
            assert holding == [period_of(opp.expected_close, grain, calendar)]
    for row in table:
        expected_here = [
            opp
            for opp in opens
            if (opp.expected_close is None and row.period is None)
            or (row.period is not None and opp.expected_close in row.period)
        ]
        assert row.open_count == len(expected_here)
    unscheduled = [row for row in table if row.period is None]
    if any(opp.expected_close is None for opp in opens):
        assert unscheduled == [table[-1]]
    else:
        assert unscheduled == []


@given(opps=deal_lists(max_size=12), grain=grains, calendar=calendars, data=st.data())
def test_adding_the_forecasts_of_two_halves_gives_the_forecast_of_the_whole(
    opps: list[Opportunity], grain: Any, calendar: FiscalCalendar | None, data: st.DataObject
) -> None:
    """Split the deals anyhow, forecast each part, add row by row by period: the whole's forecast."""
    mask = data.draw(st.lists(st.booleans(), min_size=len(opps), max_size=len(opps)))
    left = [opp for opp, side in zip(opps, mask, strict=True) if side]
    right = [opp for opp, side in zip(opps, mask, strict=True) if not side]

    whole = _by_period(forecast(opps, period=grain, calendar=calendar))
    added: dict[Period | None, tuple[Any, ...]] = {}
    for part in (left, right):
        for period, numbers in _by_period(forecast(part, period=grain, calendar=calendar)).items():
            before = added.get(period, (0,) * len(numbers))
            added[period] = tuple(a + b for a, b in zip(before, numbers, strict=True))

    assert added == whole


# -- effectiveness ------------------------------------------------------------------------


def _stage_key(opp: Opportunity) -> str:
    return opp.stage_key


by_options = st.sampled_from([*BY_NAMES, _stage_key])


@given(opps=deal_lists(), by=by_options)
def test_effectiveness_counts_add_up_per_row_and_over_all_rows(
    opps: list[Opportunity], by: Any
) -> None:
    """opportunities = open + won + lost in each row; the rows' sums are the totals of the deals."""
    rows = effectiveness(opps, by=by)
    keys = [row.key for row in rows]

    assert all(row.opportunities == row.open + row.won + row.lost for row in rows)
    assert len(set(keys)) == len(keys)
    assert None not in keys[:-1]
    assert sum(row.opportunities for row in rows) == len(opps)
    assert sum(row.open for row in rows) == len(_opens(opps))
    assert sum(row.won for row in rows) == sum(1 for opp in opps if opp.is_won)
    assert sum(row.lost for row in rows) == sum(1 for opp in opps if opp.is_lost)
    assert _sum(row.won_revenue for row in rows) == _sum(opp.amount for opp in opps if opp.is_won)
    assert _sum(row.weighted for row in rows) == _sum(_expected(opp) for opp in _opens(opps))
    assert _sum(row.pipeline for row in rows) == _sum(
        opp.amount for opp in _opens(opps) if opp.forecast_category is not ForecastCategory.OMITTED
    )


# -- agreement with pandas ----------------------------------------------------------------


def _pandas_period(pd: Any, day: date, grain: str, calendar: FiscalCalendar | None) -> Period:
    """The period of ``day`` as pandas works it out (fiscal quarters as Q-<last month>)."""
    if grain == "week":
        year, week, _ = pd.Timestamp(day).isocalendar()
        span = pd.Period(day, freq="W-SUN")
        label = f"{year}-W{week:02d}"
    elif grain == "month":
        span = pd.Period(day, freq="M")
        label = str(span)
    else:
        last_month = MONTH_NAMES[((calendar.start_month if calendar else 1) - 2) % 12]
        quarter = pd.Period(day, freq=f"Q-{last_month}")
        prefix = "FY" if calendar is not None else ""
        if grain == "quarter":
            span, label = quarter, f"{prefix}{quarter.qyear}-Q{quarter.quarter}"
        else:  # the fiscal year: its first quarter to its fourth
            first = quarter - (quarter.quarter - 1)
            last = first + 3
            return Period(first.start_time.date(), last.end_time.date(), f"{prefix}{quarter.qyear}")
    return Period(span.start_time.date(), span.end_time.date(), label)


@needs_pandas
@given(day=dates(), grain=grains, calendar=calendars)
def test_period_of_agrees_with_pandas_periods(
    day: date, grain: Any, calendar: FiscalCalendar | None
) -> None:
    """Labels and bounds match pandas: ISO weeks, months, and quarters/years as Q-<month> fiscal years."""
    pd = pytest.importorskip("pandas")

    assert period_of(day, grain, calendar) == _pandas_period(pd, day, grain, calendar)


def _deal_frame(
    pd: Any, opps: list[Opportunity], grain: str, calendar: FiscalCalendar | None
) -> Any:
    """One row per deal: where it counts, its state, and the money it brings to each column."""
    records = []
    for opp in opps:
        day = opp.expected_close if opp.is_open else opp.closed_at.date() if opp.closed_at else None
        period = None if day is None else _pandas_period(pd, day, grain, calendar)
        amount = opp.amount.amount if opp.amount is not None else Decimal(0)
        category = opp.forecast_category
        records.append(
            {
                "label": "unscheduled" if period is None else period.label,
                "start": date.max if period is None else period.start,
                "open": int(opp.is_open),
                "won": int(opp.is_won),
                "lost": int(opp.is_lost),
                "pipeline": amount
                if opp.is_open and category is not ForecastCategory.OMITTED
                else Decimal(0),
                "best_case": amount
                if opp.is_open and category is ForecastCategory.BEST_CASE
                else Decimal(0),
                "commit": amount
                if opp.is_open and category is ForecastCategory.COMMIT
                else Decimal(0),
                "weighted": _expected(opp) if opp.is_open else Decimal(0),
                "won_amount": amount if opp.is_won else Decimal(0),
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "label",
            "start",
            "open",
            "won",
            "lost",
            "pipeline",
            "best_case",
            "commit",
            "weighted",
            "won_amount",
        ],
    )


@needs_pandas
@given(opps=deal_lists(), grain=grains, calendar=calendars)
def test_forecast_agrees_with_a_pandas_group_and_sum(
    opps: list[Opportunity], grain: Any, calendar: FiscalCalendar | None
) -> None:
    """A DataFrame of one row per deal, grouped by period and summed, gives forecast's numbers."""
    pd = pytest.importorskip("pandas")
    frame = _deal_frame(pd, opps, grain, calendar)
    with localcontext(EXACT):
        grouped = frame.groupby(["start", "label"], sort=True).sum()
    expected = [
        (
            label,
            (
                int(g.open),
                g.pipeline,
                g.best_case,
                g.commit,
                g.weighted,
                int(g.won),
                g.won_amount,
                int(g.lost),
            ),
        )
        for (_, label), g in grouped.iterrows()
    ]

    table = forecast(opps, period=grain, calendar=calendar)
    got = [
        ("unscheduled" if row.period is None else row.period.label, _counts(row)) for row in table
    ]

    assert got == expected


@needs_pandas
@given(opps=deal_lists(), by=st.sampled_from(BY_NAMES))
def test_effectiveness_agrees_with_a_pandas_group_and_sum(opps: list[Opportunity], by: Any) -> None:
    """Grouped in pandas by the same field: counts, money, win rates and mean cycle agree."""
    pd = pytest.importorskip("pandas")
    records = [
        {
            "key": getattr(opp, FIELDS[by]) or "<none>",
            "open": int(opp.is_open),
            "won": int(opp.is_won),
            "lost": int(opp.is_lost),
            "won_revenue": opp.amount.amount if opp.is_won and opp.amount else Decimal(0),
            "weighted": _expected(opp) if opp.is_open else Decimal(0),
        }
        for opp in opps
    ]
    frame = pd.DataFrame.from_records(
        records, columns=["key", "open", "won", "lost", "won_revenue", "weighted"]
    )
    frame["cycle"] = pd.Series(
        [opp.closed_at - opp.created_at if opp.is_won and opp.closed_at else None for opp in opps],
        dtype="timedelta64[ns]",
    )
    with localcontext(EXACT):
        sums = frame.groupby("key")[["open", "won", "lost", "won_revenue", "weighted"]].sum()
    cycles = frame.groupby("key")["cycle"].mean()

    rows = {("<none>" if row.key is None else row.key): row for row in effectiveness(opps, by=by)}

    assert set(rows) == set(sums.index)
    for key, group in sums.iterrows():
        row: EffectivenessRow = rows[key]
        won, lost = int(group.won), int(group.lost)
        assert (row.open, row.won, row.lost) == (int(group.open), won, lost)
        assert _sum([row.won_revenue]) == group.won_revenue
        assert _sum([row.weighted]) == group.weighted
        if won + lost:
            assert row.win_rate is not None
            assert abs(row.win_rate - Decimal(won) / Decimal(won + lost)) < Decimal("1e-25")
        else:
            assert row.win_rate is None
        if pd.isna(cycles[key]):
            assert row.avg_cycle_days is None
        else:
            assert row.avg_cycle_days is not None
            pandas_days = Decimal(cycles[key].value) / Decimal(86_400 * 10**9)
            assert abs(row.avg_cycle_days - pandas_days) < Decimal("1e-9")
