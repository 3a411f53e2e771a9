"""Pipeline movement: why the open pipeline at one time differs from the pipeline at another.

The rule that gives each deal its one bucket compares the deal as it stood at ``start``
with the deal as it stood at ``end``.  A deal is *in* the pipeline at a time when it is open
then (and, with a ``window``, its expected close then falls in the window).  Its amount in
a bucket is what it adds to or takes from the pipeline, so the buckets reconcile exactly:

==============================  ===============================  =====================================
at ``start``                    at ``end``                       bucket (amount)
==============================  ===============================  =====================================
in                              in, larger amount                ``increased`` (end - start)
in                              in, smaller amount               ``decreased`` (start - end)
in                              in, same amount                  none: unchanged
in                              won                              ``won`` (its amount at start)
in                              lost                             ``lost`` (its amount at start)
in                              open, close outside the window   ``pushed_out`` (its amount at start)
not yet opened                  in                               ``new`` (its amount at end)
won or lost                     in                               ``reopened`` (its amount at end)
open, close outside the window  in                               ``pulled_in`` (its amount at end)
not in                          not in                           none
==============================  ===============================  =====================================

Only the two ends count: a deal that opened and closed between them is in neither pipeline
and in no bucket, and a deal won and reopened between them is compared by its amounts.
A deal's state at a time is the row of its history standing then (``Opportunity.as_of`` on
the opportunities, the rows with ``recorded_to`` null on a deal frame), so both give the
same buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Final, TypeAlias

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.periods import Period
from oppcore.analytics.table import Table
from oppcore.domain import _checks
from oppcore.domain.money import EXACT, ExchangeRates, Money, currency_code
from oppcore.domain.opportunity import Opportunity
from oppcore.exceptions import CurrencyMismatchError, ValidationError

#: The buckets, in the order they appear in the reconciliation.
BUCKETS: Final = (
    "new",
    "increased",
    "decreased",
    "won",
    "lost",
    "reopened",
    "pushed_out",
    "pulled_in",
)
_ADDS: Final = frozenset({"new", "increased", "reopened", "pulled_in"})


@attrs.frozen
class MovementEntry:
    """One deal's change: its bucket and the amount it moved (never negative)."""

    opportunity_id: str
    bucket: str
    amount: Money | None


@attrs.frozen
class MovementRow:
    """One line of the movement summary: opening, a bucket, or closing."""

    bucket: str
    count: int
    amount: Money | None


@attrs.frozen(repr=False)
class Movement:
    """How the open pipeline went from ``opening`` (at ``start``) to ``closing`` (at ``end``).

    ``opening + new + increased - decreased - won - lost + reopened - pushed_out + pulled_in
    == closing`` exactly.  Amounts are the deals' amounts, not weighted; each is ``None`` only
    when no deal involved has a currency.  ``counts`` maps each bucket (and ``opening`` and
    ``closing``) to its number of deals; ``entries`` lists each deal's bucket and amount,
    bucket by bucket in the order of ``BUCKETS``, deals in opportunity id order.
    """

    opening: Money | None
    new: Money | None
    increased: Money | None
    decreased: Money | None
    won: Money | None
    lost: Money | None
    reopened: Money | None
    pushed_out: Money | None
    pulled_in: Money | None
    closing: Money | None
    counts: Mapping[str, int]
    entries: Table[MovementEntry]

    def summary(self) -> Table[MovementRow]:
        """The movement as a table a sales manager reads top to bottom: opening, each
        bucket, closing."""
        rows = [MovementRow("opening", self.counts["opening"], self.opening)]
        rows += [
            MovementRow(bucket, self.counts[bucket], getattr(self, bucket)) for bucket in BUCKETS
        ]
        rows.append(MovementRow("closing", self.counts["closing"], self.closing))
        return Table.of(MovementRow, rows, title="Pipeline movement")

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return f"<Movement opening={self.opening} closing={self.closing}>"


# What the movement needs of a deal at one time: its outcome ("open", "won", "lost"), amount and
# expected close; None before it opened.
_State: TypeAlias = "tuple[str, Money | None, date | None] | None"


def _state(opp: Opportunity | None) -> _State:
    if opp is None:
        return None
    return (opp.stage.outcome.value, opp.amount, opp.expected_close)


def _ends(opp: Opportunity, first: datetime, last: datetime) -> tuple[_State, _State]:
    """The deal's state at valid times ``first`` and ``last`` (``first <= last``), as the
    domain reads it (``Opportunity.as_of``): the row of its history standing then."""
    after = opp.as_of(last)
    before = None if after is None else after.as_of(first)
    return _state(before), _state(after)


def _window(value: object) -> tuple[date, date] | None:
    if value is None:
        return None
    if isinstance(value, Period) or (isinstance(value, tuple) and len(value) == 2):
        pair = (value.start, value.end) if isinstance(value, Period) else value
        first = _checks.day(pair[0], "Window start")
        last = _checks.day(pair[1], "Window end")
        if first > last:
            raise ValidationError(f"The window starts on {first} after it ends on {last}.")
        return first, last
    raise ValidationError(
        f"window must be a Period or a (first day, last day) pair, not {short(value)}."
    )


