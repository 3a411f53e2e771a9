"""Leads and campaigns: where deals come from."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import attrs

from oppcore import clock as _clock
from oppcore.domain import _checks
from oppcore.domain.money import Money, as_money
from oppcore.domain.opportunity import Opportunity
from oppcore.exceptions import CurrencyMismatchError, ValidationError


def _id(what: str) -> Any:
    return lambda value: _checks.text(value, what, allow_empty=False)


def _optional(what: str) -> Any:
    return lambda value: _checks.optional_text(value, what)


@attrs.frozen
class Lead:
    """A prospect not yet qualified into a deal, and the channel (``source``) it came through."""

    id: str = attrs.field(converter=_id("Lead id"))
    name: str = attrs.field(converter=_id("Lead name"))
    company: str | None = attrs.field(default=None, converter=_optional("Company"))
    source: str | None = attrs.field(default=None, converter=_optional("Lead source"))
    campaign_id: str | None = attrs.field(default=None, converter=_optional("Campaign id"))
    created_at: datetime | None = attrs.field(
        default=None, converter=lambda v: _checks.optional_aware(v, "Lead created_at")
    )

    def convert(
        self,
        *,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
        **opportunity_fields: Any,
    ) -> Opportunity:
        """Open an opportunity from this lead, carrying its id, source and campaign.

        Other ``Opportunity.open`` arguments pass through; ``name`` defaults to the
        company (or the lead's name), ``account`` to the company.
        """
        for name in ("lead_id", "lead_source"):
            if name in opportunity_fields:
                raise ValidationError(f"convert() sets {name} from the lead; do not pass it.")
        fields: dict[str, Any] = {
            "name": self.company or self.name,
            "account": self.company,
            "campaign_id": self.campaign_id,
        }
        fields.update(opportunity_fields)
        return Opportunity.open(
            lead_id=self.id, lead_source=self.source, at=at, by=by, clock=clock, **fields
        )


def _optional_money(what: str) -> Any:
    return lambda value: None if value is None else as_money(value, what)


@attrs.frozen
class Campaign:
    """A marketing campaign deals are attributed to, with what it was meant to and did cost."""

    id: str = attrs.field(converter=_id("Campaign id"))
    name: str = attrs.field(converter=_id("Campaign name"))
    type: str | None = attrs.field(default=None, converter=_optional("Campaign type"))
    start: date | None = attrs.field(
        default=None, converter=lambda v: _checks.optional_day(v, "Campaign start")
    )
    end: date | None = attrs.field(
        default=None, converter=lambda v: _checks.optional_day(v, "Campaign end")
    )
    budgeted_cost: Money | None = attrs.field(
        default=None, converter=_optional_money("Budgeted cost")
    )
    actual_cost: Money | None = attrs.field(default=None, converter=_optional_money("Actual cost"))

    def __attrs_post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValidationError(
                f"Campaign {self.id!r} ends {self.end} before it starts {self.start}."
            )
        for cost in (self.budgeted_cost, self.actual_cost):
            if cost is not None and cost.amount < 0:
                raise ValidationError(f"Campaign {self.id!r} has a negative cost {cost!r}.")
        if (
            self.budgeted_cost is not None
            and self.actual_cost is not None
            and self.budgeted_cost.currency != self.actual_cost.currency
        ):
            raise CurrencyMismatchError(
                f"Campaign {self.id!r} budgets in {self.budgeted_cost.currency!r} "
                f"but spent in {self.actual_cost.currency!r}."
            )
