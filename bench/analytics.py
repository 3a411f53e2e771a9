"""Analytics benchmarks for oppcore (issue 4): ratios against a floor and against pandas, in one run.

Run from the repository root with oppcore and pandas installed::

    python bench/analytics.py --quick                    # smoke run: 20,000 opportunities, 3 repeats
    python bench/analytics.py                            # the issue's workload: 1,000,000 opportunities
    python bench/analytics.py --opportunities 100000     # smaller

The deals are built once (the first 100,000 of them under tracemalloc, for measurement 4;
``--memory-deals`` changes how many) and every timing then runs over those same objects.  As in bench/storage.py, nothing is judged on an absolute time: each
figure is the median of several repeats run side by side (interleaved, the order rotated
each repeat) and every verdict is a ratio against a baseline measured in the same process.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import io
import linecache
import math
import os
import platform
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, TypeVar

from _timing import (
    Sample,
    median,
    package_version,
    progress,
    rotated,
    source_state,
    spread,
    timed,
    verdict,
)

import oppcore
from oppcore import (
    Campaign,
    ExchangeRates,
    FixedClock,
    ForecastCategory,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
)
from oppcore.analytics import Table, effectiveness, forecast, forecast_range


def _pandas() -> Any:
    """pandas if installed (measurement 2 is skipped without it), else None."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        return None


pandas: Any = _pandas()

T = TypeVar("T")

FLOOR_TARGET = 1.5  # library at most this many times the hand-written loop
PANDAS_TARGET = 3.0  # library at least this many times faster than the pandas route
MEMORY_TARGET = 1_200  # bytes per opportunity, 6 events each
ALLOCATION_SAMPLE = 2_000  # deals built for the where-the-bytes-go breakdown

# -- the workload ----------------------------------------------------------------------------

PIPELINE = Pipeline.salesforce()
OPEN_STAGES = tuple(stage.key for stage in PIPELINE.stages if stage.is_open)
TARGET_CURRENCY = "USD"
CURRENCIES = ("USD", "USD", "EUR", "THB")  # half the deals in dollars, a quarter in each other
THB_PER_USD = 35
MONTHS = 24
FIRST_DAY = date(2026, 1, 1)
BASE_TIME = datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc)
#: The analytics' "today": open deals without an expected close are converted on this day.
ANALYSIS_TIME = datetime(2027, 12, 31, 18, 0, tzinfo=timezone.utc)
CAMPAIGNS = 200
LEAD_SOURCES = ("Web", "Referral", "Partner", "Trade Show", "Advertisement", "Cold Call")
DEAL_TYPES = ("New Business", "Existing Business - Upgrade", "Existing Business - Renewal")
CAMPAIGN_KINDS = ("Webinar", "Trade Show", "Email", "Paid Search", "Partner Event")
LOST_REASONS = ("Price", "Chose a competitor", "No budget", "No decision", "Timing")
ACCOUNTS = tuple(f"Account {number:03d}" for number in range(500))
OWNERS = tuple(f"Owner {number:02d}" for number in range(25))
RANGE_SEED = 20_260_101
MASK64 = (1 << 64) - 1


def mix(number: int, salt: int) -> int:
    """A well-spread 32-bit number from ``number`` and ``salt``: the workload's only dice."""
    x = (number * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03 + 1) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return (x ^ (x >> 31)) >> 32


def outcome_of(number: int) -> Outcome:
    """Deal ``number`` ends open (40 %), won (32 %) or lost (28 %)."""
    draw = mix(number, 1) % 100
    return Outcome.OPEN if draw < 40 else Outcome.WON if draw < 72 else Outcome.LOST


def cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def step(number: int, index: int) -> timedelta:
    """The time between two events of a deal: 1 to 20 days and 0 to 23 hours."""
    return timedelta(days=1 + mix(number, 40 + index) % 20, hours=mix(number, 50 + index) % 24)


#: Deals name their campaign by its id, one shared string per campaign (as code that opens
#: deals from a Campaign object passes ``campaign.id``).
CAMPAIGN_IDS = tuple(f"cmp-{index:03d}" for index in range(CAMPAIGNS))


