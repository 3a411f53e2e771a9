"""Periods: ISO weeks, months, quarters and years, on the calendar or a fiscal calendar."""

from __future__ import annotations

from calendar import monthrange
from datetime import date, datetime, timedelta
from typing import Literal

import attrs

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
    Months and ISO weeks keep their calendar labels.  At the edges of the calendar a fiscal
    year is cut to the days that exist: ``FY10000`` runs from October to 31 December 9999.
    """

    start_month: int = attrs.field(default=1, converter=_start_month)

    def year_of(self, day: date) -> int:
        """The fiscal year ``day`` falls in, named by the year it ends in (10000 for the
        last months of 9999 when the year does not start in January)."""
        if self.start_month == 1:
            return day.year
        return day.year + 1 if day.month >= self.start_month else day.year

    def year_start(self, fiscal_year: int) -> date:
        """The first day of ``fiscal_year`` (1 January of year 1 for a fiscal year 1 that
        would start before it)."""
        return _month_start(self._first_month(fiscal_year))

    def year_end(self, fiscal_year: int) -> date:
        """The last day of ``fiscal_year`` (31 December 9999 for one that would end after)."""
        return _month_end(self._first_month(fiscal_year) + 11)

    def _first_month(self, fiscal_year: int) -> int:
        year = fiscal_year if self.start_month == 1 else fiscal_year - 1
        return year * 12 + self.start_month - 1


def _month_start(month: int) -> date:
    """The first day of absolute month ``month`` (year * 12 + month - 1), kept in the
    calendar: a month before year 1 starts on ``date.min``."""
    year, index = divmod(month, 12)
    if year < date.min.year:
        return date.min
    if year > date.max.year:
        return date.max
    return date(year, index + 1, 1)


def _month_end(month: int) -> date:
    """The last day of absolute month ``month``, kept in the calendar: a month after 9999
    ends on ``date.max``."""
    year, index = divmod(month, 12)
    if year > date.max.year:
        return date.max
    if year < date.min.year:
        return date.min
    return date(year, index + 1, monthrange(year, index + 1)[1])


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
    """The period of ``grain`` that ``day`` falls in.

    Every day of the calendar has one, ``date.min`` and ``date.max`` included: a period that
    would run past the calendar's edge is cut there (the ISO week of 31 December 9999 ends
    on that day), and keeps its label (``FY10000`` for a fiscal year ending after 9999).
    """
    if not isinstance(day, date):
        raise ValidationError(f"period_of takes a date, not {short(day)}.")
    grain = check_grain(grain)
    calendar = check_calendar(calendar)
    day = _day(day)
    if grain == "week":
        year, week, weekday = day.isocalendar()
        # 1 January of year 1 is a Monday: no week starts before the calendar does.
        start = day - timedelta(days=weekday - 1)
        end = date.max if date.max - start < _SIX_DAYS else start + _SIX_DAYS
        return Period(start, end, f"{year:04d}-W{week:02d}")
    month = day.year * 12 + day.month - 1
    if grain == "month":
        return Period(_month_start(month), _month_end(month), f"{day.year:04d}-{day.month:02d}")
    fiscal = calendar or CALENDAR
    year = fiscal.year_of(day)
    prefix = "" if calendar is None else "FY"
    if grain == "year":
        return Period(fiscal.year_start(year), fiscal.year_end(year), f"{prefix}{year:04d}")
    quarter = (day.month - fiscal.start_month) % 12 // 3
    first = month - (day.month - fiscal.start_month) % 12 + 3 * quarter
    return Period(_month_start(first), _month_end(first + 2), f"{prefix}{year:04d}-Q{quarter + 1}")


_SIX_DAYS = timedelta(days=6)


__all__ = ["CALENDAR", "GRAINS", "FiscalCalendar", "Grain", "Period", "period_of"]
