"""Periods (ISO weeks, months, quarters, years, fiscal calendars) and the Table every analytic returns."""

from __future__ import annotations

import csv
import io
import re
import sys
import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from oppcore import FixedClock, Money, Opportunity, ValidationError
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

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
FY_OCTOBER = FiscalCalendar(start_month=10)


# -- periods ------------------------------------------------------------------------------


def test_an_iso_week_is_labelled_by_its_iso_year_and_runs_monday_to_sunday() -> None:
    """3 February 2027 is in 2027-W05, Monday 1 to Sunday 7 February."""
    assert period_of(date(2027, 2, 3), "week") == Period(
        date(2027, 2, 1), date(2027, 2, 7), "2027-W05"
    )


@pytest.mark.parametrize(
    ("day", "label", "start"),
    [
        (date(2026, 12, 31), "2026-W53", date(2026, 12, 28)),  # 2026 has 53 ISO weeks
        (date(2027, 1, 3), "2026-W53", date(2026, 12, 28)),
        (date(2024, 12, 30), "2025-W01", date(2024, 12, 30)),  # ISO week 1 of the next year
        (date(2021, 1, 1), "2020-W53", date(2020, 12, 28)),
    ],
)
def test_a_week_across_new_year_takes_the_iso_year_not_the_calendar_year(
    day: date, label: str, start: date
) -> None:
    """Days around 1 January belong to the ISO week (and ISO year) they fall in."""
    assert period_of(day, "week") == Period(start, start + timedelta(days=6), label)


def test_a_month_runs_from_the_first_to_its_last_day() -> None:
    """Months are labelled YYYY-MM and end on their own last day, 29 February in a leap year."""
    assert period_of(date(2027, 3, 15), "month") == Period(
        date(2027, 3, 1), date(2027, 3, 31), "2027-03"
    )
    assert period_of(date(2028, 2, 10), "month").end == date(2028, 2, 29)


def test_calendar_quarters_and_years_are_labelled_without_fy() -> None:
    """Without a fiscal calendar, 20 May 2027 is in 2027-Q2 (April to June) and year 2027."""
    assert period_of(date(2027, 5, 20), "quarter") == Period(
        date(2027, 4, 1), date(2027, 6, 30), "2027-Q2"
    )
    assert period_of(date(2027, 5, 20), "year") == Period(
        date(2027, 1, 1), date(2027, 12, 31), "2027"
    )


def test_a_datetime_falls_in_the_period_of_its_own_date() -> None:
    """period_of takes a datetime as the date it shows."""
    moment = datetime(2027, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))

    assert period_of(moment, "month").label == "2027-03"


def test_fiscal_year_starting_in_october_names_its_quarters_by_the_year_they_end_in() -> None:
    """With start_month=10, 15 October 2026 is in FY2027-Q1, October to December 2026."""
    assert period_of(date(2026, 10, 15), "quarter", FY_OCTOBER) == Period(
        date(2026, 10, 1), date(2026, 12, 31), "FY2027-Q1"
    )


def test_the_last_day_of_a_fiscal_year_is_in_its_fourth_quarter() -> None:
    """30 September 2027 is in FY2027-Q4 (July to September 2027); the day before FY2027 is FY2026-Q4."""
    assert period_of(date(2027, 9, 30), "quarter", FY_OCTOBER) == Period(
        date(2027, 7, 1), date(2027, 9, 30), "FY2027-Q4"
    )
    assert period_of(date(2026, 9, 30), "quarter", FY_OCTOBER).label == "FY2026-Q4"


def test_a_fiscal_year_is_named_by_the_calendar_year_it_ends_in() -> None:
    """FY2027 runs from 1 October 2026 to 30 September 2027."""
    expected = Period(date(2026, 10, 1), date(2027, 9, 30), "FY2027")

    assert period_of(date(2026, 10, 1), "year", FY_OCTOBER) == expected
    assert period_of(date(2027, 9, 30), "year", FY_OCTOBER) == expected


