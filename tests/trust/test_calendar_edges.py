"""Issue 11, case 7: the edges of the calendar.

ERP exports write 9999-12-31 for "no date".  Every day from 1 January of year 1 to
31 December 9999 has its period, in every grain and fiscal calendar; a period that would
run past an edge is cut there.  Analytics and the report work with such deals, and with
``as_of`` at either edge, in any zone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import FixedClock, Money, Opportunity, open_repository
from oppcore.analytics import (
    FiscalCalendar,
    Period,
    effectiveness,
    forecast,
    forecast_range,
    period_of,
    pipeline_movement,
    sales_cycle,
    snapshot,
    stale,
    time_in_stage,
)

UTC = timezone.utc
CLOCK = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
GRAINS = ("week", "month", "quarter", "year")
CALENDARS = (None, *(FiscalCalendar(start_month=m) for m in range(1, 13)))
ZONES: tuple[tzinfo, ...] = (
    UTC,
    timezone(timedelta(hours=14)),
    timezone(-timedelta(hours=12)),
    ZoneInfo("Pacific/Kiritimati"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Bangkok"),
)


# -- periods ----------------------------------------------------------------------------------


@given(
    day=st.dates(min_value=date.min, max_value=date.max)
    | st.sampled_from([date.min, date.max, date(9999, 12, 27), date(1, 1, 7)]),
    grain=st.sampled_from(GRAINS),
    calendar=st.sampled_from(CALENDARS),
)
def test_every_day_of_the_calendar_falls_in_a_period_that_holds_it(
    day: date, grain: Any, calendar: FiscalCalendar | None
) -> None:
    """period_of(d) never raises, contains d, and every day of it has the same period."""
    period = period_of(day, grain, calendar)

    assert type(period.start) is date
    assert type(period.end) is date
    assert period.start <= day <= period.end
    assert day in period
    assert period_of(period.start, grain, calendar) == period
    assert period_of(period.end, grain, calendar) == period
    if period.end < date.max:  # the next period starts the day after
        assert period_of(period.end + timedelta(days=1), grain, calendar).start == (
            period.end + timedelta(days=1)
        )


@pytest.mark.parametrize(
    ("day", "grain", "calendar", "expected"),
    [
        (date.max, "week", None, Period(date(9999, 12, 27), date.max, "9999-W52")),
        (date.min, "week", None, Period(date.min, date(1, 1, 7), "0001-W01")),
        (date.max, "month", None, Period(date(9999, 12, 1), date.max, "9999-12")),
        (date.min, "month", None, Period(date.min, date(1, 1, 31), "0001-01")),
        (date.max, "quarter", None, Period(date(9999, 10, 1), date.max, "9999-Q4")),
        (date.max, "year", None, Period(date(9999, 1, 1), date.max, "9999")),
        (date.min, "year", None, Period(date.min, date(1, 12, 31), "0001")),
        # The Thai fiscal year: FY10000 would run to September 10000; it ends with the calendar.
        (date.max, "year", 10, Period(date(9999, 10, 1), date.max, "FY10000")),
        (date.max, "quarter", 10, Period(date(9999, 10, 1), date.max, "FY10000-Q1")),
        (date.max, "quarter", 2, Period(date(9999, 11, 1), date.max, "FY10000-Q4")),
        # FY0001 would start in October of year 0; it starts with the calendar.
        (date.min, "year", 10, Period(date.min, date(1, 9, 30), "FY0001")),
        (date.min, "quarter", 10, Period(date.min, date(1, 3, 31), "FY0001-Q2")),
        (date.min, "quarter", 12, Period(date.min, date(1, 2, 28), "FY0001-Q1")),
    ],
)
def test_a_period_at_an_edge_of_the_calendar_is_cut_there_and_keeps_its_label(
    day: date, grain: Any, calendar: int | None, expected: Period
) -> None:
    """The ISO week of 31 December 9999 ends that day; FY10000 ends then too."""
    fiscal = None if calendar is None else FiscalCalendar(start_month=calendar)

    assert period_of(day, grain, fiscal) == expected


def test_a_fiscal_calendar_names_the_first_and_last_days_of_its_edge_years() -> None:
    """FiscalCalendar.year_start and year_end stay inside the calendar."""
    thai = FiscalCalendar(start_month=10)

    assert (thai.year_start(1), thai.year_end(1)) == (date.min, date(1, 9, 30))
    assert (thai.year_start(10000), thai.year_end(10000)) == (date(9999, 10, 1), date.max)
    assert thai.year_of(date.max) == 10000


# -- analytics on a deal with no real date ---------------------------------------------------


def _deals() -> list[Opportunity]:
    """An ERP deal "expected" on 9999-12-31, one on 0001-01-01, and one won this year."""
    erp = Opportunity.open(
        id="erp",
        name="ERP export, no date",
        amount=Money("100", "THB"),
        expected_close=date.max,
        clock=CLOCK,
    )
    first = Opportunity.open(
        id="first",
        name="Dated the first day",
        amount=Money("50", "THB"),
        expected_close=date.min,
        clock=CLOCK,
    )
    won = Opportunity.open(
        id="won",
        name="Won",
        amount=Money("70", "THB"),
        expected_close=date(2026, 3, 1),
        clock=CLOCK,
    ).win(clock=CLOCK)
    return [erp, first, won]


@pytest.mark.parametrize("grain", GRAINS)
@pytest.mark.parametrize("calendar", [None, FiscalCalendar(start_month=10)])
def test_a_deal_expected_on_9999_12_31_is_forecast_in_the_last_period(
    grain: Any, calendar: FiscalCalendar | None
) -> None:
    """forecast and forecast_range give it the calendar's last period, not an error."""
    table = forecast(_deals(), period=grain, calendar=calendar)
    spread = forecast_range(_deals(), period=grain, calendar=calendar, simulations=100, seed=1)

    first, last = table[0], table[-1]
    assert first.period is not None
    assert date.min in first.period
    assert first.open_count == 1
    assert last.period is not None
    assert last.period.end == date.max
    assert last.open_count == 1
    assert last.pipeline == Money("100", "THB")
    assert spread[-1].period == last.period
    assert spread[-1].mean == Money("10", "THB")