def build_opportunity(number: int) -> Opportunity:
    """Deal ``number``: six events on a FixedClock, every choice a function of ``number``.

    Open deals: opened, four stage moves, an update (amount, and for a quarter of them a
    probability typed by hand).  Closed deals: opened, three stage moves, an update, then
    won or lost.  Created over the first 600 days of the 24 months; every event, close and
    expected close falls inside them.
    """
    outcome = outcome_of(number)
    currency = CURRENCIES[mix(number, 2) % 4]
    scale = THB_PER_USD if currency == "THB" else 1
    amount_cents = (50_000 + mix(number, 3) % 24_950_000) * scale  # 500.00 to 250,000.00 USD
    has_amount = mix(number, 4) % 50 != 0  # one deal in fifty has no amount yet
    clock = FixedClock(
        BASE_TIME + timedelta(days=mix(number, 5) % 600, minutes=mix(number, 6) % 600)
    )
    created = clock.now().date()
    unscheduled = outcome is Outcome.OPEN and mix(number, 7) % 100 == 0
    campaign = mix(number, 9) % 1000
    source = mix(number, 11) % 20
    account = ACCOUNTS[mix(number, 14) % len(ACCOUNTS)]
    opp = Opportunity.open(
        id=f"opp-{number:07d}",
        name=f"{account} - deal {number}",
        pipeline=PIPELINE,
        type=DEAL_TYPES[mix(number, 13) % len(DEAL_TYPES)],
        amount=Money(cents(amount_cents), currency) if has_amount else None,
        currency=currency,
        expected_close=None if unscheduled else created + timedelta(days=10 + mix(number, 8) % 116),
        # One deal in ten has no campaign; the rest favour the first campaigns.
        campaign_id=None
        if campaign < 100
        else CAMPAIGN_IDS[(campaign - 100) ** 2 * CAMPAIGNS // 900**2],
        lead_source=None if source == 0 else LEAD_SOURCES[source % len(LEAD_SOURCES)],
        owner=OWNERS[mix(number, 15) % len(OWNERS)],
        account=account,
        clock=clock,
    )
    stage = 0
    for index in range(4 if outcome is Outcome.OPEN else 3):
        clock.advance(step(number, index))
        target = 1 + mix(number, 20 + index) % (len(OPEN_STAGES) - 1)
        if target == stage:
            target = target % (len(OPEN_STAGES) - 1) + 1
        opp = opp.move_to(OPEN_STAGES[target], clock=clock)
        stage = target
    clock.advance(step(number, 5))
    changes: dict[str, Any] = {}
    if has_amount:
        percent = 80 + mix(number, 16) % 50  # the amount moves by -20 % to +30 %, never 0
        percent += percent >= 100
        changes["amount"] = Money(cents(amount_cents * percent // 100), currency)
    else:
        changes["description"] = "Scope to be agreed with the customer"
    if outcome is Outcome.OPEN and mix(number, 17) % 4 == 0:
        changes["probability"] = Decimal(5 * (1 + mix(number, 18) % 19))
    opp = opp.update(clock=clock, **changes)
    if outcome is not Outcome.OPEN:
        clock.advance(step(number, 6))
        if outcome is Outcome.WON:
            opp = opp.win(clock=clock)
        else:
            opp = opp.lose(reason=LOST_REASONS[mix(number, 19) % len(LOST_REASONS)], clock=clock)
    if opp.version != 6:
        raise AssertionError(f"the workload makes 6 events, not {opp.version}")
    return opp


def rate_entries() -> list[tuple[str, str, date, Decimal]]:
    """Monthly rates over the 24 months, quoted as markets quote them: EUR/USD (dollars per
    euro, so euros convert by multiplying) and USD/THB (baht per dollar, so baht convert by
    dividing, at 34 significant digits)."""
    entries = []
    for month in range(MONTHS):
        day = date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)
        entries.append(
            ("EUR", "USD", day, Decimal("1.0800") + Decimal((month * 37) % 11 - 5) / 1000)
        )
        entries.append(("USD", "THB", day, Decimal("35.20") + Decimal((month * 53) % 17 - 8) / 20))
    return entries


def make_campaigns() -> list[Campaign]:
    """200 campaigns over the 24 months, their costs in all three currencies; one in twenty
    has no actual cost yet."""
    campaigns = []
    for index in range(CAMPAIGNS):
        currency = ("USD", "EUR", "THB")[index % 3]
        scale = THB_PER_USD if currency == "THB" else 1
        start = FIRST_DAY + timedelta(days=(index * 3) % 600)
        cost = cents((200_000 + mix(index, 61) % 9_800_000) * scale)  # 2,000 to 100,000 USD
        campaigns.append(
            Campaign(
                id=CAMPAIGN_IDS[index],
                name=f"{CAMPAIGN_KINDS[index % len(CAMPAIGN_KINDS)]} {index}",
                type=CAMPAIGN_KINDS[index % len(CAMPAIGN_KINDS)],
                start=start,
                end=start + timedelta(days=30 + mix(index, 60) % 90),
                budgeted_cost=Money(cost, currency),
                actual_cost=None if index % 20 == 19 else Money(cost, currency),
            )
        )
    return campaigns


@dataclass(frozen=True)
class Workload:
    deals: list[Opportunity]
    campaigns: list[Campaign]
    rates: ExchangeRates
    clock: FixedClock
    today: date


# -- timing ----------------------------------------------------------------------------------


# (shared with the other benchmarks, in _timing.py)
@dataclass
class Case:
    """One contender: ``work`` is timed, ``check`` (untimed) looks at what it returned."""

    label: str
    role: str  # "floor", "library", "pandas" or "context"
    work: Callable[[], Any]
    check: Callable[[Any], None]
    samples: list[Sample] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [sample.wall for sample in self.samples]


def run_cases(cases: Sequence[Case], repeats: int, what: str) -> None:
    for turn in range(repeats):
        progress(f"{what}: repeat {turn + 1} of {repeats}")
        for case in rotated(cases, turn):
            result, sample = timed(case.work)
            case.check(result)
            del result
            case.samples.append(sample)


# -- exact arithmetic for the hand-written loops ---------------------------------------------

#: Sums and products of money stay exact (it traps if they ever would not).
EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
#: Divisions round to 34 significant digits, half up: what oppcore documents for its
#: divisions (reverse exchange rates, ratios, means, the square root of a variance).
DIVISION = Context(prec=34, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero])
ZERO = Decimal(0)
HUNDRED = Decimal(100)
DAY_MICROSECONDS = Decimal(86_400_000_000)

MonthKey = tuple[int, int] | None


def amount_of(money: Money | None) -> Decimal | None:
    if money is None:
        return None
    if money.currency != TARGET_CURRENCY:
        raise AssertionError(f"{money!r} is not in {TARGET_CURRENCY}")
    return money.amount


def month_key(day: date | None) -> MonthKey:
    return None if day is None else (day.year, day.month)


def in_order(keys: Sequence[T | None]) -> list[T | None]:
    """Keys sorted, the None key last (as oppcore orders its rows)."""
    present: list[Any] = sorted(key for key in keys if key is not None)
    return present + ([None] if None in keys else [])


# -- 1 and 2: forecast(period="month") -------------------------------------------------------

ForecastLine = tuple[MonthKey, int, Decimal, Decimal, Decimal, Decimal, int, Decimal, int]
FORECAST_COLUMNS = (
    "open_count",
    "pipeline",
    "best_case",
    "commit",
    "weighted",
    "won_count",
    "won",
    "lost_count",
)


def library_forecast(work: Workload) -> Table[Any]:
    return forecast(
        work.deals, period="month", currency=TARGET_CURRENCY, rates=work.rates, clock=work.clock
    )


def forecast_lines(table: Table[Any]) -> list[ForecastLine]:
    """oppcore's forecast rows in the hand loop's shape (period as (year, month))."""
    lines: list[ForecastLine] = []
    for row in table:
        key = None if row.period is None else (row.period.start.year, row.period.start.month)
        lines.append(
            (
                key,
                row.open_count,
                whole(row.pipeline),
                whole(row.best_case),
                whole(row.commit),
                whole(row.weighted),
                row.won_count,
                whole(row.won),
                row.lost_count,
            )
        )
    return lines


def whole(money: Money | None) -> Decimal:
    """A forecast amount, which is never None (zero when nothing adds to it)."""
    amount = amount_of(money)
    if amount is None:
        raise AssertionError("a forecast amount is None")
    return amount


def cached_conversion(work: Workload) -> Callable[[Money, date], Decimal]:
    """Conversion as someone who knows their rate table writes it: the rate of each
    (currency, day) looked up once with ``ExchangeRates.rate``, then multiplied (EUR/USD is
    quoted in dollars) or divided at 34 digits (USD/THB is quoted in baht), which is what
    ``ExchangeRates.convert`` does, to the last digit."""
    quoted = {(base, quote) for base, quote, _, _ in rate_entries()}
    rate_of = work.rates.rate
    cache: dict[tuple[str, date], tuple[Decimal, bool]] = {}

    def to_target(money: Money, day: date) -> Decimal:
        key = (money.currency, day)
        found = cache.get(key)
        if found is None:
            if (money.currency, TARGET_CURRENCY) in quoted:
                found = (rate_of(money.currency, TARGET_CURRENCY, on=day), False)
            else:
                found = (rate_of(TARGET_CURRENCY, money.currency, on=day), True)
            cache[key] = found
        rate, reverse = found
        return (
            DIVISION.divide(money.amount, rate) if reverse else EXACT.multiply(money.amount, rate)
        )

    return to_target


def hand_forecast(work: Workload, cache_rates: bool = False) -> list[ForecastLine]:
    """The forecast as a careful person writes it: one pass, Decimal sums per (year, month).

    Open deals by expected close, won and lost by close date; every amount converted with
    the same ``ExchangeRates.convert`` on the same day as oppcore (close date, expected
    close, or today); with ``cache_rates``, by ``cached_conversion`` instead.  The weighted
    sum adds amount x probability and divides by 100 once.
    """
    convert, today = work.rates.convert, work.today
    cached = cached_conversion(work) if cache_rates else None
    open_, won, omitted = Outcome.OPEN, Outcome.WON, ForecastCategory.OMITTED
    best_case, commit = ForecastCategory.BEST_CASE, ForecastCategory.COMMIT
    rows: dict[MonthKey, list[Any]] = {}
    with localcontext(EXACT):
        for opp in work.deals:
            stage = opp.stage
            outcome = stage.outcome
            closed = opp.closed_at
            if outcome is open_:
                day = opp.expected_close
                key = None if day is None else (day.year, day.month)
            else:
                day = None if closed is None else closed.date()
                key = None if day is None else (day.year, day.month)
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0, ZERO, ZERO, ZERO, ZERO, 0, ZERO, 0]
            if outcome is open_:
                row[0] += 1
                amount = opp.amount
                if amount is None:
                    continue
                if amount.currency == TARGET_CURRENCY:
                    value = amount.amount
                elif cached is None:
                    value = convert(amount, TARGET_CURRENCY, on=day or today).amount
                else:
                    value = cached(amount, day or today)
                category = stage.forecast_category
                if category is not omitted:
                    row[1] += value
                if category is best_case:
                    row[2] += value
                elif category is commit:
                    row[3] += value
                row[4] += value * opp.probability
            elif outcome is won:
                row[5] += 1
                amount = opp.amount
                if amount is None:
                    pass
                elif amount.currency == TARGET_CURRENCY:
                    row[6] += amount.amount
                elif cached is None:
                    on = day or opp.expected_close or today
                    row[6] += convert(amount, TARGET_CURRENCY, on=on).amount
                else:
                    row[6] += cached(amount, day or opp.expected_close or today)
            else:
                row[7] += 1
        return [
            (key, r[0], r[1], r[2], r[3], r[4] / HUNDRED, r[5], r[6], r[7])
            for key in in_order(list(rows))
            for r in (rows[key],)
        ]


