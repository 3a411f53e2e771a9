"""The deal table: one row per state of a deal, in valid time and recorded time both.

``project`` is the one place outside ``Opportunity`` that knows what a deal's history means:
it turns the states after each event into ``DealVersion`` rows.  Every reader of the table
(the stores, the dataframe analytics, SQL users) reads these rows and never the events.

The rules, from DESIGN section 8:

- A row stands at valid time ``t`` when ``valid_from <= t < valid_to`` and is known at ``k``
  when ``recorded_from <= k < recorded_to`` (``None``: no end).
- An event recorded later than its ``at`` (back-dated) closes the standing row
  (``recorded_to`` = the event's recorded time) and adds, recorded from then, the old state on
  ``[valid_from, at)`` and the new state from ``at``.  Any other event, or one recorded in the
  same instant as the standing row, ends the standing row's ``valid_to`` in place.
- So the rows standing at ``t`` as known at ``k`` are ``opp.as_known_at(k).as_of(t)`` for
  every ``t <= k``: nobody records the future.

Recorded time is the running maximum of the events' ``recorded_at``: ``as_known_at`` reads the
events in the order they were appended and stops at the first one recorded after ``k``, so an
event stamped earlier than the one before it is known only from that one's time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from oppcore.domain.events import Event
    from oppcore.domain.opportunity import Opportunity

_UTC = timezone.utc

# The columns in table order: the stores, the frames and the docs all use this one list.
COLUMNS: tuple[str, ...] = (
    "opportunity_id",
    "version",
    "valid_from",
    "valid_to",
    "recorded_from",
    "recorded_to",
    "name",
    "pipeline_id",
    "stage",
    "outcome",
    "forecast_category",
    "amount",
    "currency",
    "probability",
    "expected_revenue",
    "expected_close",
    "created_at",
    "closed_at",
    "type",
    "campaign_id",
    "lead_id",
    "lead_source",
    "owner",
    "account",
    "lost_reason",
)


# A million deals make several million rows: no weak-reference slot.
@attrs.frozen(weakref_slot=False)
class DealVersion:
    """One state of one deal, and the valid and recorded time it stands for.

    Values are plain ``str``, ``Decimal``, ``date`` and aware UTC ``datetime``: ``amount``
    and ``expected_revenue`` are exact decimals in ``currency``, ``probability`` a percentage,
    ``outcome`` one of ``"open"``, ``"won"``, ``"lost"`` and ``forecast_category`` the
    category's value (``"pipeline"``, ...).
    """

    opportunity_id: str
    version: int
    valid_from: datetime
    valid_to: datetime | None
    recorded_from: datetime
    recorded_to: datetime | None
    name: str
    pipeline_id: str
    stage: str
    outcome: str
    forecast_category: str
    amount: Decimal | None
    currency: str | None
    probability: Decimal
    expected_revenue: Decimal | None
    expected_close: date | None
    created_at: datetime
    closed_at: datetime | None
    type: str | None
    campaign_id: str | None
    lead_id: str | None
    lead_source: str | None
    owner: str | None
    account: str | None
    lost_reason: str | None

    def stands_at(self, t: datetime, known_at: datetime | None = None) -> bool:
        """Whether the row shows the deal at valid time ``t`` as known at ``known_at``.

        ``known_at`` None means as known now: only rows not revised since.
        """
        if not (self.valid_from <= t and (self.valid_to is None or t < self.valid_to)):
            return False
        if known_at is None:
            return self.recorded_to is None
        return self.recorded_from <= known_at and (
            self.recorded_to is None or known_at < self.recorded_to
        )

    @property
    def is_current(self) -> bool:
        """The deal's state now, as known now: open-ended in both times."""
        return self.valid_to is None and self.recorded_to is None


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; as it is when UTC cannot show it (the first hour of year 1 in a
    zone east of Greenwich is in year 0 in UTC): the same instant, still aware."""
    try:
        return moment.astimezone(_UTC)
    except OverflowError:
        return moment


def _row(
    state: Opportunity, valid_from: datetime, recorded_from: datetime, version: int
) -> DealVersion:
    amount = state.amount
    revenue = state.expected_revenue
    stage = state.stage
    return DealVersion(
        opportunity_id=state.id,
        version=version,
        valid_from=valid_from,
        valid_to=None,
        recorded_from=recorded_from,
        recorded_to=None,
        name=state.name,
        pipeline_id=state.pipeline.id,
        stage=stage.key,
        outcome=stage.outcome.value,
        forecast_category=stage.forecast_category.value,
        amount=None if amount is None else amount.amount,
        currency=state.currency,
        probability=state.probability,
        expected_revenue=None if revenue is None else revenue.amount,
        expected_close=state.expected_close,
        created_at=_utc(state.created_at),
        closed_at=None if state.closed_at is None else _utc(state.closed_at),
        type=state.type,
        campaign_id=state.campaign_id,
        lead_id=state.lead_id,
        lead_source=state.lead_source,
        owner=state.owner,
        account=state.account,
        lost_reason=state.lost_reason,
    )


def folded(opp: Opportunity) -> Iterator[tuple[Event, Opportunity]]:
    """Each of the deal's events with the state right after it: the deal's own fold, once."""
    return zip(opp.events, opp._states(), strict=True)


def versions(opp: Opportunity) -> tuple[DealVersion, ...]:
    """The deal's rows: ``Opportunity.versions()``."""
    return project(folded(opp))


def project(
    states: Iterable[tuple[Event, Opportunity]],
    *,
    standing: DealVersion | None = None,
    known: datetime | None = None,
) -> tuple[DealVersion, ...]:
    """The rows of one deal from each event and the state right after it, in order.

    ``standing`` and ``known``: the row standing before these events and the running
    maximum of recorded times so far, to project only a deal's new events (``tail``).
    """
    rows: list[DealVersion] = [] if standing is None else [standing]
    at_standing = len(rows) - 1  # index in rows of the row open-ended in both times
    for event, state in states:
        at = _utc(event.at)
        recorded = _utc(event.recorded_at)
        known = recorded if known is None or recorded > known else known
        if at_standing >= 0:
            old = rows[at_standing]
            if at < known and old.recorded_from < known:
                # Back-dated: what was known until now stays readable as known then.
                rows[at_standing] = attrs.evolve(old, recorded_to=known)
                rows.append(attrs.evolve(old, valid_to=at, recorded_from=known))
            else:
                rows[at_standing] = attrs.evolve(old, valid_to=at)
        rows.append(_row(state, at, known, event.version))
        at_standing = len(rows) - 1
    return tuple(rows)


def tail(previous: Opportunity, events: Sequence[Event]) -> tuple[DealVersion, ...]:
    """The rows of version ``previous.version`` and later of the deal ``previous`` becomes
    after ``events`` (its next ones): what a store replaces when they are saved, without
    folding the deal's earlier history again.  Equal to those rows of the whole
    projection: the row standing after the last event is always the one its state made."""
    known = max(_utc(event.recorded_at) for event in previous.events)
    last = previous.events[-1]
    standing = _row(previous, _utc(last.at), known, previous.version)
    pairs = []
    state = previous
    for event in events:
        state = state._apply(event)
        pairs.append((event, state))
    return project(pairs, standing=standing, known=known)