def test_months_and_weeks_keep_their_calendar_labels_under_a_fiscal_calendar() -> None:
    """A fiscal calendar changes quarters and years only."""
    day = date(2026, 10, 15)

    assert period_of(day, "month", FY_OCTOBER) == period_of(day, "month")
    assert period_of(day, "month", FY_OCTOBER).label == "2026-10"
    assert period_of(day, "week", FY_OCTOBER) == period_of(day, "week")


def test_the_forecast_labels_rows_by_the_fiscal_calendar_it_is_given() -> None:
    """forecast(calendar=...) buckets by fiscal quarter: October and November 2026 share FY2027-Q1."""
    clock = FixedClock(START)
    opps = [
        Opportunity.open(name=str(day), amount=Money("1", "THB"), expected_close=day, clock=clock)
        for day in (date(2026, 10, 2), date(2026, 11, 30), date(2027, 9, 30))
    ]

    table = forecast(opps, period="quarter", calendar=FY_OCTOBER)

    assert [(str(row.period), row.open_count) for row in table] == [
        ("FY2027-Q1", 2),
        ("FY2027-Q4", 1),
    ]


@pytest.mark.parametrize("grain", ["day", "Month", "fortnight", "", None, 7])
def test_forecast_refuses_a_grain_it_does_not_know(grain: Any) -> None:
    """A grain other than week, month, quarter or year is a ValidationError naming it."""
    with pytest.raises(ValidationError, match="is not one of"):
        forecast([], period=grain)


@pytest.mark.parametrize("grain", ["day", "fortnight"])
def test_period_of_refuses_a_grain_it_does_not_know(grain: Any) -> None:
    """period_of is public too: an unknown grain is a ValidationError, not a quarter."""
    with pytest.raises(ValidationError):
        period_of(date(2026, 5, 5), grain)


@pytest.mark.parametrize("start_month", [0, 13, -1, "10", 10.0, True, None])
def test_a_fiscal_calendar_refuses_a_start_month_outside_1_to_12(start_month: Any) -> None:
    """The start month is an int from 1 to 12; anything else is a ValidationError."""
    with pytest.raises(ValidationError, match="month 1 to 12"):
        FiscalCalendar(start_month=start_month)


def test_forecast_refuses_a_calendar_that_is_not_a_fiscal_calendar() -> None:
    """calendar= takes a FiscalCalendar or None."""
    with pytest.raises(ValidationError, match="FiscalCalendar"):
        forecast([], period="quarter", calendar=10)  # type: ignore[arg-type]


# -- a table to look at -----------------------------------------------------------------


def _deals() -> list[Opportunity]:
    """Deals in JPY: one won in January, one expected in March, one unscheduled."""
    clock = FixedClock(START)
    march = Opportunity.open(
        name="March",
        amount=Money("1234.5", "JPY"),
        expected_close=date(2026, 3, 3),
        owner="Somchai <b>&",
        clock=clock,
    )
    unscheduled = Opportunity.open(
        name="Some day", amount=Money("99.5", "JPY"), owner="Ann", clock=clock
    )
    won = Opportunity.open(name="Won", amount=Money("10", "JPY"), owner="Ann", clock=clock)
    clock.advance(timedelta(days=10))
    return [march, unscheduled, won.win(clock=clock)]


@pytest.fixture
def table() -> Table[ForecastRow]:
    """A monthly forecast of ``_deals()``: 2026-01, 2026-03 and unscheduled."""
    return forecast(_deals())


def test_a_table_iterates_over_its_rows_and_has_their_length(table: Table[ForecastRow]) -> None:
    """Iteration, len, indexing and rows agree."""
    assert len(table) == 3
    assert list(table) == list(table.rows)
    assert table[0] is table.rows[0]
    assert all(isinstance(row, ForecastRow) for row in table)


