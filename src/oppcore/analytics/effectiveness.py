"""Effectiveness: which campaigns, lead sources and kinds of deal actually close."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.table import Table
from oppcore.clock import Clock
from oppcore.domain.lead import Campaign
from oppcore.domain.money import EXACT, ExchangeRates, Money
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import ForecastCategory
from oppcore.exceptions import ValidationError

_ATTRIBUTES = {
    "campaign": "campaign_id",
    "lead_source": "lead_source",
    "type": "type",
    "owner": "owner",
    "account": "account",
}


@attrs.frozen
class EffectivenessRow:
    """How the deals of one key did; ``key`` is None for deals without one.

    Two win rates, both named: ``win_rate`` is won / (won + lost), None while nothing has
    closed; ``win_rate_all`` is won / all opportunities, open ones included.  Rates and ROI
    are fractions (ROI 3 means 300 %).  ``avg_cycle_days`` is the mean of days from opening
    to close over won deals (their microseconds added up exactly, divided once).  Cost columns are filled for campaigns with a known cost; a
    campaign's cost is counted once, however many deals it brought.
    """

    key: Any
    opportunities: int
    open: int
    won: int
    lost: int
    win_rate: Decimal | None
    win_rate_all: Decimal | None
    won_revenue: Money | None
    pipeline: Money | None
    weighted: Money | None
    avg_won_deal: Money | None
    avg_cycle_days: Decimal | None
    cost: Money | None
    roi: Decimal | None
    cost_per_opportunity: Money | None
    cost_per_won: Money | None


@attrs.define
class _Tally:
    opportunities: int = 0
    open: int = 0
    won: int = 0
    lost: int = 0
    # Plain Decimals in the table's currency while counting; Money only in the rows.
    won_revenue: Decimal = Decimal(0)
    pipeline: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)
    won_with_amount: int = 0
    cycle_micro: int = 0  # the won deals' cycles added up, in microseconds: exact
    cycles: int = 0


def _key_function(by: object) -> Callable[[Opportunity], Hashable]:
    if callable(by):
        return by
    attribute = _ATTRIBUTES.get(by) if isinstance(by, str) else None
    if attribute is None:
        raise ValidationError(
            f"by={short(by)} is not one of {', '.join(repr(k) for k in _ATTRIBUTES)} "
            "or a function of an Opportunity."
        )
    return lambda opp: getattr(opp, attribute)


def _campaigns(campaigns: object) -> dict[str, Campaign]:
    if campaigns is None:
        return {}
    if isinstance(campaigns, (str, bytes)) or not isinstance(campaigns, Iterable):
        raise ValidationError(f"campaigns must be a list of Campaign, not {short(campaigns)}.")
    result: dict[str, Campaign] = {}
    for campaign in campaigns:
        if not isinstance(campaign, Campaign):
            raise ValidationError(f"{short(campaign)} is not a Campaign.")
        result[campaign.id] = campaign
    return result


def effectiveness(
    opps: _common.Deals,
    *,
    by: Literal["campaign", "lead_source", "type", "owner", "account"]
    | Callable[[Opportunity], Hashable],
    campaigns: Iterable[Campaign] | None = None,
    as_of: datetime | date | None = None,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    clock: Clock | None = None,
    time_zone: _common.ZoneLike = None,
) -> Table[EffectivenessRow]:
    """Counts, both win rates, revenue, pipeline and, for campaigns, cost and ROI, per key.

    Rows come in key order, with the row for deals without a key (``None``) last.  With
    ``by="campaign"`` every campaign given appears, even one that brought no deal.
    ``time_zone`` (default UTC) is the calendar of the days: ``as_of`` given as a date (the
    end of that day), the close dates rates are taken on, and ``avg_cycle_days``, counted as
    that zone's clocks show it (see ``sales_cycle``).
    """
    key_of = _key_function(by)
    known = _campaigns(campaigns)
    zone = _common.time_zone(time_zone)
    if _frames.looks_like_frame(opps):
        if callable(by):
            raise ValidationError(
                "A deal frame is grouped on its engine, by a column: by= takes 'campaign', "
                "'lead_source', 'type', 'owner' or 'account' with a frame, not a function."
            )
        found = _frames.effectiveness(
            opps,
            by=str(by),
            known=known,
            as_of=None if as_of is None else _common.instant(as_of, "as_of", zone),
            currency=currency,
            rates=rates,
            zone=zone,
            valued_on=_common.today(as_of, clock, zone),
        )
        return Table.of(EffectivenessRow, found, title=f"Effectiveness by {_title(by)}")
    deals = _common.deals(opps, as_of, zone)
    money = _common.Valuation(deals, currency, rates, _common.today(as_of, clock, zone), zone)
    tallies: dict[Hashable, _Tally] = {}
    if by == "campaign":
        for campaign_id in known:
            tallies[campaign_id] = _Tally()
    add, multiply, divide = EXACT.add, EXACT.multiply, EXACT.divide
    hundred = Decimal(100)
    fractions: dict[Decimal, Decimal] = {}
    for opp in deals:
        key = key_of(opp)
        try:
            tally = tallies.get(key)
        except TypeError:
            raise ValidationError(f"by= gave an unhashable key {short(key)}.") from None
        if tally is None:
            tally = tallies[key] = _Tally()
        tally.opportunities += 1
        stage = opp.stage
        if stage.is_open:
            tally.open += 1
            value = money.value(opp)
            if value is not None:
                if stage.forecast_category is not ForecastCategory.OMITTED:
                    tally.pipeline = add(tally.pipeline, value)
                factor = fractions.get(opp.probability)
                if factor is None:  # as Opportunity.expected_revenue computes it
                    factor = fractions[opp.probability] = divide(opp.probability, hundred)
                tally.weighted = add(tally.weighted, multiply(value, factor))
        elif stage.is_won:
            tally.won += 1
            value = money.value(opp)  # lost deals' amounts never count: not converted
            if value is not None:
                tally.won_revenue = add(tally.won_revenue, value)
                tally.won_with_amount += 1
            if opp.closed_at is not None:
                span = _common.local_span(opp.created_at, opp.closed_at, zone)
                tally.cycle_micro += _common.microseconds(span)
                tally.cycles += 1
        else:
            tally.lost += 1
    rows = _finished(
        tallies,
        by=by,
        known=known,
        money=money,
        cycle_days=lambda _, t: _common.mean_days(t.cycle_micro, t.cycles),
    )
    return Table.of(EffectivenessRow, rows, title=f"Effectiveness by {_title(by)}")


def _finished(
    tallies: Mapping[Hashable, _Tally],
    *,
    by: object,
    known: Mapping[str, Campaign],
    money: _common.Valuation,
    cycle_days: Callable[[Hashable, _Tally], Decimal | None],
) -> list[EffectivenessRow]:
    """The rows of the table, in key order; ``cycle_days`` gives each key's mean cycle."""
    code = money.currency

    def cash(amount: Decimal) -> Money | None:
        return None if code is None else Money._exact(amount, code)

    rows = []
    for key in _ordered(tallies):
        tally = tallies[key]
        won_revenue = cash(tally.won_revenue)
        cost = _cost(known.get(key) if by == "campaign" and isinstance(key, str) else None, money)
        rows.append(
            EffectivenessRow(
                key=key,
                opportunities=tally.opportunities,
                open=tally.open,
                won=tally.won,
                lost=tally.lost,
                win_rate=_common.ratio(tally.won, tally.won + tally.lost),
                win_rate_all=_common.ratio(tally.won, tally.opportunities),
                won_revenue=won_revenue,
                pipeline=cash(tally.pipeline),
                weighted=cash(tally.weighted),
                avg_won_deal=_common.per(won_revenue, tally.won_with_amount),
                avg_cycle_days=cycle_days(key, tally),
                cost=cost,
                roi=_roi(won_revenue, cost),
                cost_per_opportunity=_common.per(cost, tally.opportunities),
                cost_per_won=_common.per(cost, tally.won),
            )
        )
    return rows