def pandas_forecast(work: Workload) -> Any:
    """The notebook route: a DataFrame of one row per deal, amounts converted per deal with
    ``rates.convert`` and made floats, then ``groupby`` month and sum."""
    assert pandas is not None
    convert, today = work.rates.convert, work.today
    records = []
    for opp in work.deals:
        stage = opp.stage
        closed = opp.closed_at
        day = opp.expected_close if closed is None else closed.date()
        amount = opp.amount
        records.append(
            (
                day,
                stage.outcome.value,
                stage.forecast_category.value,
                math.nan
                if amount is None
                else float(convert(amount, TARGET_CURRENCY, on=day or today).amount),
                float(opp.probability),
            )
        )
    frame = pandas.DataFrame(
        records, columns=["day", "outcome", "category", "amount", "probability"]
    )
    return _forecast_groupby(frame)


def pandas_forecast_vectorised(work: Workload) -> Any:
    """The notebook route with the conversion done in pandas: raw amounts as floats, then a
    merge with a table of the same monthly rates on (currency, month of the conversion
    day).  It relies on the rates changing only on the first of a month, as they do here."""
    assert pandas is not None
    today = work.today
    records = []
    for opp in work.deals:
        stage = opp.stage
        closed = opp.closed_at
        day = opp.expected_close if closed is None else closed.date()
        amount = opp.amount
        records.append(
            (
                day,
                day or today,
                opp.currency,
                math.nan if amount is None else float(amount.amount),
                stage.outcome.value,
                stage.forecast_category.value,
                float(opp.probability),
            )
        )
    frame = pandas.DataFrame(
        records,
        columns=["day", "rate_day", "currency", "raw", "outcome", "category", "probability"],
    )
    frame["amount"] = frame["raw"] * _rate_factors(frame)
    return _forecast_groupby(frame)


def _rate_factors(frame: Any) -> Any:
    """Dollars per unit of each row's currency in the month of its conversion day."""
    assert pandas is not None
    months = pandas.to_datetime(frame["rate_day"]).dt.to_period("M")
    rates = pandas.DataFrame(_RATE_ROWS, columns=["currency", "month", "factor"])
    rates["month"] = pandas.PeriodIndex(rates["month"], freq="M")
    keys = pandas.DataFrame({"currency": frame["currency"], "month": months})
    merged = keys.merge(rates, on=["currency", "month"], how="left")
    return merged["factor"].to_numpy()


def _rate_rows() -> list[tuple[str, str, float]]:
    rows = []
    for base, quote, day, rate in rate_entries():
        month = f"{day:%Y-%m}"
        if quote == TARGET_CURRENCY:
            rows.append((base, month, float(rate)))
        else:
            rows.append((quote, month, 1 / float(rate)))
    months = sorted({month for _, month, _ in rows})
    return rows + [(TARGET_CURRENCY, month, 1.0) for month in months]


_RATE_ROWS = _rate_rows()


def _forecast_groupby(frame: Any) -> Any:
    frame["period"] = pandas.to_datetime(frame["day"]).dt.to_period("M")
    amount = frame["amount"]
    is_open = frame["outcome"].eq("open")
    is_won = frame["outcome"].eq("won")
    category = frame["category"]
    grouped = frame.assign(
        open_count=is_open,
        pipeline=amount.where(is_open & category.ne("omitted"), 0.0),
        best_case=amount.where(is_open & category.eq("best_case"), 0.0),
        commit=amount.where(is_open & category.eq("commit"), 0.0),
        weighted=(amount * frame["probability"] / 100).where(is_open, 0.0),
        won_count=is_won,
        won=amount.where(is_won, 0.0),
        lost_count=frame["outcome"].eq("lost"),
    ).groupby("period", dropna=False, sort=True)[list(FORECAST_COLUMNS)]
    return grouped.sum()


