"""Issue 11, case 5: deals dated by calendar dates keep their dates in the reader's time zone.

A date-only close date read in a zone east of UTC is midnight there, the evening before in
UTC.  Every analytics function that places times in days or periods takes ``time_zone=`` and
reads that zone's calendar, so a user who imports and reports in the same zone sees the
file's dates.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oppcore.io
from oppcore import FixedClock, Money, Opportunity, ValidationError
from oppcore.analytics import (
    FiscalCalendar,
    campaign_effectiveness,
    effectiveness,
    forecast,
    forecast_range,
    lead_source_effectiveness,
    period_of,
    pipeline_movement,
    sales_cycle,
    snapshot,
    stale,
    time_in_stage,
)
from tests.strategies import offsets

BANGKOK = ZoneInfo("Asia/Bangkok")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc
OPENED = datetime(2016, 10, 1, tzinfo=UTC)  # for Maven's undated Prospecting rows
NOW = FixedClock(datetime(2018, 1, 1, tzinfo=UTC))
LATER = FixedClock(datetime(2200, 1, 1, tzinfo=UTC))  # after every time the properties draw


# -- the Maven data, read and reported in Bangkok -----------------------------------------


_MAVEN: dict[tuple[Path, str], list[Opportunity]] = {}


def _maven(folder: Path, zone: str) -> list[Opportunity]:
    """The Maven deals read with the preset mapping in ``zone`` (once per module)."""
    key = (folder, zone)
    if key not in _MAVEN:
        mapping = attrs.evolve(oppcore.io.MAVEN_CRM, time_zone=zone)
        result = oppcore.io.read_csv(
            folder / "maven_crm" / "sales_pipeline.csv",
            mapping=mapping,
            opened_at=OPENED,
            clock=NOW,
        )
        assert not result.rejected
        _MAVEN[key] = list(result.opportunities)
    return _MAVEN[key]


def _file_close_dates(folder: Path) -> list[tuple[str, date]]:
    """(stage, close date) of every closed row, read straight from the file."""
    with (folder / "maven_crm" / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        return [
            (row["deal_stage"], date.fromisoformat(row["close_date"]))
            for row in csv.DictReader(f)
            if row["close_date"]
        ]


@pytest.mark.parametrize("zone", ["Asia/Bangkok", "UTC", "America/New_York"])
def test_maven_read_and_reported_in_one_zone_counts_531_wins_in_2017_q1(
    shared_data: Path, zone: str
) -> None:
    """Imported and reported in the same zone, Q1 2017 has the file's 531 won deals, not 539."""
    in_file = sum(
        1
        for stage, day in _file_close_dates(shared_data)
        if stage == "Won" and date(2017, 1, 1) <= day <= date(2017, 3, 31)
    )

    table = forecast(_maven(shared_data, zone), period="quarter", time_zone=zone)

    [q1] = [row for row in table if row.period is not None and row.period.label == "2017-Q1"]
    assert in_file == 531
    assert q1.won_count == 531


def test_maven_in_bangkok_has_only_the_months_the_file_has(shared_data: Path) -> None:
    """No "2017-02" month appears: every closed deal counts in the month of its close date."""
    in_file = {f"{day:%Y-%m}" for _, day in _file_close_dates(shared_data)}

    table = forecast(_maven(shared_data, "Asia/Bangkok"), time_zone="Asia/Bangkok")

    months = {row.period.label for row in table if row.period is not None}
    assert "2017-02" not in months
    assert months == in_file


def test_maven_read_in_bangkok_and_reported_in_utc_moves_midnight_closes_a_day_back(
    shared_data: Path,
) -> None:
    """The default stays UTC: a Bangkok midnight is 17:00 the day before there (539 in Q1)."""
    table = forecast(_maven(shared_data, "Asia/Bangkok"), period="quarter")

    assert table[0].period is not None
    assert table[0].period.label == "2017-Q1"
    assert table[0].won_count == 539


# -- the rule, for every zone ---------------------------------------------------------------


def _zones() -> st.SearchStrategy[tzinfo]:
    return st.one_of(st.timezones(), offsets(), st.just(UTC))