@pytest.mark.parametrize("zone", ZONES, ids=str)
@pytest.mark.parametrize("edge", [date.min, date.max])
@pytest.mark.parametrize("as_date", [True, False], ids=["a date", "its last instant"])
def test_every_analytic_answers_as_of_either_edge_of_the_calendar_in_any_zone(
    zone: tzinfo, edge: date, as_date: bool
) -> None:
    """as_of (and now, start, end) at 0001-01-01 or 9999-12-31, even where UTC cannot hold
    the instant, gives the pipeline before anything or as it is now."""
    deals = _deals()
    when: date | datetime = edge if as_date else datetime.combine(edge, time.max, zone)
    everything = edge == date.max

    table = forecast(deals, as_of=when, time_zone=zone)
    spread = forecast_range(deals, as_of=when, time_zone=zone, simulations=10, seed=1)
    keyed = effectiveness(deals, by="type", as_of=when, time_zone=zone)
    standing = snapshot(deals, as_of=when, known_at=when, time_zone=zone)
    movement = pipeline_movement(deals, start=date.min, end=when, time_zone=zone)
    sitting = stale(deals, now=when, days=0, time_zone=zone)
    spent = time_in_stage(deals, now=when, time_zone=zone)

    if everything:
        assert table == forecast(deals)
        assert len(spread) == 2
        assert sum(row.opportunities for row in keyed) == 3
        assert len(standing) == 3
        assert movement.counts["closing"] == 2
        assert {row.opportunity_id for row in sitting} == {"erp", "first"}
    else:
        assert (len(table), len(spread), len(keyed), standing) == (0, 0, 0, [])
        assert movement.counts["closing"] == 0
        assert len(sitting) == 0
    assert len(spent) == 2  # wait and in_progress, the default pipeline's open stages


def test_a_cycle_at_the_edges_of_the_calendar_is_counted() -> None:
    """A deal opened on the first day and won on the last has a cycle, in any zone."""
    opened = datetime.combine(date.min, time.min, UTC)
    closed = datetime.combine(date.max, time(12), UTC)
    late = FixedClock(closed)
    deal = Opportunity.open(name="Long", amount=Money("1", "THB"), at=opened, clock=late)
    deal = deal.win(at=closed, clock=late)

    for zone in ZONES:
        stats = sales_cycle([deal], time_zone=zone)
        assert stats.count == 1
        assert stats.mean_days is not None
        # Local clocks: Kiritimati moved from local mean time (-10:29) to +14 in between.
        assert abs(stats.mean_days - (date.max - date.min).days) < 2


# -- the report, as a user runs it -------------------------------------------------------------


def _report(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oppcore", "report", "--store", os.fspath(store), *args],
        cwd=store.parent,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON Lines store holding the deals dated at the calendar's edges."""
    path = tmp_path_factory.mktemp("edges") / "edges.jsonl"
    with open_repository(path) as repo:
        repo.save_all(_deals())
    return path


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--period", "week"),
        ("--period", "month"),
        ("--period", "year", "--fiscal-start", "10"),
        ("--as-of", "0001-01-01"),
        ("--as-of", "9999-12-31"),
    ],
    ids=" ".join,
)
def test_the_report_on_a_store_with_a_9999_12_31_deal_prints_its_last_period(
    edge_store: Path, args: tuple[str, ...]
) -> None:
    """oppcore report prints every section, the deal in a period ending 9999-12-31."""
    result = _report(edge_store, *args)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Forecast by" in result.stdout
    if "0001-01-01" not in args:
        assert ("FY10000" if "--fiscal-start" in args else "9999") in result.stdout