def check_pandas_forecast(frame: Any, expected: list[ForecastLine]) -> None:
    """Same rows as the hand loop; counts equal, money equal to float precision."""
    lines = {line[0]: line for line in expected}
    seen = set()
    for period, row in frame.iterrows():
        key = None if pandas.isna(period) else (period.year, period.month)
        want: Sequence[Any] | None = lines.get(key)
        if want is None:
            raise AssertionError(f"pandas gave a period {period} the hand loop has not")
        seen.add(key)
        for index, name in enumerate(FORECAST_COLUMNS, start=1):
            close_enough(float(row[name]), want[index], f"pandas forecast {period} {name}")
    if seen != set(lines):
        raise AssertionError("pandas lacks some of the hand loop's periods")


def close_enough(got: float | None, want: Decimal | int | None, what: str) -> None:
    if want is None or got is None or (isinstance(got, float) and math.isnan(got)):
        missing = got is None or (isinstance(got, float) and math.isnan(got))
        if (want is None) != missing:
            raise AssertionError(f"{what}: {got} where the hand loop has {want}")
        return
    if not math.isclose(got, float(want), rel_tol=1e-9, abs_tol=1e-6):
        raise AssertionError(f"{what}: {got} where the hand loop has {want}")


# -- 1 and 2: effectiveness(by="campaign") ---------------------------------------------------

EffectivenessLine = tuple[Any, ...]
EFFECTIVENESS_COLUMNS = (
    "key",
    "opportunities",
    "open",
    "won",
    "lost",
    "win_rate",
    "win_rate_all",
    "won_revenue",
    "pipeline",
    "weighted",
    "avg_won_deal",
    "avg_cycle_days",
    "cost",
    "roi",
    "cost_per_opportunity",
    "cost_per_won",
)


def library_effectiveness(work: Workload) -> Table[Any]:
    return effectiveness(
        work.deals,
        by="campaign",
        campaigns=work.campaigns,
        currency=TARGET_CURRENCY,
        rates=work.rates,
        clock=work.clock,
    )


def effectiveness_lines(table: Table[Any]) -> list[EffectivenessLine]:
    return [
        tuple(
            amount_of(value) if isinstance(value, Money) else value
            for value in (getattr(row, name) for name in EFFECTIVENESS_COLUMNS)
        )
        for row in table
    ]


def hand_effectiveness(work: Workload, cache_rates: bool = False) -> list[EffectivenessLine]:
    """Campaign effectiveness as a careful person writes it: one pass with a list of running
    totals per campaign, then the ratios per row.

    Amounts convert as in the forecast; each won deal's cycle is its days from opening to
    close at 34 digits (as oppcore rounds each one) and the mean divides their exact sum.
    Each campaign's actual cost converts on its end date (else start, else today).  With
    ``cache_rates``, deals' amounts convert by ``cached_conversion``.
    """
    convert, today = work.rates.convert, work.today
    cached = cached_conversion(work) if cache_rates else None
    open_, won, omitted = Outcome.OPEN, Outcome.WON, ForecastCategory.OMITTED
    divide = DIVISION.divide
    # opportunities, open, won, lost, won revenue, pipeline, amount x probability,
    # won with an amount, sum of cycle days, won with a close time
    tallies: dict[str | None, list[Any]] = {
        campaign.id: [0, 0, 0, 0, ZERO, ZERO, ZERO, 0, ZERO, 0] for campaign in work.campaigns
    }
    with localcontext(EXACT):
        for opp in work.deals:
            key = opp.campaign_id
            tally = tallies.get(key)
            if tally is None:
                tally = tallies[key] = [0, 0, 0, 0, ZERO, ZERO, ZERO, 0, ZERO, 0]
            tally[0] += 1
            stage = opp.stage
            outcome = stage.outcome
            if outcome is open_:
                tally[1] += 1
                amount = opp.amount
                if amount is not None:
                    if amount.currency == TARGET_CURRENCY:
                        value = amount.amount
                    elif cached is None:
                        on = opp.expected_close or today
                        value = convert(amount, TARGET_CURRENCY, on=on).amount
                    else:
                        value = cached(amount, opp.expected_close or today)
                    if stage.forecast_category is not omitted:
                        tally[5] += value
                    tally[6] += value * opp.probability
            elif outcome is won:
                tally[2] += 1
                closed = opp.closed_at
                amount = opp.amount
                if amount is not None:
                    day = closed.date() if closed is not None else opp.expected_close or today
                    if amount.currency == TARGET_CURRENCY:
                        tally[4] += amount.amount
                    elif cached is None:
                        tally[4] += convert(amount, TARGET_CURRENCY, on=day).amount
                    else:
                        tally[4] += cached(amount, day)
                    tally[7] += 1
                if closed is not None:
                    delta = closed - opp.created_at
                    micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
                    tally[8] += divide(Decimal(micro), DAY_MICROSECONDS)
                    tally[9] += 1
            else:
                tally[3] += 1
        costs: dict[str | None, Decimal | None] = {}
        for campaign in work.campaigns:
            spent = campaign.actual_cost
            on = campaign.end or campaign.start or today
            costs[campaign.id] = (
                None if spent is None else convert(spent, TARGET_CURRENCY, on=on).amount
            )
        lines = []
        for key in in_order(list(tallies)):
            count, opened, won_count, lost, revenue, pipeline, weighted, priced, days, cycles = (
                tallies[key]
            )
            cost = costs.get(key)
            lines.append(
                (
                    key,
                    count,
                    opened,
                    won_count,
                    lost,
                    divide(Decimal(won_count), Decimal(won_count + lost))
                    if won_count + lost
                    else None,
                    divide(Decimal(won_count), Decimal(count)) if count else None,
                    revenue,
                    pipeline,
                    weighted / HUNDRED,
                    divide(revenue, Decimal(priced)) if priced else None,
                    divide(days, Decimal(cycles)) if cycles else None,
                    cost,
                    divide(revenue - cost, cost) if cost else None,
                    divide(cost, Decimal(count)) if cost is not None and count else None,
                    divide(cost, Decimal(won_count)) if cost is not None and won_count else None,
                )
            )
        return lines