@given(
    zone=_zones(),
    closed=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31), timezones=_zones()
    ),
    won=st.booleans(),
    grain=st.sampled_from(["week", "month", "quarter", "year"]),
    start_month=st.none() | st.integers(1, 12),
    by_name=st.booleans(),
)
def test_a_closed_deal_falls_in_the_period_of_its_local_close_date(
    zone: tzinfo,
    closed: datetime,
    won: bool,
    grain: Any,
    start_month: int | None,
    by_name: bool,
) -> None:
    """forecast(time_zone=z) puts a deal closed at t in period_of(t.astimezone(z).date())."""
    opened = closed - timedelta(days=3)
    deal = Opportunity.open(name="Deal", amount=Money("10", "USD"), at=opened, clock=LATER)
    deal = deal.win(at=closed, clock=LATER) if won else deal.lose(at=closed, clock=LATER)
    calendar = None if start_month is None else FiscalCalendar(start_month=start_month)
    key = getattr(zone, "key", None)
    given_zone: str | tzinfo = key if by_name and isinstance(key, str) else zone

    [row] = forecast([deal], period=grain, calendar=calendar, time_zone=given_zone)

    assert row.period == period_of(closed.astimezone(zone).date(), grain, calendar)
    assert (row.won_count, row.lost_count) == ((1, 0) if won else (0, 1))


@given(zone=_zones(), day=st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)))
def test_as_of_a_date_is_the_end_of_that_local_day(zone: tzinfo, day: date) -> None:
    """as_of=date means the last instant of that day in time_zone, for every analytic."""
    end = datetime.combine(day, time.max, zone)
    deal = Opportunity.open(name="Deal", amount=Money("10", "USD"), at=end, clock=LATER)
    late = Opportunity.open(
        name="Late", amount=Money("20", "USD"), at=end + timedelta(microseconds=1), clock=LATER
    )
    deals = [deal, late]

    assert forecast(deals, as_of=day, time_zone=zone) == forecast(deals, as_of=end)
    assert effectiveness(deals, by="type", as_of=day, time_zone=zone) == effectiveness(
        deals, by="type", as_of=end
    )
    assert [opp.id for opp in snapshot(deals, as_of=day, time_zone=zone)] == [deal.id]


# -- days across a daylight-saving change ---------------------------------------------------


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, zone)


def _won_over_march_in_new_york() -> Opportunity:
    """Opened at midnight on 1 March 2027 and won at midnight on 1 April, New York time:
    daylight saving began on 14 March, so 31 days of the calendar are 743 hours."""
    deal = Opportunity.open(
        name="Deal",
        type="new_customer",
        amount=Money("10", "USD"),
        at=_midnight(date(2027, 3, 1), NEW_YORK),
        clock=LATER,
    )
    return deal.win(at=_midnight(date(2027, 4, 1), NEW_YORK), clock=LATER)


def test_a_sales_cycle_counts_the_days_of_the_zones_calendar_across_daylight_saving() -> None:
    """From 1 March to 1 April in New York is 31 days there; elapsed time is 30 days 23 hours."""
    deal = _won_over_march_in_new_york()

    local = sales_cycle([deal], time_zone="America/New_York")
    elapsed = sales_cycle([deal])
    [row] = effectiveness([deal], by="type", time_zone=NEW_YORK)

    assert local.mean_days == Decimal(31)
    assert row.avg_cycle_days == Decimal(31)
    assert elapsed.mean_days is not None
    assert round(elapsed.mean_days * 24, 20) == 743


def test_stale_days_are_counted_on_the_zones_calendar() -> None:
    """A deal in its stage since midnight on 1 March, New York, has sat 31 days on 1 April."""
    deal = Opportunity.open(
        name="Deal",
        amount=Money("10", "USD"),
        at=_midnight(date(2027, 3, 1), NEW_YORK),
        clock=LATER,
    )
    now = _midnight(date(2027, 4, 1), NEW_YORK)

    [row] = stale([deal], now=now, days=1, time_zone="America/New_York")

    assert row.days_in_stage == Decimal(31)


def test_pipeline_movement_between_two_dates_runs_from_the_first_local_midnight() -> None:
    """A deal opened at 03:00 on 1 March in Bangkok is new in March there; in UTC it opened
    on 28 February and is in the opening pipeline."""
    deal = Opportunity.open(
        name="Deal",
        amount=Money("10", "THB"),
        at=datetime(2027, 3, 1, 3, 0, tzinfo=BANGKOK),
        clock=LATER,
    )
    march = (date(2027, 3, 1), date(2027, 3, 31))

    in_bangkok = pipeline_movement([deal], start=march[0], end=march[1], time_zone=BANGKOK)
    in_utc = pipeline_movement([deal], start=march[0], end=march[1])

    assert (in_bangkok.counts["opening"], in_bangkok.counts["new"]) == (0, 1)
    assert (in_utc.counts["opening"], in_utc.counts["new"]) == (1, 0)


