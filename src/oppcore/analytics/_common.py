"""What the analytics share: checking the input, money in one currency, exact statistics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

from oppcore import clock as _clock
from oppcore._repr import short
from oppcore.domain import _checks
from oppcore.domain.money import DIVISION, EXACT, ExchangeRates, Money, currency_code
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Pipeline
from oppcore.domain.versions import DealVersion
from oppcore.exceptions import CurrencyMismatchError, ValidationError

if TYPE_CHECKING:
    from narwhals.typing import IntoFrame

_DAY_SECONDS = Decimal(86400)

UTC = timezone.utc
#: What ``time_zone=`` takes: a zone name (``"Asia/Bangkok"``, ``"UTC"``, ``"+07:00"``), a
#: ``tzinfo``, or None for UTC.
ZoneLike: TypeAlias = "str | tzinfo | None"
#: What the analytics read: opportunities, or a deal frame of any engine narwhals supports
#: (``oppcore.frame.deal_frame``, ``Repository.deal_frame``, a frame read from Parquet).
Deals: TypeAlias = "Iterable[Opportunity] | IntoFrame"
#: A moment: an aware datetime, or a date, meaning a whole local day.
When: TypeAlias = "datetime | date"

_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


# -- time zones: the calendar days and periods are the local ones ------------------------


def time_zone(value: object) -> tzinfo:
    """The zone whose calendar the analytics read: ``time_zone=`` checked.

    A zone name (``zoneinfo``), ``"UTC"``, a fixed offset such as ``"+07:00"``, a ``tzinfo``,
    or None (UTC).
    """
    if value is None:
        return UTC
    if isinstance(value, tzinfo):
        try:
            offset = _PROBE.replace(tzinfo=value).utcoffset()
        except Exception:  # a tzinfo of the caller's own that cannot answer
            offset = None
        if offset is None:
            raise ValidationError(
                f"time_zone {short(value)} gives no UTC offset: pass a zone such as "
                "zoneinfo.ZoneInfo('Asia/Bangkok')."
            )
        return value
    if not isinstance(value, str):
        raise ValidationError(
            "time_zone must be a zone name such as 'Asia/Bangkok', 'UTC' or '+07:00', "
            f"or a tzinfo, not {short(value)}."
        )
    if value.upper() in ("UTC", "Z"):
        return UTC
    offset_match = _OFFSET.fullmatch(value)
    if offset_match:
        sign = -1 if offset_match.group(1) == "-" else 1
        hours, minutes = int(offset_match.group(2)), int(offset_match.group(3))
        if hours >= 24 or minutes >= 60:
            raise ValidationError(f"time_zone offset {value!r} is not an offset under a day.")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    import zoneinfo  # only when a zone is named

    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a folder of the zone database, or too long for a path.
        raise ValidationError(
            f"time_zone {short(value)} is not a time zone this system knows; give a name "
            "such as 'Asia/Bangkok', 'UTC' or an offset such as '+07:00'."
        ) from None


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The calendar date of the aware ``moment`` in ``zone``.

    An instant whose local date would fall outside the calendar (the last hours of
    9999 seen east of them, the first of year 1 seen west) takes the calendar's last or
    first day.
    """
    if moment.tzinfo is zone:
        return moment.date()
    try:
        return moment.astimezone(zone).date()
    except OverflowError:
        return date.max if moment.year > date.max.year // 2 else date.min