def _effectiveness_records(work: Workload) -> list[tuple[Any, ...]]:
    convert, today = work.rates.convert, work.today
    records = []
    for opp in work.deals:
        stage = opp.stage
        closed = opp.closed_at
        amount = opp.amount
        day = opp.expected_close if closed is None else closed.date()
        records.append(
            (
                opp.campaign_id,
                stage.outcome.value,
                stage.forecast_category.value,
                math.nan
                if amount is None
                else float(convert(amount, TARGET_CURRENCY, on=day or today).amount),
                float(opp.probability),
                math.nan if closed is None else (closed - opp.created_at).total_seconds() / 86_400,
            )
        )
    return records


def pandas_effectiveness(work: Workload) -> Any:
    """The notebook route: a DataFrame of one row per deal (amounts converted per deal with
    ``rates.convert``, as floats), ``groupby`` campaign, then the campaign costs joined in
    and the ratios computed column-wise."""
    assert pandas is not None
    frame = pandas.DataFrame(
        _effectiveness_records(work),
        columns=["campaign", "outcome", "category", "amount", "probability", "cycle"],
    )
    amount, outcome = frame["amount"], frame["outcome"]
    is_open, is_won = outcome.eq("open"), outcome.eq("won")
    grouped = (
        frame.assign(
            open=is_open,
            won=is_won,
            lost=outcome.eq("lost"),
            won_revenue=amount.where(is_won, 0.0),
            pipeline=amount.where(is_open & frame["category"].ne("omitted"), 0.0),
            weighted=(amount * frame["probability"] / 100).where(is_open, 0.0),
            priced=is_won & amount.notna(),
            cycle=frame["cycle"].where(is_won),
        )
        .groupby("campaign", dropna=False)
        .agg(
            opportunities=("outcome", "size"),
            open=("open", "sum"),
            won=("won", "sum"),
            lost=("lost", "sum"),
            won_revenue=("won_revenue", "sum"),
            pipeline=("pipeline", "sum"),
            weighted=("weighted", "sum"),
            priced=("priced", "sum"),
            avg_cycle_days=("cycle", "mean"),
        )
    )
    costs = pandas.DataFrame(
        [
            (
                campaign.id,
                math.nan
                if campaign.actual_cost is None
                else float(
                    work.rates.convert(
                        campaign.actual_cost,
                        TARGET_CURRENCY,
                        on=campaign.end or campaign.start or work.today,
                    ).amount
                ),
            )
            for campaign in work.campaigns
        ],
        columns=["campaign", "cost"],
    ).set_index("campaign")
    table = grouped.join(costs, how="outer")
    counts = ["opportunities", "open", "won", "lost", "priced"]
    table[counts] = table[counts].fillna(0)
    table[["won_revenue", "pipeline", "weighted"]] = table[
        ["won_revenue", "pipeline", "weighted"]
    ].fillna(0.0)
    closed = table["won"] + table["lost"]
    cost = table["cost"]
    return table.assign(
        win_rate=table["won"] / closed.where(closed > 0),
        win_rate_all=table["won"] / table["opportunities"].where(table["opportunities"] > 0),
        avg_won_deal=table["won_revenue"] / table["priced"].where(table["priced"] > 0),
        roi=(table["won_revenue"] - cost) / cost.where(cost > 0),
        cost_per_opportunity=cost / table["opportunities"].where(table["opportunities"] > 0),
        cost_per_won=cost / table["won"].where(table["won"] > 0),
    )


def check_pandas_effectiveness(frame: Any, expected: list[EffectivenessLine]) -> None:
    lines = {line[0]: line for line in expected}
    seen = set()
    for campaign, row in frame.iterrows():
        key = None if pandas.isna(campaign) else campaign
        want = lines.get(key)
        if want is None:
            raise AssertionError(f"pandas gave a campaign {campaign!r} the hand loop has not")
        seen.add(key)
        for index, name in enumerate(EFFECTIVENESS_COLUMNS[1:], start=1):
            got = row[name]
            close_enough(
                None if pandas.isna(got) else float(got),
                want[index],
                f"pandas effectiveness {key} {name}",
            )
    if seen != set(lines):
        raise AssertionError("pandas lacks some of the hand loop's campaigns")


# -- 1 and 2: measure and print --------------------------------------------------------------


def equal_lines(got: Sequence[tuple[Any, ...]], want: Sequence[tuple[Any, ...]], what: str) -> None:
    """Exactly equal, row by row and field by field (Decimal compares by value)."""
    if len(got) != len(want):
        raise AssertionError(f"{what}: oppcore has {len(got)} rows, the hand loop {len(want)}")
    for mine, theirs in zip(got, want, strict=True):
        if mine != theirs:
            for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
                if a != b:
                    raise AssertionError(
                        f"{what}: row {mine[0]!r} field {index}: oppcore {a!r}, hand loop {b!r}"
                    )


def measure_against(
    work: Workload,
    repeats: int,
    name: str,
    library: Callable[[Workload], Table[Any]],
    lines_of: Callable[[Table[Any]], list[tuple[Any, ...]]],
    hand: Callable[[Workload, bool], list[tuple[Any, ...]]],
    routes: Sequence[tuple[str, Callable[[Workload], Any], Callable[[Any, Any], None]]],
) -> tuple[list[Case], str]:
    """Time oppcore, the hand loop and the pandas routes interleaved; check every result."""
    progress(f"{name}: checking the hand loop against oppcore (untimed)")
    expected = hand(work, False)
    equal_lines(lines_of(library(work)), expected, name)
    note = f"checked: both hand loops' {len(expected)} rows equal oppcore's exactly"
    first: list[Any] = []

    def check_library(table: Any) -> None:
        if not first:
            first.append(table)
        elif table != first[0]:
            raise AssertionError(f"{name} gave another answer on a later repeat")

    def check_hand(lines: Any) -> None:
        if lines != expected:
            raise AssertionError(f"a {name} hand loop gave another answer than oppcore")

    cases = [
        Case("hand-written loop (floor)", "floor", lambda: hand(work, False), check_hand),
        Case(f"oppcore {name}", "library", lambda: library(work), check_library),
        Case(
            "  floor, rate cached per currency+day",
            "context",
            lambda: hand(work, True),
            check_hand,
        ),
    ]
    cases.extend(route_case(work, label, route, check, expected) for label, route, check in routes)
    if routes:
        note += "; pandas's equal to float precision"
    run_cases(cases, repeats, name)
    return cases, note