def _ordered(keys: Iterable[Hashable]) -> list[Hashable]:
    """Keys in their own order (numbers as numbers), the None row last; text order when the
    keys cannot be compared with each other."""
    every = list(keys)
    present: list[Any] = [key for key in every if key is not None]
    try:
        present.sort()
    except TypeError:
        present.sort(key=str)
    return present + ([None] if None in every else [])


def _title(by: object) -> str:
    return by if isinstance(by, str) else getattr(by, "__name__", "key")


def _cost(campaign: Campaign | None, money: _common.Valuation) -> Money | None:
    if campaign is None or campaign.actual_cost is None:
        return None
    on = campaign.end or campaign.start or money.valued_on
    return money.convert(campaign.actual_cost, on)


def _roi(revenue: Money | None, cost: Money | None) -> Decimal | None:
    if cost is None or not cost.amount:
        return None
    gained = (revenue or Money.zero(cost.currency)) - cost
    return _common.ratio(gained.amount, cost.amount)


def campaign_effectiveness(
    opps: _common.Deals, campaigns: Iterable[Campaign] = (), **kw: Any
) -> Table[EffectivenessRow]:
    """``effectiveness(opps, by="campaign", campaigns=campaigns, ...)``."""
    return effectiveness(opps, by="campaign", campaigns=campaigns, **kw)


def lead_source_effectiveness(opps: _common.Deals, **kw: Any) -> Table[EffectivenessRow]:
    """``effectiveness(opps, by="lead_source", ...)``."""
    return effectiveness(opps, by="lead_source", **kw)


@attrs.frozen
class CycleStats:
    """Sales-cycle length in days, from opening to close: count, mean, median and p90."""

    count: int
    mean_days: Decimal | None
    median_days: Decimal | None
    p90_days: Decimal | None


def sales_cycle(
    opps: _common.Deals,
    *,
    basis: Literal["won", "closed"] = "won",
    time_zone: _common.ZoneLike = None,
) -> CycleStats:
    """Days from opening to close over won deals (``basis="won"``) or won and lost ("closed").

    Days are counted as the clocks of ``time_zone`` (default UTC) show them: a deal opened
    and closed at local midnights is a whole number of days long, even when daylight saving
    began or ended in between (then one day of it had 23 or 25 hours).
    """
    if basis not in ("won", "closed"):
        raise ValidationError(f"basis {short(basis)} is not 'won' or 'closed'.")
    zone = _common.time_zone(time_zone)
    if _frames.looks_like_frame(opps):
        lengths = _frames.sales_cycle_lengths(opps, basis, zone)
        return CycleStats(
            count=len(lengths),
            mean_days=_common.mean(lengths),
            median_days=_common.quantile(lengths, Decimal("0.5")),
            p90_days=_common.quantile(lengths, Decimal("0.9")),
        )
    lengths = sorted(
        _common.days(_common.local_span(opp.created_at, opp.closed_at, zone))
        for opp in _common.deals(opps, None)
        if opp.closed_at is not None and (opp.is_won or (basis == "closed" and opp.is_lost))
    )
    return CycleStats(
        count=len(lengths),
        mean_days=_common.mean(lengths),
        median_days=_common.quantile(lengths, Decimal("0.5")),
        p90_days=_common.quantile(lengths, Decimal("0.9")),
    )


__all__ = [
    "CycleStats",
    "EffectivenessRow",
    "campaign_effectiveness",
    "effectiveness",
    "lead_source_effectiveness",
    "sales_cycle",
]