def instant(value: object, what: str, zone: tzinfo, *, end_of_day: bool = True) -> datetime:
    """``value`` as an aware UTC datetime: a datetime as it is, a date as the end of that
    local day in ``zone`` (or its start, with ``end_of_day=False``).

    A moment that UTC cannot hold (the end of 31 December 9999 west of Greenwich) is
    clamped to the calendar's last (or first) instant: nothing a store holds lies beyond it.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"{what} {value.isoformat()!r} is naive: give it a timezone, such as UTC."
            )
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.max if end_of_day else time.min, zone)
    else:
        raise ValidationError(f"{what} must be a datetime or a date, not {short(value)}.")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return _LAST if moment.year > date.max.year // 2 else _FIRST


def local_span(start: datetime, end: datetime, zone: tzinfo) -> timedelta:
    """``end - start`` as the clocks of ``zone`` show it: from 9:00 to 9:00 a month later
    is a whole number of days even when daylight saving began in between, so deals dated
    by calendar dates are whole days apart."""
    elapsed = end - start
    if isinstance(zone, timezone):  # one offset all year
        return elapsed
    return elapsed + _offset(end, zone) - _offset(start, zone)


def _offset(moment: datetime, zone: tzinfo) -> timedelta:
    try:
        local = moment.astimezone(zone)
    except OverflowError:  # at the calendar's edge: the zone's offset for that wall time
        try:
            return zone.utcoffset(moment.replace(tzinfo=None)) or timedelta(0)
        except (OverflowError, ValueError):
            return timedelta(0)
    return local.utcoffset() or timedelta(0)


# -- the deals -----------------------------------------------------------------------------


def deals(opps: object, as_of: When | None, zone: tzinfo = UTC) -> list[Opportunity]:
    """The opportunities to analyse: each as it stood at ``as_of`` (left out if not yet open);
    ``as_of`` a date is the end of that day in ``zone``."""
    if isinstance(opps, (str, bytes, Mapping)) or not isinstance(opps, Iterable):
        raise ValidationError(f"Analytics take an iterable of Opportunity, not {short(opps)}.")
    moment = None if as_of is None else instant(as_of, "as_of", zone)
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


def history(opp: Opportunity) -> list[DealVersion]:
    """The deal's history as known now: its ``DealVersion`` rows with ``recorded_to`` None,
    by ``valid_from``, then version.

    One row per event, the state right after it, so a row whose valid span is empty (the
    first of two events at one instant) is still there: the history analytics read these
    rows, the same on both routes, never the events.
    """
    rows = [row for row in opp.versions() if row.recorded_to is None]
    rows.sort(key=lambda row: (row.valid_from, row.version))
    return rows


def pipelines(value: object, what: str) -> dict[str, Pipeline] | None:
    """``pipelines=`` checked: the ``Pipeline`` values by id, in the order given (None when
    not given)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping, Pipeline)) or not isinstance(value, Iterable):
        raise ValidationError(
            f"{what} takes pipelines= as a list of Pipeline (e.g. repo.pipelines()), "
            f"not {short(value)}."
        )
    result: dict[str, Pipeline] = {}
    for pipeline in value:
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"{short(pipeline)} in pipelines= is not a Pipeline.")
        result.setdefault(pipeline.id, pipeline)
    return result


def used_pipelines(given: Mapping[str, Pipeline], used: Iterable[str], what: str) -> list[Pipeline]:
    """The pipelines of ``given`` whose ids the deals use, in the order given; a deal in a
    pipeline that ``given`` does not hold is ``ValidationError``."""
    ids = set(used)
    missing = sorted(ids - given.keys())
    if missing:
        raise ValidationError(
            f"Deals are in pipeline {', '.join(map(repr, missing))}, which pipelines= does not "
            f"hold: pass every pipeline the deals use to {what} (e.g. repo.pipelines())."
        )
    return [pipeline for key, pipeline in given.items() if key in ids]


def today(as_of: When | None, clock: _clock.Clock | None = None, zone: tzinfo = UTC) -> date:
    """The day open deals without a date are valued on: ``as_of``'s, or the clock's today,
    in ``zone``."""
    if as_of is None:
        return local_date(instant(_clock.resolve(clock).now(), "now", zone), zone)
    if isinstance(as_of, date) and not isinstance(as_of, datetime):
        return as_of
    return local_date(instant(as_of, "as_of", zone), zone)


class Valuation:
    """Money in the table's one currency: the deals' common currency, or ``currency=``
    with each deal converted by ``rates`` at its own date."""

    def __init__(
        self,
        opps: Sequence[Opportunity],
        currency: str | None,
        rates: ExchangeRates | None,
        valued_on: date,
        zone: tzinfo = UTC,
    ) -> None:
        if rates is not None and not isinstance(rates, ExchangeRates):
            raise ValidationError(f"rates must be ExchangeRates, not {short(rates)}.")
        self.rates = rates
        self.valued_on = valued_on
        self.zone = zone
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
            return local_date(opp.closed_at, self.zone)
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
        return self.value_in(money.amount, money.currency, self.day(opp))

    def value_in(self, amount: Decimal, currency: str, on: date) -> Decimal:
        """``amount`` of ``currency`` in the table's currency at the rate of ``on``."""
        if currency == self.currency or self.currency is None:
            return amount
        key = (currency, on)
        conversion = self._conversions.get(key)
        if conversion is None:
            if self.rates is None:  # checked in __init__
                raise CurrencyMismatchError(
                    f"{Money._exact(amount, currency)!r} is not in {self.currency}."
                )
            conversion = self.rates.conversion(currency, self.currency, on=on)
            self._conversions[key] = conversion
        return conversion(amount)


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    if not whole:
        return None
    return DIVISION.divide(Decimal(part), Decimal(whole))


def per(money: Money | None, count: int | Decimal) -> Money | None:
    if money is None or not count:
        return None
    return Money._exact(DIVISION.divide(money.amount, Decimal(count)), money.currency)


def microseconds(delta: timedelta) -> int:
    """A duration as a whole number of microseconds (exact)."""
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def days(delta: timedelta) -> Decimal:
    """A duration in days, exactly (to the microsecond)."""
    return DIVISION.divide(Decimal(microseconds(delta)), _DAY_SECONDS * 1_000_000)


def mean_days(total_microseconds: int, count: int) -> Decimal | None:
    """The mean of ``count`` durations that add up to ``total_microseconds``, in days: one
    division of the exact total (None for no durations)."""
    if not count:
        return None
    return DIVISION.divide(Decimal(total_microseconds), _DAY_SECONDS * 1_000_000 * count)


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