def test_to_dicts_keeps_the_values_as_they_are(table: Table[ForecastRow]) -> None:
    """Each row becomes a dict of its fields with Money and Period untouched."""
    dicts = table.to_dicts()

    assert list(dicts[1]) == [
        "period",
        "open_count",
        "pipeline",
        "best_case",
        "commit",
        "weighted",
        "won_count",
        "won",
        "lost_count",
    ]
    assert dicts[1]["period"] == Period(date(2026, 3, 1), date(2026, 3, 31), "2026-03")
    assert dicts[1]["pipeline"] == Money("1234.5", "JPY")
    assert dicts[1]["weighted"] == Money("123.45", "JPY")
    assert dicts[2]["period"] is None
    assert dicts[0]["won_count"] == 1


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_to_csv_writes_exact_amounts_with_a_currency_column_and_period_labels(
    table: Table[ForecastRow],
) -> None:
    """Money columns are exact and followed by <column>_currency; periods are labels."""
    buffer = io.StringIO()
    table.to_csv(buffer)
    rows = _read_csv(buffer.getvalue())

    assert list(rows[0])[:6] == [
        "period",
        "open_count",
        "pipeline",
        "pipeline_currency",
        "best_case",
        "best_case_currency",
    ]
    assert [row["period"] for row in rows] == ["2026-01", "2026-03", ""]
    assert rows[1]["pipeline"] == "1234.5"
    assert rows[1]["pipeline_currency"] == "JPY"
    assert rows[1]["weighted"] == "123.45"  # not rounded to yen
    assert rows[2]["weighted"] == "9.95"
    assert rows[0]["won"] == "10"
    assert rows[0]["won_count"] == "1"


def test_to_csv_writes_the_same_text_to_a_path(table: Table[ForecastRow], tmp_path: Path) -> None:
    """A path gets exactly what a text file gets."""
    buffer = io.StringIO()
    table.to_csv(buffer)
    target = tmp_path / "forecast.csv"

    table.to_csv(target)
    table.to_csv(str(tmp_path / "as-text.csv"))

    written = target.read_text(encoding="utf-8")
    assert _read_csv(written) == _read_csv(buffer.getvalue())
    assert (tmp_path / "as-text.csv").read_text(encoding="utf-8") == written


