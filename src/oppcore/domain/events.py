"""The events an opportunity's history is made of.

Events are facts: once recorded they are never changed.  Each carries the opportunity's id,
its version (1 for ``Opened``, then one more for each event), ``at`` (when it happened, the
valid time), ``recorded_at`` (when oppcore recorded it) and ``by`` (who did it, if known).
``Opened`` holds the whole initial state, pipeline included, so ``Opportunity.replay``
needs nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

from oppcore.domain import _checks
from oppcore.domain.line_items import LineItem
from oppcore.domain.money import Money, as_money, currency_code
from oppcore.domain.stages import Pipeline
from oppcore.exceptions import ValidationError

# Field converters: an event checks its own fields when it is built, so an event from a
# store, a file or a caller's hand is sound before the fold ever sees it.


def _id(value: object) -> str:
    return _checks.text(value, "Event opportunity_id", allow_empty=False)


def _version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            f"Event version {_checks.short(value)} is not a positive whole number."
        )
    return value


def _at(value: object) -> datetime:
    return _checks.aware(value, "Event time", to_utc=False)


def _recorded_at(value: object) -> datetime:
    return _checks.aware(value, "Event recorded_at", to_utc=False)


def _by(value: object) -> str | None:
    return _checks.optional_text(value, "by")


def _description(value: object) -> str:
    return _checks.text(value, "Description")


def _key(value: object) -> str:
    return _checks.text(value, "Stage key", allow_empty=False)


def _optional(what: str) -> Callable[[object], str | None]:
    """A converter for an optional text field whose errors name the field as ``what``."""

    def convert(value: object) -> str | None:
        return _checks.optional_text(value, what)

    convert.__name__ = convert.__qualname__ = f"_optional_{what.lower().replace(' ', '_')}"
    return convert


_type = _optional("Type")
_campaign_id = _optional("Campaign id")
_lead_id = _optional("Lead id")
_lead_source = _optional("Lead source")
_owner = _optional("Owner")
_account = _optional("Account")
_reason = _optional("Lost reason")
_optional_name = _optional("Opportunity name")


def _name(value: object) -> str:
    return _checks.text(value, "Opportunity name", allow_empty=False)


def _probability(value: object) -> Decimal:
    return _checks.percentage(value, "Probability")


def _optional_probability(value: object) -> Decimal | None:
    return None if value is None else _checks.percentage(value, "Probability")


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(
            f"manual_probability must be True or False, not {_checks.short(value)}."
        )
    return value


def _pipeline(value: object) -> Pipeline:
    if not isinstance(value, Pipeline):
        raise ValidationError(f"Opened needs a Pipeline, not {_checks.short(value)}.")
    return value


def _currency(value: object) -> str | None:
    return None if value is None else currency_code(value)


def _amount(value: object) -> Money | None:
    return None if value is None else as_money(value, "Amount")


def _day(value: object) -> date | None:
    return _checks.optional_day(value, "Expected close")


def _item_id(value: object) -> str:
    return _checks.text(value, "Line item id", allow_empty=False)


def _item(value: object) -> LineItem:
    if not isinstance(value, LineItem):
        raise ValidationError(f"A line item event needs a LineItem, not {_checks.short(value)}.")
    return value


def _items(value: object) -> tuple[LineItem, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValidationError(f"line_items must be a list of LineItem, not {_checks.short(value)}.")
    return tuple(_item(item) for item in value)


# Millions of events live in memory at once: no weak-reference slot (8 bytes each).
@attrs.frozen(kw_only=True, weakref_slot=False)
class _Event:
    opportunity_id: str = attrs.field(converter=_id)
    version: int = attrs.field(converter=_version)
    at: datetime = attrs.field(converter=_at)
    recorded_at: datetime = attrs.field(converter=_recorded_at)
    by: str | None = attrs.field(default=None, converter=_by)

    @classmethod
    def _trusted(cls, **values: Any) -> Self:
        """Build from values a command has already checked, skipping the field converters.

        Only ``Opportunity``'s commands call this: they validate every argument first, so
        checking again would only cost time.  Every other way in (a store, a file, a caller)
        goes through ``__init__`` and its checks.
        """
        event = object.__new__(cls)
        for field in attrs.fields(cls):
            object.__setattr__(event, field.name, values.get(field.name, field.default))
        return event

    def __attrs_post_init__(self) -> None:
        if self.at > self.recorded_at:
            raise ValidationError(
                f"Event time {self.at.isoformat()} is after it was recorded at "
                f"{self.recorded_at.isoformat()}."
            )


@attrs.frozen(kw_only=True, weakref_slot=False)
class Opened(_Event):
    """The deal was opened; holds its whole initial state.

    ``amount`` is a budget typed by hand (None when the amount comes from the lines or is
    unknown); ``manual_probability`` says whether ``probability`` was set by hand.
    """

    name: str = attrs.field(converter=_name)
    pipeline: Pipeline = attrs.field(converter=_pipeline)
    stage: str = attrs.field(converter=_key)
    probability: Decimal = attrs.field(converter=_probability)
    manual_probability: bool = attrs.field(default=False, converter=_flag)
    type: str | None = attrs.field(default=None, converter=_type)  # type: ignore[misc]
    currency: str | None = attrs.field(default=None, converter=_currency)
    amount: Money | None = attrs.field(default=None, converter=_amount)
    expected_close: date | None = attrs.field(default=None, converter=_day)
    campaign_id: str | None = attrs.field(default=None, converter=_campaign_id)  # type: ignore[misc]
    lead_id: str | None = attrs.field(default=None, converter=_lead_id)  # type: ignore[misc]
    lead_source: str | None = attrs.field(default=None, converter=_lead_source)  # type: ignore[misc]
    owner: str | None = attrs.field(default=None, converter=_owner)  # type: ignore[misc]
    account: str | None = attrs.field(default=None, converter=_account)  # type: ignore[misc]
    description: str = attrs.field(default="", converter=_description)
    line_items: tuple[LineItem, ...] = attrs.field(default=(), converter=_items)


@attrs.frozen(kw_only=True, weakref_slot=False)
class StageChanged(_Event):
    """The deal moved between two open stages, or between two stages of the same outcome."""

    from_stage: str = attrs.field(converter=_key)
    to_stage: str = attrs.field(converter=_key)
    probability: Decimal = attrs.field(converter=_probability)
    manual_probability: bool = attrs.field(default=False, converter=_flag)


@attrs.frozen(kw_only=True, weakref_slot=False)
class Won(_Event):
    """The deal moved into a won stage; its probability is 100 from here."""

    from_stage: str = attrs.field(converter=_key)
    to_stage: str = attrs.field(converter=_key)


@attrs.frozen(kw_only=True, weakref_slot=False)
class Lost(_Event):
    """The deal moved into a lost stage; its probability is 0 from here."""

    from_stage: str = attrs.field(converter=_key)
    to_stage: str = attrs.field(converter=_key)
    reason: str | None = attrs.field(default=None, converter=_reason)  # type: ignore[misc]


@attrs.frozen(kw_only=True, weakref_slot=False)
class Reopened(_Event):
    """A closed deal went back to an open stage; ``closed_at`` and the lost reason are cleared."""

    from_stage: str = attrs.field(converter=_key)
    to_stage: str = attrs.field(converter=_key)
    probability: Decimal = attrs.field(converter=_probability)
    manual_probability: bool = attrs.field(default=False, converter=_flag)


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


def _field_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, (tuple, list)) or not all(name in UPDATABLE_FIELDS for name in value):
        raise ValidationError(
            f"FieldsChanged names fields {_checks.short(value)}; each must be one of "
            f"{', '.join(UPDATABLE_FIELDS)}."
        )
    if len(set(value)) != len(value):
        raise ValidationError(f"FieldsChanged names a field twice in {_checks.short(value)}.")
    return tuple(value)


def _optional_description(value: object) -> str | None:
    return None if value is None else _checks.text(value, "Description")


@attrs.frozen(kw_only=True, weakref_slot=False)
class FieldsChanged(_Event):
    """Plain fields changed.  ``fields`` names those that did; the others are left as None.

    ``amount`` is the hand-typed amount: None in ``fields`` means "back to the line total".
    ``probability`` None in ``fields`` means "back to the stage's default".
    """

    fields: tuple[str, ...] = attrs.field(converter=_field_names)
    name: str | None = attrs.field(default=None, converter=_optional_name)  # type: ignore[misc]
    type: str | None = attrs.field(default=None, converter=_type)  # type: ignore[misc]
    amount: Money | None = attrs.field(default=None, converter=_amount)
    currency: str | None = attrs.field(default=None, converter=_currency)
    probability: Decimal | None = attrs.field(default=None, converter=_optional_probability)
    expected_close: date | None = attrs.field(default=None, converter=_day)
    campaign_id: str | None = attrs.field(default=None, converter=_campaign_id)  # type: ignore[misc]
    lead_id: str | None = attrs.field(default=None, converter=_lead_id)  # type: ignore[misc]
    lead_source: str | None = attrs.field(default=None, converter=_lead_source)  # type: ignore[misc]
    owner: str | None = attrs.field(default=None, converter=_owner)  # type: ignore[misc]
    account: str | None = attrs.field(default=None, converter=_account)  # type: ignore[misc]
    description: str | None = attrs.field(default=None, converter=_optional_description)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for name in UPDATABLE_FIELDS:
            if name not in self.fields and getattr(self, name) is not None:
                raise ValidationError(
                    f"FieldsChanged carries {name!r} without naming it in fields."
                )
        if "name" in self.fields and self.name is None:
            raise ValidationError("FieldsChanged cannot set the opportunity name to None.")
        if "description" in self.fields and self.description is None:
            raise ValidationError("FieldsChanged cannot set the description to None; use ''.")


@attrs.frozen(kw_only=True, weakref_slot=False)
class LineItemAdded(_Event):
    """A line was added."""

    item: LineItem = attrs.field(converter=_item)


@attrs.frozen(kw_only=True, weakref_slot=False)
class LineItemRemoved(_Event):
    """The line ``item_id`` was removed."""

    item_id: str = attrs.field(converter=_item_id)


@attrs.frozen(kw_only=True, weakref_slot=False)
class LineItemChanged(_Event):
    """The line ``item.id`` was replaced by ``item``."""

    item: LineItem = attrs.field(converter=_item)


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
