"""The events an opportunity's history is made of.

Events are facts: once recorded they are never changed.  Each carries the opportunity's id,
its version (1 for ``Opened``, then one more for each event), ``at`` (when it happened, the
valid time), ``recorded_at`` (when oppcore recorded it) and ``by`` (who did it, if known).
``Opened`` holds the whole initial state, pipeline included, so ``Opportunity.replay``
needs nothing else.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TypeAlias

import attrs

from oppcore.domain.line_items import LineItem
from oppcore.domain.money import Money
from oppcore.domain.stages import Pipeline


@attrs.frozen(kw_only=True)
class _Event:
    opportunity_id: str
    version: int
    at: datetime
    recorded_at: datetime
    by: str | None = None


@attrs.frozen(kw_only=True)
class Opened(_Event):
    """The deal was opened; holds its whole initial state.

    ``amount`` is a budget typed by hand (None when the amount comes from the lines or is
    unknown); ``manual_probability`` says whether ``probability`` was set by hand.
    """

    name: str
    pipeline: Pipeline
    stage: str
    probability: Decimal
    manual_probability: bool = False
    type: str | None = None
    currency: str | None = None
    amount: Money | None = None
    expected_close: date | None = None
    campaign_id: str | None = None
    lead_id: str | None = None
    lead_source: str | None = None
    owner: str | None = None
    account: str | None = None
    description: str = ""
    line_items: tuple[LineItem, ...] = ()


@attrs.frozen(kw_only=True)
class StageChanged(_Event):
    """The deal moved between two open stages, or between two stages of the same outcome."""

    from_stage: str
    to_stage: str
    probability: Decimal
    manual_probability: bool = False


@attrs.frozen(kw_only=True)
class Won(_Event):
    """The deal moved into a won stage; its probability is 100 from here."""

    from_stage: str
    to_stage: str


@attrs.frozen(kw_only=True)
class Lost(_Event):
    """The deal moved into a lost stage; its probability is 0 from here."""

    from_stage: str
    to_stage: str
    reason: str | None = None


@attrs.frozen(kw_only=True)
class Reopened(_Event):
    """A closed deal went back to an open stage; ``closed_at`` and the lost reason are cleared."""

    from_stage: str
    to_stage: str
    probability: Decimal
    manual_probability: bool = False


#: The fields ``FieldsChanged`` can carry, in the order ``Opportunity.update`` takes them.
UPDATABLE_FIELDS = (
    "name",
    "type",
    "amount",
    "currency",
    "probability",
    "expected_close",
    "campaign_id",
    "lead_id",
    "lead_source",
    "owner",
    "account",
    "description",
)


@attrs.frozen(kw_only=True)
class FieldsChanged(_Event):
    """Plain fields changed.  ``fields`` names those that did; the others are left as None.

    ``amount`` is the hand-typed amount: None in ``fields`` means "back to the line total".
    ``probability`` None in ``fields`` means "back to the stage's default".
    """

    fields: tuple[str, ...]
    name: str | None = None
    type: str | None = None
    amount: Money | None = None
    currency: str | None = None
    probability: Decimal | None = None
    expected_close: date | None = None
    campaign_id: str | None = None
    lead_id: str | None = None
    lead_source: str | None = None
    owner: str | None = None
    account: str | None = None
    description: str | None = None


@attrs.frozen(kw_only=True)
class LineItemAdded(_Event):
    """A line was added."""

    item: LineItem


@attrs.frozen(kw_only=True)
class LineItemRemoved(_Event):
    """The line ``item_id`` was removed."""

    item_id: str


@attrs.frozen(kw_only=True)
class LineItemChanged(_Event):
    """The line ``item.id`` was replaced by ``item``."""

    item: LineItem


Event: TypeAlias = (
    Opened
    | StageChanged
    | FieldsChanged
    | LineItemAdded
    | LineItemRemoved
    | LineItemChanged
    | Won
    | Lost
    | Reopened
)

EVENT_TYPES: tuple[type[Event], ...] = (
    Opened,
    StageChanged,
    FieldsChanged,
    LineItemAdded,
    LineItemRemoved,
    LineItemChanged,
    Won,
    Lost,
    Reopened,
)

__all__ = [
    "EVENT_TYPES",
    "Event",
    "FieldsChanged",
    "LineItemAdded",
    "LineItemChanged",
    "LineItemRemoved",
    "Lost",
    "Opened",
    "Reopened",
    "StageChanged",
    "Won",
]
