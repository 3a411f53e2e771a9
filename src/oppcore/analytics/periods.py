"""Periods: ISO weeks, months, quarters and years, on the calendar or a fiscal calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

import attrs
from dateutil.relativedelta import relativedelta

from oppcore._repr import short
from oppcore.exceptions import ValidationError

Grain = Literal["week", "month", "quarter", "year"]
GRAINS: tuple[Grain, ...] = ("week", "month", "quarter", "year")


@attrs.frozen(order=True)
class Period:
    """A stretch of days, ``start`` to ``end`` inclusive, with its label (``2027-Q1``)."""

    start: date
    end: date
    label: str = attrs.field(order=False)

    def __str__(self) -> str:
        return self.label

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= _day(day) <= self.end


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _start_month(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise ValidationError(f"A fiscal year starts in a month 1 to 12, not {short(value)}.")
    return value


@attrs.frozen
class FiscalCalendar:
    """A fiscal year starting in ``start_month``, named by the calendar year it ends in.

    ``FiscalCalendar(start_month=10)``: ``FY2027`` runs from October 2026 to September 2027,
    and ``FY2027-Q1`` is October to December 2026, as in the Thai government's fiscal year.
    Months and ISO weeks keep their calendar labels.
    """

    start_month: int = attrs.field(default=1, converter=_start_month)

    def year_of(self, day: date) -> int:
        """The fiscal year ``day`` falls in, named by the year it ends in."""
        if self.start_month == 1:
            return day.year
        return day.year + 1 if day.month >= self.start_month else day.year

    def year_start(self, fiscal_year: int) -> date:
        if self.start_month == 1:
            return date(fiscal_year, 1, 1)
        return date(fiscal_year - 1, self.start_month, 1)


CALENDAR = FiscalCalendar(start_month=1)


def check_grain(grain: object) -> Grain:
    if grain not in GRAINS:
        raise ValidationError(
            f"Period {short(grain)} is not one of {', '.join(repr(g) for g in GRAINS)}."
        )
    return grain


def check_calendar(calendar: object) -> FiscalCalendar | None:
    if calendar is not None and not isinstance(calendar, FiscalCalendar):
        raise ValidationError(f"calendar must be a FiscalCalendar or None, not {short(calendar)}.")
    return calendar


def period_of(day: date, grain: Grain, calendar: FiscalCalendar | None = None) -> Period:
    """The period of ``grain`` that ``day`` falls in."""
    if not isinstance(day, date):
        raise ValidationError(f"period_of takes a date, not {short(day)}.")
    grain = check_grain(grain)
    calendar = check_calendar(calendar)
    day = _day(day)
    if grain == "week":
        year, week, weekday = day.isocalendar()
        start = day - timedelta(days=weekday - 1)
        return Period(start, start + timedelta(days=6), f"{year}-W{week:02d}")
    if grain == "month":
        start = day.replace(day=1)
        return Period(start, start + relativedelta(months=1, days=-1), f"{day:%Y-%m}")
    fiscal = calendar or CALENDAR
    year = fiscal.year_of(day)
    year_start = fiscal.year_start(year)
    prefix = "" if calendar is None else "FY"
    if grain == "year":
        return Period(year_start, year_start + relativedelta(years=1, days=-1), f"{prefix}{year}")
    months = (day.year - year_start.year) * 12 + day.month - year_start.month
    quarter = months // 3
    start = year_start + relativedelta(months=3 * quarter)
    return Period(start, start + relativedelta(months=3, days=-1), f"{prefix}{year}-Q{quarter + 1}")


__all__ = ["CALENDAR", "GRAINS", "FiscalCalendar", "Grain", "Period", "period_of"]
