"""The pipeline as it stood on a past day, and how expected close dates slipped."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.effectiveness import _key_function, _ordered, _title

if TYPE_CHECKING:
    from narwhals.typing import IntoFrameT
from oppcore.analytics.table import Table
from oppcore.domain.events import FieldsChanged, Opened
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


def _slipped(opp: Opportunity) -> SlippageRow | None:
    first: date | None = None
    last: date | None = None
    pushes = 0
    slipped = 0
    for event in opp.events:
        if not isinstance(event, Opened) and not (
            isinstance(event, FieldsChanged) and "expected_close" in event.fields
        ):
            continue
        new = event.expected_close
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
    return SlippageRow(opp.id, opp.owner, pushes, Decimal(slipped), first, last)


def slippage(opps: Iterable[Opportunity]) -> Table[SlippageRow]:
    """Per deal that ever had an expected close: how often and how far it was pushed out.

    Expected closes are dates, and days slipped are days between dates: no time zone
    enters, so ``slippage`` takes no ``time_zone``.

    A date cleared and set again is compared with the last date the deal had.  Rows come
    most-slipped first (days, then pushes), then in the order given.
    """
    rows = [row for row in map(_slipped, _common.deals(opps, None)) if row is not None]
    rows.sort(key=lambda row: (-row.days_slipped, -row.pushes))
    return Table.of(SlippageRow, rows, title="Slippage")


@attrs.frozen
class SlippageSummaryRow:
    """Slippage of one key's deals: deals with an expected close, pushes, days slipped."""

    key: Any
    opportunities: int
    pushes: int
    days_slipped: Decimal


def slippage_summary(
    opps: Iterable[Opportunity],
    *,
    by: Literal["campaign", "lead_source", "type", "owner", "account"]
    | Callable[[Opportunity], Hashable] = "owner",
) -> Table[SlippageSummaryRow]:
    """``slippage`` added up per owner (or another key, as ``effectiveness`` takes it);
    rows in key order, deals without a key last."""
    key_of = _key_function(by)
    totals: dict[Hashable, list[int]] = {}
    for opp in _common.deals(opps, None):
        row = _slipped(opp)
        if row is None:
            continue
        key = key_of(opp)
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
