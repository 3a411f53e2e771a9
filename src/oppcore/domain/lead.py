"""Leads and campaigns: where deals come from."""

from __future__ import annotations

import inspect
from datetime import date, datetime
from typing import Any

import attrs

from oppcore import clock as _clock
from oppcore.domain import _checks
from oppcore.domain.money import Money, as_money
from oppcore.domain.opportunity import Opportunity
from oppcore.exceptions import CurrencyMismatchError, ValidationError


# One named converter per field, so that each error names the field (and mypy can see them).
def _lead_id(value: object) -> str:
    return _checks.text(value, "Lead id", allow_empty=False)


def _lead_name(value: object) -> str:
    return _checks.text(value, "Lead name", allow_empty=False)


def _company(value: object) -> str | None:
    return _checks.optional_text(value, "Company")


def _source(value: object) -> str | None:
    return _checks.optional_text(value, "Lead source")


def _campaign_id(value: object) -> str:
    return _checks.text(value, "Campaign id", allow_empty=False)


def _optional_campaign_id(value: object) -> str | None:
    return _checks.optional_text(value, "Campaign id")


def _campaign_name(value: object) -> str:
    return _checks.text(value, "Campaign name", allow_empty=False)


def _campaign_type(value: object) -> str | None:
    return _checks.optional_text(value, "Campaign type")


def _created_at(value: object) -> datetime | None:
    return _checks.optional_aware(value, "Lead created_at")


def _start(value: object) -> date | None:
    return _checks.optional_day(value, "Campaign start")


def _end(value: object) -> date | None:
    return _checks.optional_day(value, "Campaign end")


def _budgeted_cost(value: object) -> Money | None:
    return None if value is None else as_money(value, "Budgeted cost")


def _actual_cost(value: object) -> Money | None:
    return None if value is None else as_money(value, "Actual cost")


def _version(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValidationError(
            f"A stored version must be a whole number 0 or more, not {_checks.short(value)}."
        )
    return value


_OPEN_ARGUMENTS = frozenset(inspect.signature(Opportunity.open).parameters) - {"cls"}


@attrs.frozen
class Lead:
    """A prospect not yet qualified into a deal, and the channel (``source``) it came through."""

    id: str = attrs.field(converter=_lead_id)
    name: str = attrs.field(converter=_lead_name)
    company: str | None = attrs.field(default=None, converter=_company)
    source: str | None = attrs.field(default=None, converter=_source)
    campaign_id: str | None = attrs.field(default=None, converter=_optional_campaign_id)
    created_at: datetime | None = attrs.field(default=None, converter=_created_at)
    #: The version of the stored lead this value was read at (0: not read from a store).  The
    #: repository sets it and checks it on save, so a stale copy cannot replace a newer one.
    #: Not part of the lead's content: it takes no part in ``==``.
    version: int = attrs.field(default=0, kw_only=True, eq=False, converter=_version)

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
        unknown = sorted(set(opportunity_fields) - _OPEN_ARGUMENTS)
        if unknown:
            raise ValidationError(
                f"convert() passes Opportunity.open arguments, and {unknown[0]!r} is not one."
            )
        fields: dict[str, Any] = {
            "name": self.company or self.name,
            "account": self.company,
            "campaign_id": self.campaign_id,
        }
        fields.update(opportunity_fields)
        return Opportunity.open(
            lead_id=self.id, lead_source=self.source, at=at, by=by, clock=clock, **fields
        )


@attrs.frozen
class Campaign:
    """A marketing campaign deals are attributed to, with what it was meant to and did cost."""

    id: str = attrs.field(converter=_campaign_id)
    name: str = attrs.field(converter=_campaign_name)
    type: str | None = attrs.field(default=None, converter=_campaign_type)
    start: date | None = attrs.field(default=None, converter=_start)
    end: date | None = attrs.field(default=None, converter=_end)
    budgeted_cost: Money | None = attrs.field(default=None, converter=_budgeted_cost)
    actual_cost: Money | None = attrs.field(default=None, converter=_actual_cost)
    #: The version of the stored campaign this value was read at (0: not read from a store);
    #: set and checked by the repository, as ``Lead.version``.  It takes no part in ``==``.
    version: int = attrs.field(default=0, kw_only=True, eq=False, converter=_version)

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