def route_case(
    work: Workload,
    label: str,
    route: Callable[[Workload], Any],
    check: Callable[[Any, Any], None],
    expected: Any,
) -> Case:
    return Case(label, "pandas", lambda: route(work), lambda frame: check(frame, expected))


def report_against(
    count: int, title: str, cases: list[Case], note: str, pandas_labels: Sequence[str]
) -> list[str]:
    floor = next(case for case in cases if case.role == "floor")
    library = next(case for case in cases if case.role == "library")
    lines = [
        f"   {title}",
        f"   {'':47} {'median s':>8} {'min..max s':>13} {'us/deal':>8} {'x floor':>8} "
        f"{'paired':>11}  verdict",
    ]
    for case in (floor, library):
        walls = case.walls()
        row = (
            f"   {case.label:47} {median(walls):8.3f} {spread(walls, digits=3):>13} "
            f"{median(walls) / count * 1e6:8.2f} "
        )
        if case is floor:
            row += f"{'1.00x':>8}"
        else:
            ratio = median(walls) / median(floor.walls())
            paired = [w / f for w, f in zip(walls, floor.walls(), strict=True)]
            row += (
                f"{ratio:7.2f}x {spread(paired):>11}  "
                f"{verdict(ratio, FLOOR_TARGET, paired, at_most=True)}"
            )
        lines.append(row)
    for case in cases:
        if case.role != "context":
            continue
        walls = case.walls()
        lines.append(
            f"   {case.label + ' (ctx)':47} {median(walls):8.3f} {spread(walls, digits=3):>13} "
            f"{median(walls) / count * 1e6:8.2f} {median(walls) / median(floor.walls()):7.2f}x "
            f"{'':11}  oppcore is {median(library.walls()) / median(walls):.2f}x this"
        )
    cpu = median([s.cpu for s in library.samples]) / median([s.cpu for s in floor.samples])
    lines.append(
        f"   {'oppcore / floor in CPU time (context)':47} {'':8} {'':13} {'':8} {cpu:7.2f}x"
    )
    routes = [case for case in cases if case.role == "pandas"]
    if routes:
        lines.append(
            f"   {'':47} {'median s':>8} {'min..max s':>13} {'us/deal':>8} "
            f"{'x oppcore':>9} {'paired':>10}  verdict (at least {PANDAS_TARGET}x)"
        )
        for case, label in zip(routes, pandas_labels, strict=True):
            walls = case.walls()
            ratio = median(walls) / median(library.walls())
            paired = [p / o for p, o in zip(walls, library.walls(), strict=True)]
            lines.append(
                f"   {label:47} {median(walls):8.3f} {spread(walls, digits=3):>13} "
                f"{median(walls) / count * 1e6:8.2f} {ratio:8.2f}x {spread(paired):>10}  "
                + (
                    "(no verdict)"
                    if "(context)" in label
                    else verdict(ratio, PANDAS_TARGET, paired, at_most=False)
                )
            )
    lines.append(f"   ({note})")
    return lines


# -- 3. forecast_range -----------------------------------------------------------------------


def open_numbers(count: int, wanted: int) -> list[int]:
    """The numbers of the first ``wanted`` open deals with an amount, from 0 on (deals
    numbered ``count`` or more are built on purpose)."""
    numbers: list[int] = []
    number = 0
    while len(numbers) < wanted:
        if outcome_of(number) is Outcome.OPEN and mix(number, 4) % 50 != 0:
            numbers.append(number)
        number += 1
    return numbers


def hand_range(
    work: Workload, deals: Sequence[Opportunity]
) -> dict[MonthKey, tuple[Decimal, Decimal]]:
    """Exact mean and standard deviation per month, each deal won with its probability:
    mean = sum(a p), variance = sum(a^2 p (1 - p)), with p = probability / 100 (summed
    as percentages and scaled once)."""
    convert, today = work.rates.convert, work.today
    sums: dict[MonthKey, list[Decimal]] = {}
    with localcontext(EXACT):
        for opp in deals:
            amount = opp.amount
            if amount is None or not opp.is_open:
                continue
            day = opp.expected_close
            key = None if day is None else (day.year, day.month)
            value = (
                amount.amount
                if amount.currency == TARGET_CURRENCY
                else convert(amount, TARGET_CURRENCY, on=day or today).amount
            )
            chance = opp.probability
            totals = sums.get(key)
            if totals is None:
                totals = sums[key] = [ZERO, ZERO]
            totals[0] += value * chance
            totals[1] += value * value * chance * (HUNDRED - chance)
        return {
            key: (mean / HUNDRED, DIVISION.sqrt(variance / 10_000))
            for key, (mean, variance) in sums.items()
        }


def measure_range(work: Workload, repeats: int, deal_count: int, simulations: int) -> list[str]:
    numbers = open_numbers(len(work.deals), deal_count)
    built = sum(number >= len(work.deals) for number in numbers)
    progress(f"forecast_range: {deal_count:,} open deals ({built:,} built for it)")
    deals = [
        work.deals[number] if number < len(work.deals) else build_opportunity(number)
        for number in numbers
    ]

    def library_range() -> Table[Any]:
        return forecast_range(
            deals,
            period="month",
            simulations=simulations,
            seed=RANGE_SEED,
            currency=TARGET_CURRENCY,
            rates=work.rates,
            clock=work.clock,
        )

    def library_forecast_of_range() -> Table[Any]:
        return forecast(
            deals, period="month", currency=TARGET_CURRENCY, rates=work.rates, clock=work.clock
        )

    exact = hand_range(work, deals)
    ranged = library_range()
    for row in ranged:
        key = None if row.period is None else (row.period.start.year, row.period.start.month)
        mean, stdev = exact[key]
        if (amount_of(row.mean), amount_of(row.stdev)) != (mean, stdev):
            raise AssertionError(f"forecast_range {row.period}: mean/stdev differ from exact")
    if len(ranged) != len(exact):
        raise AssertionError("forecast_range has other periods than the exact loop")
    weighted = {line[0]: line[5] for line in forecast_lines(library_forecast_of_range()) if line[1]}
    if weighted != {key: mean for key, (mean, _) in exact.items()}:
        raise AssertionError("forecast's weighted column differs from the exact means")

    def same_range(table: Any) -> None:
        if table != ranged:
            raise AssertionError("forecast_range with the same seed gave other quantiles")

    def same_exact(result: Any) -> None:
        if result != exact:
            raise AssertionError("the exact loop gave another answer")

    cases = [
        Case(
            f"oppcore forecast_range(simulations={simulations:,})",
            "library",
            library_range,
            same_range,
        ),
        Case(
            "exact mean and stdev, hand-written loop",
            "floor",
            lambda: hand_range(work, deals),
            same_exact,
        ),
        Case(
            "oppcore forecast (weighted = the mean)",
            "context",
            library_forecast_of_range,
            lambda _: None,
        ),
    ]
    run_cases(cases, repeats, "forecast_range")
    exact_walls = cases[1].walls()
    lines = [
        f"3. forecast_range over {deal_count:,} open deals in {len(exact)} months, "
        f"{simulations:,} simulations, seed {RANGE_SEED}: no target, figures only",
        f"   {'':47} {'median s':>8} {'min..max s':>13} {'x exact':>8}",
    ]
    for case in cases:
        walls = case.walls()
        lines.append(
            f"   {case.label:47} {median(walls):8.3f} {spread(walls, digits=3):>13} "
            f"{median(walls) / median(exact_walls):7.2f}x"
        )
    busiest = max(ranged, key=lambda row: row.mean.amount)
    quantiles = ", ".join(
        f"p{level * 100:.0f} {money.rounded().amount:,}"
        for level, money in busiest.quantiles.items()
    )
    lines.append(
        "   (checked: mean and stdev equal the exact loop's, and forecast's weighted column; the "
        "same seed gives the same quantiles every repeat)"
    )
    lines.append(
        f"   (busiest month {busiest.period}: mean {busiest.mean.rounded().amount:,}, stdev "
        f"{busiest.stdev.rounded().amount:,}, {quantiles})"
    )
    return lines