def _spans(dashes: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", dashes)]


def test_str_aligns_columns_and_rounds_money_to_the_minor_unit(table: Table[ForecastRow]) -> None:
    """Under a title, every cell sits in its column's span; JPY shows no decimals."""
    title, header, dashes, *lines = str(table).splitlines()
    spans = _spans(dashes)
    cells = [[line.ljust(len(dashes))[a:b] for a, b in spans] for line in [header, *lines]]

    assert title == "Forecast by month"
    assert len(spans) == len(table.columns)
    assert [cell.strip() for cell in cells[0]] == list(table.columns)
    assert [cell.strip() for cell in cells[1]] == [
        "2026-01",
        "0",
        "0 JPY",
        "0 JPY",
        "0 JPY",
        "0 JPY",
        "1",
        "10 JPY",
        "0",
    ]
    assert cells[2][2].strip() == "1,235 JPY"  # 1234.5 rounds half up to 1,235 yen
    assert cells[2][5].strip() == "123 JPY"
    assert cells[3][0].strip() == "unscheduled"
    assert all(not line[0].startswith(" ") for line in cells)  # text left-aligned
    assert all(not cell.endswith(" ") for line in cells for cell in line[1:])  # numbers right
    gaps = [i for i in range(len(dashes)) if dashes[i] == " "]
    assert all(line.ljust(len(dashes))[i] == " " for line in lines for i in gaps)


def test_str_shows_two_place_currencies_rounded_half_up() -> None:
    """1,234.565 USD shows as 1,234.57 USD; the exact amount stays in the row."""
    clock = FixedClock(START)
    opp = Opportunity.open(
        name="USD", amount=Money("1234.565", "USD"), expected_close=date(2026, 2, 1), clock=clock
    )

    table = forecast([opp])

    assert "1,234.57 USD" in str(table)
    assert table[0].pipeline == Money("1234.565", "USD")


def _display_width(text: str) -> int:
    """Terminal columns: combining marks take none, East Asian wide characters two."""
    width = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def test_str_aligns_thai_and_east_asian_keys_by_their_width_on_screen() -> None:
    """A Thai or Japanese key pads to the columns a terminal shows, so the rows line up."""
    clock = FixedClock(START)
    opps = [
        Opportunity.open(name="deal", type=kind, amount=Money("1", "THB"), clock=clock)
        for kind in ("existing", "ลูกค้าใหม่", "東京オフィス")
    ]

    _, _, dashes, *lines = str(effectiveness(opps, by="type")).splitlines()

    # the last column is numeric (right-aligned), so every row ends where the dashes end
    assert [_display_width(line) for line in lines] == [_display_width(dashes)] * 3


def test_repr_html_escapes_text_and_shows_the_title(table: Table[ForecastRow]) -> None:
    """Keys and titles are HTML-escaped; money is shown rounded, as in str()."""
    by_owner = effectiveness(_deals(), by="owner")
    page = by_owner._repr_html_()

    assert page.startswith("<table><caption>Effectiveness by owner</caption>")
    assert "<td>Somchai &lt;b&gt;&amp;</td>" in page
    assert "Somchai <b>" not in page
    assert "<th>win_rate_all</th>" in page
    assert "<td>1,235 JPY</td>" in table._repr_html_()
    assert "<td>unscheduled</td>" in table._repr_html_()


def test_to_pandas_gives_a_dataframe_with_the_same_numbers(table: Table[ForecastRow]) -> None:
    """Money becomes its exact Decimal amount plus a currency column; periods become labels."""
    pytest.importorskip("pandas")

    frame = table.to_pandas()

    assert list(frame.columns) == [
        "period",
        "open_count",
        "pipeline",
        "pipeline_currency",
        "best_case",
        "best_case_currency",
        "commit",
        "commit_currency",
        "weighted",
        "weighted_currency",
        "won_count",
        "won",
        "won_currency",
        "lost_count",
    ]
    assert len(frame) == 3
    assert list(frame["period"])[:2] == ["2026-01", "2026-03"]
    assert list(frame["open_count"]) == [row.open_count for row in table]
    assert list(frame["weighted"]) == [
        row.weighted.amount if row.weighted is not None else None for row in table
    ]
    assert list(frame["weighted"]) == [Decimal(0), Decimal("123.45"), Decimal("9.95")]
    assert set(frame["won_currency"]) == {"JPY"}


def test_to_pandas_without_pandas_names_the_extra_to_install(
    table: Table[ForecastRow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pandas missing, the ImportError says to install oppcore[pandas]."""
    monkeypatch.setitem(sys.modules, "pandas", None)

    with pytest.raises(ImportError, match=re.escape("oppcore[pandas]")):
        table.to_pandas()


def test_a_forecast_of_no_deals_is_an_empty_table() -> None:
    """Empty input: no rows, the columns still named, a header-only CSV."""
    table = forecast([])
    buffer = io.StringIO()
    table.to_csv(buffer)

    assert len(table) == 0
    assert table.rows == ()
    assert table.to_dicts() == []
    assert "period" in table.columns
    assert buffer.getvalue().strip().split(",")[0] == "period"
    assert "open_count" in str(table)


@pytest.mark.parametrize("by", ["campaign", "lead_source", "type", "owner", "account"])
def test_effectiveness_of_no_deals_is_an_empty_table(by: Any) -> None:
    """Empty input gives no rows for every grouping (no campaigns given)."""
    table: Table[EffectivenessRow] = effectiveness([], by=by)

    assert len(table) == 0
    assert list(table) == []
    assert table.to_dicts() == []