def test_forecast_as_of_a_date_reads_the_pipeline_at_the_end_of_that_local_day() -> None:
    """Won at 03:00 on 1 April in Bangkok: still open at the end of 31 March there, won in UTC."""
    deal = Opportunity.open(
        name="Deal",
        amount=Money("10", "THB"),
        expected_close=date(2027, 3, 31),
        at=datetime(2027, 3, 1, 9, 0, tzinfo=BANGKOK),
        clock=LATER,
    ).win(at=datetime(2027, 4, 1, 3, 0, tzinfo=BANGKOK), clock=LATER)

    [there] = forecast([deal], as_of=date(2027, 3, 31), time_zone="Asia/Bangkok")
    [here] = forecast([deal], as_of=date(2027, 3, 31))

    assert (there.open_count, there.won_count) == (1, 0)
    assert (here.open_count, here.won_count) == (0, 1)


def test_time_in_stage_counts_up_to_the_end_of_a_local_day() -> None:
    """now=date is the end of that day in time_zone; durations stay elapsed time."""
    opened = datetime(2027, 3, 1, 0, 0, tzinfo=BANGKOK)
    deal = Opportunity.open(name="Deal", at=opened, clock=LATER)

    [row, *_] = time_in_stage([deal], now=date(2027, 3, 1), time_zone="Asia/Bangkok")

    assert row.total == timedelta(days=1) - timedelta(microseconds=1)


# -- the zone itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone",
    ["Asia/Bangkok", BANGKOK, "+07:00", timezone(timedelta(hours=7)), "+0700"],
)
def test_a_zone_is_a_name_an_offset_or_a_tzinfo(zone: str | tzinfo) -> None:
    """Bangkok by name, as ZoneInfo, as an offset written or built: the same forecast."""
    deal = Opportunity.open(
        name="Deal", amount=Money("10", "THB"), at=datetime(2027, 3, 1, tzinfo=UTC), clock=LATER
    ).win(at=datetime(2027, 3, 31, 18, 0, tzinfo=UTC), clock=LATER)

    [row] = forecast([deal], time_zone=zone)

    assert row.period is not None
    assert row.period.label == "2027-04"


@pytest.mark.parametrize("zone", [None, "UTC", "utc", "Z", UTC, ZoneInfo("UTC")])
def test_none_and_utc_are_the_default(zone: str | tzinfo | None) -> None:
    """Without time_zone, and with UTC in any spelling, a close at 23:00 UTC stays that day."""
    deal = Opportunity.open(
        name="Deal", amount=Money("10", "THB"), at=datetime(2027, 3, 1, tzinfo=UTC), clock=LATER
    ).win(at=datetime(2027, 3, 31, 23, 0, tzinfo=UTC), clock=LATER)

    [row] = forecast([deal], time_zone=zone)

    assert row.period is not None
    assert row.period.label == "2027-03"


class _Broken(tzinfo):
    """A tzinfo that cannot say its offset."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


CALLS: dict[str, Callable[[list[Opportunity], Any], object]] = {
    "forecast": lambda opps, z: forecast(opps, time_zone=z),
    "forecast_range": lambda opps, z: forecast_range(opps, time_zone=z, simulations=10),
    "effectiveness": lambda opps, z: effectiveness(opps, by="type", time_zone=z),
    "campaign_effectiveness": lambda opps, z: campaign_effectiveness(opps, time_zone=z),
    "lead_source_effectiveness": lambda opps, z: lead_source_effectiveness(opps, time_zone=z),
    "sales_cycle": lambda opps, z: sales_cycle(opps, time_zone=z),
    "snapshot": lambda opps, z: snapshot(opps, as_of=NOW.now(), time_zone=z),
    "pipeline_movement": lambda opps, z: pipeline_movement(
        opps, start=date(2017, 1, 1), end=date(2017, 12, 31), time_zone=z
    ),
    "time_in_stage": lambda opps, z: time_in_stage(opps, now=NOW.now(), time_zone=z),
    "stale": lambda opps, z: stale(opps, now=NOW.now(), days=1, time_zone=z),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    ("zone", "needle"),
    [
        ("Mars/Olympus_Mons", "'Mars/Olympus_Mons'"),
        ("Asia", "'Asia'"),  # a folder of the zone database
        ("", "''"),
        ("../../etc/passwd", "'../../etc/passwd'"),
        ("Asia/Bangkok\x00", "'Asia/Bangkok\\x00'"),
        ("x" * 5000, "'xxxx"),  # longer than a path may be
        ("+25:00", "'+25:00'"),
        (7, "7"),
        (_Broken(), "_Broken"),
    ],
)
def test_a_bad_zone_is_a_validation_error_naming_it(name: str, zone: object, needle: str) -> None:
    """Every analytic refuses a zone it cannot read with one ValidationError naming it."""
    deal = Opportunity.open(name="Deal", amount=Money("10", "THB"), clock=LATER)

    with pytest.raises(ValidationError, match="time_zone") as raised:
        CALLS[name]([deal], zone)

    assert needle in str(raised.value)
    assert str(raised.value).endswith(".")