# -- 4. memory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    deals: list[Opportunity]
    traced: int  # the first ``traced`` deals were built under tracemalloc
    current: int  # traced bytes after building them
    peak: int  # traced bytes at the peak while building them
    traced_seconds: float
    untraced_seconds: float
    rss_growth: int | None  # resident memory added by the untraced deals, if known


def resident_bytes() -> int | None:
    """The process's resident set size (Linux), or None where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def build_deals(count: int, traced: int) -> Built:
    """Build deals 0 .. ``count - 1``; the first ``traced`` under tracemalloc.

    tracemalloc makes building about ten times slower, so a large run traces a prefix and
    builds the rest plainly; the bytes per deal do not depend on how many there are (the
    workload is the same recipe for every number).  The collector is paused while building
    (no cycles are made) and tracing starts after everything shared (pipeline, rates,
    campaigns) exists, so the bytes are the deals' own, and the list that holds them.
    """
    deals: list[Opportunity] = []
    every = max(count // 10, 1)

    def build(first: int, stop: int, started: float) -> None:
        for number in range(first, stop):
            deals.append(build_opportunity(number))
            if (number + 1) % every == 0 or number + 1 == traced:
                progress(
                    f"  built {number + 1:,} of {count:,} ({time.perf_counter() - started:.0f} s"
                    + (" under tracemalloc)" if number < traced else ")")
                )

    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            build(0, traced, started)
            traced_seconds = time.perf_counter() - started
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        before = resident_bytes()
        started = time.perf_counter()
        build(traced, count, started)
        untraced_seconds = time.perf_counter() - started
        after = resident_bytes()
    finally:
        gc.enable()
    growth = None if before is None or after is None or count == traced else after - before
    return Built(deals, traced, current, peak, traced_seconds, untraced_seconds, growth)


def allocation_sites(sample: int, top: int) -> list[str]:
    """Where a deal's bytes come from: ``sample`` deals built under tracemalloc, grouped by
    the line that allocated them."""
    gc.collect()
    tracemalloc.start()
    deals = [build_opportunity(number) for number in range(sample)]
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics(
        "lineno"
    )
    total = sum(stat.size for stat in stats)
    lines = [
        f"   where the bytes go ({sample:,} deals built under tracemalloc, by allocating line; "
        f"{total / sample:,.0f} bytes per deal):"
    ]
    for stat in stats[:top]:
        frame = stat.traceback[0]
        source = linecache.getline(frame.filename, frame.lineno).strip()
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        lines.append(
            f"   {stat.size / sample:8,.0f} B {stat.count / sample:5.1f} blocks  {where:22} "
            f"{source[:58]}"
        )
    del deals
    return lines


def report_memory(built: Built, sites: list[str]) -> list[str]:
    count, traced = len(built.deals), built.traced
    per_current, per_peak = built.current / traced, built.peak / traced
    which = (
        f"all {count:,} built under it"
        if traced == count
        else f"the first {traced:,} of the {count:,} built under it"
    )
    lines = [
        f"4. Memory of the opportunities x 6 events (tracemalloc, {which}): "
        f"under {MEMORY_TARGET:,} bytes per opportunity",
        f"   {'':47} {'bytes':>15} {'per deal':>9}  verdict",
        f"   {'current after building (what stays)':47} {built.current:15,} {per_current:9,.0f}",
        f"   {'peak while building':47} {built.peak:15,} {per_peak:9,.0f}  "
        f"{'PASS' if per_peak < MEMORY_TARGET else 'MISS'}",
    ]
    if built.rss_growth is not None:
        rest = count - traced
        lines.append(
            f"   {'resident memory added by the other deals (ctx)':47} {built.rss_growth:15,} "
            f"{built.rss_growth / rest:9,.0f}"
        )
    return [*lines, *sites]


# -- profiling -------------------------------------------------------------------------------


def profile(work: Workload, top: int) -> list[str]:
    lines = ["Profile of one library call each (cProfile; its overhead inflates all)"]
    calls: list[tuple[str, Callable[[], Any]]] = [
        ('forecast(period="month")', lambda: library_forecast(work)),
        ('effectiveness(by="campaign")', lambda: library_effectiveness(work)),
    ]
    for name, call in calls:
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        call()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        lines.append(f"--- {name}, by tottime")
        lines.extend(
            line
            for line in text.getvalue().splitlines()
            if line.strip() and not line.startswith("   Ordered by")
        )
    return lines


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="oppcore analytics benchmarks: medians and ratios, library vs floor and pandas."
    )
    parser.add_argument("--opportunities", type=int, help="deals in memory (1,000,000)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (5)")
    parser.add_argument("--range-deals", type=int, help="open deals for forecast_range (10,000)")
    parser.add_argument("--simulations", type=int, help="forecast_range simulations (10,000)")
    parser.add_argument(
        "--memory-deals",
        type=int,
        help="how many of the deals are built under tracemalloc (all of them up to 100,000; "
        "tracing makes building about ten times slower)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20,000 opportunities, 3 repeats (options given as well win)",
    )
    parser.add_argument(
        "--only",
        choices=("forecast", "effectiveness", "range", "memory"),
        action="append",
        help="run only these measurements (repeatable; the deals are always built, under "
        "tracemalloc, so 'memory' costs nothing extra)",
    )
    parser.add_argument(
        "--no-pandas", action="store_true", help="skip the pandas routes of measurement 2"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile the library calls: top N rows",
    )
    args = parser.parse_args(argv)
    defaults = (20_000, 3, 10_000, 10_000) if args.quick else (1_000_000, 5, 10_000, 10_000)
    if args.memory_deals is None:
        args.memory_deals = min(args.opportunities or defaults[0], 100_000)
    for name, default in zip(
        ("opportunities", "repeats", "range_deals", "simulations", "memory_deals"),
        (*defaults, 0),
        strict=True,
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def describe(work: Workload) -> str:
    deals = work.deals
    outcomes = dict.fromkeys(Outcome, 0)
    currencies: dict[str | None, int] = {}
    for opp in deals:
        outcomes[opp.stage.outcome] += 1
        currencies[opp.currency] = currencies.get(opp.currency, 0) + 1
    unpriced = sum(opp.amount is None for opp in deals)
    unscheduled = sum(opp.is_open and opp.expected_close is None for opp in deals)
    campaigns = len({opp.campaign_id for opp in deals} - {None})
    share = ", ".join(f"{o.value} {n / len(deals):.1%}" for o, n in outcomes.items())
    money = ", ".join(f"{c} {n / len(deals):.0%}" for c, n in sorted(currencies.items(), key=str))
    return (
        f"workload: {share}; {money}; {unpriced / len(deals):.1%} without an amount, "
        f"{unscheduled:,} open without an expected close; {campaigns} of {CAMPAIGNS} campaigns "
        f"have deals, {sum(opp.campaign_id is None for opp in deals) / len(deals):.0%} of deals "
        "have none"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    count: int = args.opportunities
    wanted = set(args.only or ("forecast", "effectiveness", "range", "memory"))
    use_pandas = pandas is not None and not args.no_pandas
    started = time.perf_counter()
    header = [
        f"oppcore analytics benchmarks: {count:,} opportunities x 6 events in memory "
        f"(Pipeline.salesforce(), FixedClock), {CAMPAIGNS} campaigns, {len(LEAD_SOURCES)} "
        f"lead sources, USD/EUR/THB converted to {TARGET_CURRENCY} with monthly ExchangeRates "
        f"over {MONTHS} months, {args.repeats} repeats",
        f"oppcore {oppcore.__version__}, Python {platform.python_version()}, "
        f"pandas {package_version('pandas')}, numpy {package_version('numpy')}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {source_state()}",
        "Figures are medians over the repeats; 'paired' is the range of the ratio within each "
        "repeat; contenders run interleaved.",
    ]
    print("\n".join(header), flush=True)
    rates = ExchangeRates(rate_entries())
    campaigns = make_campaigns()
    clock = FixedClock(ANALYSIS_TIME)
    progress(f"allocation sample: {ALLOCATION_SAMPLE:,} deals")
    sites = allocation_sites(min(ALLOCATION_SAMPLE, count), 12)
    traced = min(args.memory_deals, count)
    progress(f"building {count:,} opportunities, the first {traced:,} under tracemalloc")
    built = build_deals(count, traced)
    gc.collect()
    gc.freeze()  # the deals live all run long: keep full collections from rescanning them
    work = Workload(built.deals, campaigns, rates, clock, ANALYSIS_TIME.date())
    print(describe(work), flush=True)
    rest = count - traced
    timing = f"built {count:,} deals in {built.traced_seconds + built.untraced_seconds:,.0f} s: "
    timing += f"{traced:,} under tracemalloc in {built.traced_seconds:,.0f} s "
    timing += f"({built.traced_seconds / traced * 1e6:,.0f} us each)"
    if rest:
        timing += (
            f", {rest:,} without it in {built.untraced_seconds:,.0f} s "
            f"({built.untraced_seconds / rest * 1e6:,.0f} us each)"
        )
    print(timing, flush=True)

    print(
        f"\n1. Library at most {FLOOR_TARGET}x a hand-written loop over the same objects "
        f"(the pure-Python floor)\n2. Library at least {PANDAS_TARGET}x faster than a notebook "
        "user's pandas route (DataFrame from the deals + groupby, timed together)",
        flush=True,
    )
    routes_forecast: list[tuple[str, Callable[[Workload], Any], Callable[[Any, Any], None]]] = []
    routes_effectiveness: list[
        tuple[str, Callable[[Workload], Any], Callable[[Any, Any], None]]
    ] = []
    if use_pandas:
        routes_forecast = [
            ("pandas: per-deal rates.convert, floats", pandas_forecast, check_pandas_forecast),
            (
                "pandas: conversion merged in (context)",
                pandas_forecast_vectorised,
                check_pandas_forecast,
            ),
        ]
        routes_effectiveness = [
            (
                "pandas: per-deal rates.convert, floats",
                pandas_effectiveness,
                check_pandas_effectiveness,
            )
        ]
    else:
        print("   (pandas is not installed or --no-pandas: measurement 2 skipped)")
    if "forecast" in wanted:
        cases, note = measure_against(
            work,
            args.repeats,
            "forecast",
            library_forecast,
            forecast_lines,
            hand_forecast,
            routes_forecast,
        )
        print(
            "\n".join(
                report_against(
                    count,
                    f'forecast(period="month", currency="{TARGET_CURRENCY}", rates=...)',
                    cases,
                    note,
                    [label for label, _, _ in routes_forecast],
                )
            ),
            flush=True,
        )
    if "effectiveness" in wanted:
        cases, note = measure_against(
            work,
            args.repeats,
            "effectiveness",
            library_effectiveness,
            effectiveness_lines,
            hand_effectiveness,
            routes_effectiveness,
        )
        print(
            "\n".join(
                report_against(
                    count,
                    f'effectiveness(by="campaign", campaigns=..., currency="{TARGET_CURRENCY}", '
                    "rates=...)",
                    cases,
                    note,
                    [label for label, _, _ in routes_effectiveness],
                )
            ),
            flush=True,
        )
    if "range" in wanted:
        print()
        print(
            "\n".join(measure_range(work, args.repeats, args.range_deals, args.simulations)),
            flush=True,
        )
    if "memory" in wanted:
        print()
        print("\n".join(report_memory(built, sites)), flush=True)
    if args.profile:
        print()
        print("\n".join(profile(work, args.profile)), flush=True)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