def pipeline_movement(
    opps: _common.Deals,
    *,
    start: datetime | date,
    end: datetime | date,
    window: Period | tuple[date, date] | None = None,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    time_zone: _common.ZoneLike = None,
) -> Movement:
    """The open pipeline at ``start`` and at ``end``, and the buckets that explain the change.

    ``window`` (a ``Period`` or a ``(first day, last day)`` pair, inclusive) keeps only deals
    whose expected close falls in it; a deal with no expected close is then outside it.
    Mixed currencies need ``currency=`` and ``rates=``: every amount, at both ends, is then
    converted at the rate of ``end``'s date, so a rate change never shows as a bucket.
    ``start`` and ``end`` given as dates mean the start of the first day and the end of the
    last, in ``time_zone`` (default UTC), which is also the calendar of ``end``'s date.
    See the module documentation for the rule that puts each deal in its bucket.
    """
    zone = _common.time_zone(time_zone)
    first = _common.instant(start, "start", zone, end_of_day=False)
    last = _common.instant(end, "end", zone)
    if first > last:
        raise ValidationError(
            f"start {first.isoformat()} is after end {last.isoformat()}: the movement runs forward."
        )
    days = _window(window)
    if rates is not None and not isinstance(rates, ExchangeRates):
        raise ValidationError(f"rates must be ExchangeRates, not {short(rates)}.")
    code = None if currency is None else currency_code(currency)
    if _frames.looks_like_frame(opps):
        ends = _frames.movement_states(opps, first, last)
    else:
        ends = [(opp.id, *_ends(opp, first, last)) for opp in _common.deals(opps, None)]
        ends.sort(key=lambda end: end[0])  # entries in opportunity id order, on both routes

    def inside(state: _State) -> bool:
        if state is None or state[0] != "open":
            return False
        if days is None:
            return True
        close = state[2]
        return close is not None and days[0] <= close <= days[1]

    # (bucket, deal id, amount at start, amount at end); "changed" is sorted out once the
    # currency is known: increased, decreased or unchanged.
    changes: list[tuple[str, str, Money | None, Money | None]] = []
    opening: list[Money | None] = []
    closing: list[Money | None] = []
    for opp_id, before, after in ends:
        was, now = inside(before), inside(after)
        old = before[1] if before is not None else None
        new = after[1] if after is not None else None
        if was:
            opening.append(old)
        if now:
            closing.append(new)
        if was and now:
            changes.append(("changed", opp_id, old, new))
        elif was and after is not None:
            outcome = after[0]
            bucket = "won" if outcome == "won" else "lost" if outcome == "lost" else "pushed_out"
            changes.append((bucket, opp_id, old, None))
        elif now:
            bucket = "new" if before is None else "reopened" if before[0] != "open" else "pulled_in"
            changes.append((bucket, opp_id, None, new))

    money = _Money(code, rates, _common.local_date(last, zone), [*opening, *closing])
    totals = dict.fromkeys(BUCKETS, Decimal(0))
    counts = dict.fromkeys(BUCKETS, 0)
    entries: dict[str, list[MovementEntry]] = {bucket: [] for bucket in BUCKETS}
    for bucket, opp_id, old, new in changes:
        if bucket == "changed":
            start_value, end_value = money.value(old), money.value(new)
            if start_value == end_value:
                continue
            if end_value > start_value:
                bucket, value = "increased", EXACT.subtract(end_value, start_value)
            else:
                bucket, value = "decreased", EXACT.subtract(start_value, end_value)
        else:
            value = money.value(old if new is None else new)
        totals[bucket] = EXACT.add(totals[bucket], value)
        counts[bucket] += 1
        entries[bucket].append(MovementEntry(opp_id, bucket, money.cash(value)))
    return Movement(
        opening=money.cash(money.total(opening)),
        closing=money.cash(money.total(closing)),
        counts={"opening": len(opening), **counts, "closing": len(closing)},
        entries=Table.of(
            MovementEntry,
            [entry for bucket in BUCKETS for entry in entries[bucket]],
            title="Pipeline movement by deal",
        ),
        **{bucket: money.cash(totals[bucket]) for bucket in BUCKETS},
    )


class _Money:
    """Amounts in one currency: the deals' own, or ``currency`` converted at one date."""

    def __init__(
        self,
        currency: str | None,
        rates: ExchangeRates | None,
        on: date,
        amounts: list[Money | None],
    ) -> None:
        self.rates = rates
        self.on = on
        found = sorted({money.currency for money in amounts if money is not None})
        if currency is None:
            if len(found) > 1:
                raise CurrencyMismatchError(
                    f"The deals are in {', '.join(found)}: pass currency= and rates= to convert "
                    "them to one currency; nothing is summed across currencies."
                )
            currency = found[0] if found else None
        elif rates is None:
            others = [code for code in found if code != currency]
            if others:
                raise CurrencyMismatchError(
                    f"Some deals are in {', '.join(others)}, not {currency}: pass rates= to "
                    "convert them."
                )
        self.currency = currency
        self._factors: dict[str, Callable[[Decimal], Decimal]] = {}

    def value(self, money: Money | None) -> Decimal:
        if money is None:
            return Decimal(0)
        if money.currency == self.currency or self.rates is None or self.currency is None:
            return money.amount
        convert = self._factors.get(money.currency)
        if convert is None:
            convert = self._factors[money.currency] = self.rates.conversion(
                money.currency, self.currency, on=self.on
            )
        return convert(money.amount)

    def total(self, amounts: list[Money | None]) -> Decimal:
        result = Decimal(0)
        for money in amounts:
            result = EXACT.add(result, self.value(money))
        return result

    def cash(self, value: Decimal) -> Money | None:
        return None if self.currency is None else Money._exact(value, self.currency)


__all__ = ["BUCKETS", "Movement", "MovementEntry", "MovementRow", "pipeline_movement"]
