"""The pipeline as it stood on a past day, and how expected close dates slipped."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.effectiveness import _ATTRIBUTES, _key_function, _ordered, _title

if TYPE_CHECKING:
    from narwhals.typing import IntoFrameT
from oppcore.analytics.table import Table
from oppcore.domain.opportunity import Opportunity
from oppcore.exceptions import ValidationError


@overload
def snapshot(
    opps: Iterable[Opportunity],
    *,
    as_of: datetime | date,
    known_at: datetime | date | None = None,
    time_zone: _common.ZoneLike = None,
) -> list[Opportunity]: ...


@overload
def snapshot(
    opps: IntoFrameT,
    *,
    as_of: datetime | date,
    known_at: datetime | date | None = None,
    time_zone: _common.ZoneLike = None,
) -> IntoFrameT: ...


def snapshot(
    opps: _common.Deals,
    *,
    as_of: datetime | date,
    known_at: datetime | date | None = None,
    time_zone: _common.ZoneLike = None,
) -> Any:
    """Each deal as it stood at valid time ``as_of``, leaving out deals not yet open then.

    Given a deal frame, the rows standing then, as a frame of the same engine.

    With ``known_at``, only what had been recorded by then counts: a change recorded later
    but back-dated to before ``as_of`` is left out, as a report run at ``known_at`` saw it.
    A date for either means the end of that day in ``time_zone`` (default UTC).
    """
    if as_of is None:
        raise ValidationError("snapshot needs as_of=, the time to read the pipeline at.")
    zone = _common.time_zone(time_zone)
    moment = _common.instant(as_of, "as_of", zone)
    known = None if known_at is None else _common.instant(known_at, "known_at", zone)
    if _frames.looks_like_frame(opps):
        return _frames.snapshot(opps, as_of=moment, known_at=known)
    deals = _common.deals(opps, None)
    result = []
    for opp in deals:
        state: Opportunity | None = opp
        if known is not None:
            state = opp.as_known_at(known)
        if state is not None:
            state = state.as_of(moment)
        if state is not None:
            result.append(state)
    return result


@attrs.frozen
class SlippageRow:
    """How a deal's expected close moved later.

    ``pushes``: times the expected close was moved to a later date; ``days_slipped``: the
    days those moves added up to (moves earlier do not subtract); ``first_expected_close``
    and ``last_expected_close``: the first date the deal had and the one it had last
    (a date cleared afterwards leaves the last one it had).
    """

    opportunity_id: str
    owner: str | None
    pushes: int
    days_slipped: Decimal
    first_expected_close: date | None
    last_expected_close: date | None


def _slipped(
    opportunity_id: str, owner: str | None, closes: Iterable[date | None]
) -> SlippageRow | None:
    """The deal's slippage from its expected close after each event, in order (both routes
    read it off the deal's history rows)."""
    first: date | None = None
    last: date | None = None
    pushes = 0
    slipped = 0
    for new in closes:
        if new is None:  # cleared: the next date is compared with the last one known
            continue
        if first is None:
            first = new
        elif last is not None and new > last:
            pushes += 1
            slipped += (new - last).days
        last = new
    if first is None:
        return None
    return SlippageRow(opportunity_id, owner, pushes, Decimal(slipped), first, last)


def _slipped_deal(opp: Opportunity) -> SlippageRow | None:
    closes = [row.expected_close for row in _common.history(opp)]
    return _slipped(opp.id, opp.owner, closes)


def _ranked(rows: list[SlippageRow]) -> list[SlippageRow]:
    """Most-slipped first (days, then pushes), then in opportunity id order: never the order
    the deals came in (DESIGN section 8)."""
    return sorted(rows, key=lambda row: (-row.days_slipped, -row.pushes, row.opportunity_id))


def slippage(opps: _common.Deals) -> Table[SlippageRow]:
    """Per deal that ever had an expected close: how often and how far it was pushed out.

    Expected closes are dates, and days slipped are days between dates: no time zone
    enters, so ``slippage`` takes no ``time_zone``.

    A date cleared and set again is compared with the last date the deal had.  Rows come
    most-slipped first (days, then pushes), then in opportunity id order: never in the order
    given.  The dates are those of each deal's
    history as known now (its rows with ``recorded_to`` None), on a deal frame too.
    """
    if _frames.looks_like_frame(opps):
        closes = _frames.expected_closes(opps)
        owners = _frames.current_values(opps, ["owner"])
        found = [_slipped(key, owners.get(key, (None,))[0], dates) for key, dates in closes.items()]
    else:
        found = [_slipped_deal(opp) for opp in _common.deals(opps, None)]
    return Table.of(
        SlippageRow, _ranked([row for row in found if row is not None]), title="Slippage"
    )


@attrs.frozen
class SlippageSummaryRow:
    """Slippage of one key's deals: deals with an expected close, pushes, days slipped."""

    key: Any
    opportunities: int
    pushes: int
    days_slipped: Decimal


def slippage_summary(
    opps: _common.Deals,
    *,
    by: Literal["campaign", "lead_source", "type", "owner", "account"]
    | Callable[[Any], Hashable] = "owner",
) -> Table[SlippageSummaryRow]:
    """``slippage`` added up per owner (or another key, as ``effectiveness`` takes it);
    rows in key order, deals without a key last.

    On a deal frame, a function ``by`` receives each deal's current ``DealVersion``.
    """
    key_of = _key_function(by)
    found: list[tuple[Hashable, SlippageRow]] = []
    if _frames.looks_like_frame(opps):
        closes = _frames.expected_closes(opps)
        column = None if callable(by) else _ATTRIBUTES[str(by)]
        values = _frames.current_values(opps, ["owner"] if column is None else ["owner", column])
        current = (
            {row.opportunity_id: row for row in _frames.current_rows(opps)} if callable(by) else {}
        )
        for opp_id, dates in closes.items():
            known = values.get(opp_id, (None, None))
            row = _slipped(opp_id, known[0], dates)
            if row is not None:
                found.append((by(current[opp_id]) if callable(by) else known[1], row))
    else:
        for opp in _common.deals(opps, None):
            row = _slipped_deal(opp)
            if row is not None:
                found.append((key_of(opp), row))
    totals: dict[Hashable, list[int]] = {}
    for key, row in found:
        try:
            tally = totals.setdefault(key, [0, 0, 0])
        except TypeError:
            raise ValidationError(f"by= gave an unhashable key {short(key)}.") from None
        tally[0] += 1
        tally[1] += row.pushes
        tally[2] += int(row.days_slipped)
    rows = []
    for key in _ordered(totals):
        deals, pushes, days = totals[key]
        rows.append(SlippageSummaryRow(key, deals, pushes, Decimal(days)))
    return Table.of(SlippageSummaryRow, rows, title=f"Slippage by {_title(by)}")


__all__ = [
    "SlippageRow",
    "SlippageSummaryRow",
    "slippage",
    "slippage_summary",
    "snapshot",
]
