"""forecast, effectiveness and sales_cycle: the rules of DESIGN section 5, one at a time."""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import (
    Campaign,
    CurrencyMismatchError,
    ExchangeRates,
    FixedClock,
    ForecastCategory,
    MissingRateError,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    ValidationError,
    using,
)
from oppcore.analytics import (
    ForecastRow,
    campaign_effectiveness,
    effectiveness,
    forecast,
    lead_source_effectiveness,
    sales_cycle,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def _thb(amount: str) -> Money:
    return Money(amount, "THB")


def _open(clock: FixedClock, name: str = "deal", **fields: Any) -> Opportunity:
    return Opportunity.open(name=name, clock=clock, **fields)


def _by_label(table: Any) -> dict[str | None, ForecastRow]:
    return {None if row.period is None else row.period.label: row for row in table}


# -- forecast: rows -----------------------------------------------------------------------


def test_forecast_rows_are_in_time_order_with_the_unscheduled_row_last() -> None:
    """Periods come earliest first whatever the input order; open deals without a date come last."""
    clock = FixedClock(START)
    opps = [
        _open(clock, amount=_thb("1"), expected_close=date(2026, 7, 1)),
        _open(clock, amount=_thb("2")),
        _open(clock, amount=_thb("3"), expected_close=date(2025, 12, 31)),
        _open(clock, amount=_thb("4"), expected_close=date(2026, 2, 14)),
    ]

    table = forecast(opps)

    assert [None if r.period is None else r.period.label for r in table] == [
        "2025-12",
        "2026-02",
        "2026-07",
        None,
    ]
    assert table[-1].open_count == 1
    assert table[-1].pipeline == _thb("2")


def test_there_is_no_unscheduled_row_when_every_open_deal_has_a_date() -> None:
    """A closed deal without an expected close does not make an unscheduled row."""
    clock = FixedClock(START)
    opps = [
        _open(clock, amount=_thb("1"), expected_close=date(2026, 3, 1)),
        _open(clock, amount=_thb("2")).win(clock=clock),
        _open(clock, amount=_thb("3")).lose(clock=clock),
    ]

    table = forecast(opps)

    assert all(row.period is not None for row in table)
    assert [row.period.label for row in table if row.period] == ["2026-01", "2026-03"]


def test_won_deals_count_by_close_date_not_expected_close() -> None:
    """A deal expected in June but won in February adds to February's won, and nothing to June."""
    clock = FixedClock(START)
    deal = _open(clock, amount=_thb("500"), expected_close=date(2026, 6, 30))
    clock.set(datetime(2026, 2, 10, 15, tzinfo=UTC))

    rows = _by_label(forecast([deal.win(clock=clock)]))

    assert list(rows) == ["2026-02"]
    assert (rows["2026-02"].won_count, rows["2026-02"].won) == (1, _thb("500"))
    assert rows["2026-02"].open_count == 0
    assert rows["2026-02"].pipeline == _thb("0")


def test_lost_deals_are_counted_by_close_date_and_add_no_money() -> None:
    """A lost deal adds one to lost_count in its close period, and nothing to any money column."""
    clock = FixedClock(START)
    deal = _open(clock, amount=_thb("500"), expected_close=date(2026, 6, 30))
    clock.set(datetime(2026, 4, 1, tzinfo=UTC))

    [row] = forecast([deal.lose(reason="Price", clock=clock)], period="quarter")

    assert row.period is not None
    assert row.period.label == "2026-Q2"
    assert row.lost_count == 1
    assert (row.open_count, row.won_count) == (0, 0)
    assert {row.pipeline, row.weighted, row.won, row.best_case, row.commit} == {_thb("0")}


# -- forecast: categories and probabilities ------------------------------------------------

CATEGORY_PIPELINE = Pipeline(
    id="categories",
    name="All four open categories",
    stages=(
        Stage("qualify", "Qualify", 20),
        Stage("proposal", "Proposal", 50, forecast_category=ForecastCategory.BEST_CASE),
        Stage("commit", "Commit", 90, forecast_category=ForecastCategory.COMMIT),
        Stage("parked", "Parked", 5, forecast_category=ForecastCategory.OMITTED),
        Stage("won", "Won", 100, Outcome.WON),
        Stage("lost", "Lost", 0, Outcome.LOST),
    ),
)


def test_best_case_and_commit_hold_the_amounts_of_open_deals_in_those_categories() -> None:
    """Pipeline leaves out OMITTED deals; best case and commit take only their own category."""
    clock = FixedClock(START)
    may = date(2026, 5, 1)
    opps = [
        _open(
            clock, pipeline=CATEGORY_PIPELINE, stage=stage, amount=_thb(amount), expected_close=may
        )
        for stage, amount in [
            ("qualify", "1000"),
            ("proposal", "200"),
            ("commit", "30"),
            ("parked", "4"),
        ]
    ]

    [row] = forecast(opps)

    assert row.open_count == 4
    assert row.pipeline == _thb("1230")
    assert row.best_case == _thb("200")
    assert row.commit == _thb("30")
    assert row.weighted == _thb(
        "327.2"
    )  # 200 + 100 + 27 + 0.2: expected revenue of every open deal


def test_salesforce_stages_are_all_pipeline_so_best_case_and_commit_are_zero() -> None:
    """Salesforce's ten standard stages put every open deal in PIPELINE."""
    clock = FixedClock(START)
    salesforce = Pipeline.salesforce()
    opps = [
        _open(
            clock,
            pipeline=salesforce,
            stage=stage.key,
            amount=_thb("100"),
            expected_close=date(2026, 5, 1),
        )
        for stage in salesforce.open_stages
    ]

    [row] = forecast(opps)

    assert row.open_count == 8
    assert row.pipeline == _thb("800")
    assert row.best_case == _thb("0")
    assert row.commit == _thb("0")
    assert row.weighted == _thb("385")  # 10 + 10 + 20 + 50 + 60 + 70 + 75 + 90


def test_the_default_pipelines_in_progress_stage_is_best_case() -> None:
    """Pipeline.default(): wait is PIPELINE, in_progress is BEST_CASE."""
    clock = FixedClock(START)
    opps = [
        _open(clock, stage="wait", amount=_thb("100"), expected_close=date(2026, 5, 1)),
        _open(clock, stage="in_progress", amount=_thb("40"), expected_close=date(2026, 5, 1)),
    ]

    [row] = forecast(opps)

    assert (row.pipeline, row.best_case, row.commit) == (_thb("140"), _thb("40"), _thb("0"))


def test_probabilities_replace_each_deals_own_for_the_stages_named() -> None:
    """probabilities={"in_progress": 20} re-weighs in_progress deals, a hand-set one included."""
    clock = FixedClock(START)
    may = date(2026, 5, 1)
    opps = [
        _open(clock, stage="wait", amount=_thb("100"), expected_close=may),  # own 10 %
        _open(clock, stage="in_progress", amount=_thb("100"), expected_close=may),  # 50 % -> 20 %
        _open(clock, stage="in_progress", amount=_thb("100"), probability=85, expected_close=may),
    ]

    [own] = forecast(opps)
    [learned] = forecast(opps, probabilities={"in_progress": Decimal("20"), "closed_won": 100})

    assert own.weighted == _thb("145")
    assert learned.weighted == _thb("50")  # 10 + 20 + 20
    assert learned.pipeline == own.pipeline


def test_probabilities_accept_str_and_int_and_refuse_a_percentage_over_100() -> None:
    """Learned rates may be given as str or int; 150 is a ValidationError."""
    clock = FixedClock(START)
    opps = [_open(clock, amount=_thb("100"), expected_close=date(2026, 5, 1))]

    [row] = forecast(opps, probabilities={"wait": "12.5"})

    assert row.weighted == _thb("12.5")
    with pytest.raises(ValidationError):
        forecast(opps, probabilities={"wait": 150})


# -- forecast: as_of ----------------------------------------------------------------------


def test_as_of_counts_a_deal_won_later_as_open_and_leaves_out_one_opened_later() -> None:
    """At 1 March, a deal won on 20 March was still open, and one opened on 10 March did not exist."""
    clock = FixedClock(START)
    april = date(2026, 4, 15)
    won_later = _open(clock, name="won later", amount=_thb("1000"), expected_close=april)
    won_early = _open(clock, name="won early", amount=_thb("70"), expected_close=april)
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    won_early = won_early.win(clock=clock)
    clock.set(datetime(2026, 3, 10, tzinfo=UTC))
    opened_later = _open(clock, name="opened later", amount=_thb("5"), expected_close=april)
    clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    won_later = won_later.win(clock=clock)
    opps = [won_later, won_early, opened_later]

    then = _by_label(forecast(opps, as_of=datetime(2026, 3, 1, tzinfo=UTC)))
    now = _by_label(forecast(opps))

    assert list(then) == ["2026-02", "2026-04"]
    assert (then["2026-04"].open_count, then["2026-04"].pipeline) == (1, _thb("1000"))
    assert then["2026-04"].weighted == _thb("100")
    assert (then["2026-02"].won_count, then["2026-02"].won) == (1, _thb("70"))
    assert (now["2026-03"].won_count, now["2026-03"].won) == (1, _thb("1000"))
    assert (now["2026-04"].open_count, now["2026-04"].pipeline) == (1, _thb("5"))


def test_as_of_uses_the_expected_close_and_amount_the_deal_had_then() -> None:
    """A deal pushed from March to June after as_of is still in March as of before the push."""
    clock = FixedClock(START)
    deal = _open(clock, amount=_thb("100"), expected_close=date(2026, 3, 31))
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    deal = deal.update(expected_close=date(2026, 6, 30), amount=_thb("300"), clock=clock)

    [then] = forecast([deal], as_of=datetime(2026, 1, 31, tzinfo=UTC))
    [now] = forecast([deal])

    assert then.period is not None
    assert now.period is not None
    assert (then.period.label, then.pipeline) == ("2026-03", _thb("100"))
    assert (now.period.label, now.pipeline) == ("2026-06", _thb("300"))


def test_as_of_before_every_deal_opened_is_an_empty_table() -> None:
    """Nothing existed yet, so there is nothing to forecast."""
    clock = FixedClock(START)
    opps = [_open(clock, amount=_thb("1"), expected_close=date(2026, 3, 1))]

    assert len(forecast(opps, as_of=START - timedelta(seconds=1))) == 0


# -- forecast: currencies -----------------------------------------------------------------

#: EUR/USD rising each quarter of 2026.
RATES = ExchangeRates(
    [
        ("EUR", "USD", date(2026, 1, 1), "1.10"),
        ("EUR", "USD", date(2026, 4, 1), "1.20"),
        ("EUR", "USD", date(2026, 7, 1), "1.30"),
    ]
)


def _mixed() -> list[Opportunity]:
    """EUR and USD deals: open ones expected in May and August, one won and one lost in February."""
    clock = FixedClock(START)
    opps = [
        _open(clock, name="EUR May", amount=Money("100", "EUR"), expected_close=date(2026, 5, 10)),
        _open(clock, name="EUR Aug", amount=Money("100", "EUR"), expected_close=date(2026, 8, 10)),
        _open(clock, name="USD May", amount=Money("100", "USD"), expected_close=date(2026, 5, 20)),
    ]
    won = _open(clock, name="EUR won", amount=Money("100", "EUR"), expected_close=date(2026, 9, 1))
    lost = _open(clock, name="EUR lost", amount=Money("50", "EUR"), expected_close=date(2026, 9, 1))
    clock.set(datetime(2026, 2, 10, tzinfo=UTC))
    return [*opps, won.win(clock=clock), lost.lose(clock=clock)]


def test_mixed_currencies_without_currency_and_rates_raise_currency_mismatch() -> None:
    """Nothing is summed across currencies: the error names both."""
    with pytest.raises(CurrencyMismatchError, match="EUR, USD"):
        forecast(_mixed())


def test_a_target_currency_without_rates_raises_currency_mismatch() -> None:
    """currency= alone cannot convert EUR deals to USD."""
    with pytest.raises(CurrencyMismatchError, match="EUR"):
        forecast(_mixed(), currency="USD")


def test_mixed_currencies_without_a_target_currency_raise_even_with_rates() -> None:
    """rates= alone does not say which currency to show."""
    with pytest.raises(CurrencyMismatchError):
        forecast(_mixed(), rates=RATES)


def test_each_deal_converts_at_its_close_date_or_expected_close() -> None:
    """Won at 1.10 in February; open at 1.20 in May and 1.30 in August."""
    rows = _by_label(forecast(_mixed(), currency="USD", rates=RATES))

    assert list(rows) == ["2026-02", "2026-05", "2026-08"]
    assert rows["2026-02"].won == Money("110", "USD")
    assert rows["2026-02"].lost_count == 1
    assert rows["2026-05"].pipeline == Money("220", "USD")  # 100 EUR x 1.20 + 100 USD
    assert rows["2026-05"].weighted == Money("22", "USD")
    assert rows["2026-08"].pipeline == Money("130", "USD")


def test_the_reverse_rate_converts_into_the_base_currency() -> None:
    """In EUR, the May USD deal is 100 / 1.20 EUR, exact to DIVISION's 34 digits."""
    rows = _by_label(forecast(_mixed(), currency="EUR", rates=RATES))

    may = rows["2026-05"].pipeline
    assert may is not None
    assert may.currency == "EUR"
    assert may.rounded() == Money("183.33", "EUR")
    assert rows["2026-02"].won == Money("100", "EUR")


def test_an_unscheduled_open_deal_converts_at_the_as_of_date() -> None:
    """With no expected close, the as_of date (or the clock's today) picks the rate."""
    clock = FixedClock(START)
    deal = _open(clock, amount=Money("100", "EUR"))

    [march] = forecast([deal], currency="USD", rates=RATES, as_of=datetime(2026, 3, 1, tzinfo=UTC))
    [may] = forecast([deal], currency="USD", rates=RATES, as_of=datetime(2026, 5, 1, tzinfo=UTC))
    with using(FixedClock(datetime(2026, 8, 1, tzinfo=UTC))):
        [august] = forecast([deal], currency="USD", rates=RATES)
    [april] = forecast(
        [deal], currency="USD", rates=RATES, clock=FixedClock(datetime(2026, 4, 1, tzinfo=UTC))
    )

    assert (march.period, march.pipeline) == (None, Money("110", "USD"))
    assert may.pipeline == Money("120", "USD")
    assert august.pipeline == Money("130", "USD")
    assert april.pipeline == Money("120", "USD")


def test_a_missing_rate_raises_missing_rate_error() -> None:
    """Rates starting in March cannot convert a deal won in February: no guessing."""
    late = ExchangeRates([("EUR", "USD", date(2026, 3, 1), "1.10")])

    with pytest.raises(MissingRateError, match="2026-02-10"):
        forecast(_mixed(), currency="USD", rates=late)


def test_deals_without_an_amount_are_counted_and_add_nothing() -> None:
    """Open and won deals with no amount count in open_count and won_count, and add no money."""
    clock = FixedClock(START)
    may = date(2026, 5, 1)
    opps = [
        _open(clock, amount=_thb("100"), expected_close=may),
        _open(clock, stage="in_progress", expected_close=may),
        _open(clock, expected_close=may).win(clock=clock),
        _open(clock).win(clock=clock),
    ]

    rows = _by_label(forecast(opps))

    assert (rows["2026-05"].open_count, rows["2026-05"].pipeline) == (2, _thb("100"))
    assert rows["2026-05"].best_case == _thb("0")
    assert rows["2026-05"].weighted == _thb("10")
    assert (rows["2026-01"].won_count, rows["2026-01"].won) == (2, _thb("0"))


def test_a_deal_without_an_amount_needs_no_exchange_rate() -> None:
    """A EUR deal with no amount is not converted, so no rate is asked for."""
    clock = FixedClock(START)
    opps = [
        _open(clock, amount=Money("100", "USD"), expected_close=date(2026, 5, 1)),
        _open(clock, currency="EUR", expected_close=date(2026, 5, 1)),
    ]

    [row] = forecast(opps)

    assert (row.open_count, row.pipeline) == (2, Money("100", "USD"))


# -- effectiveness ------------------------------------------------------------------------

KEYS: dict[str, str] = {
    "campaign": "campaign_id",
    "lead_source": "lead_source",
    "type": "type",
    "owner": "owner",
    "account": "account",
}


def _grouped(field: str) -> list[Opportunity]:
    """Deals whose ``field`` is "b", "a" or missing: a: 2 won, 1 lost; b: 1 open; None: 1 won."""
    clock = FixedClock(START)
    specs: list[tuple[str | None, str, str]] = [
        ("b", "open", "400"),
        ("a", "won", "100"),
        (None, "won", "7"),
        ("a", "won", "300"),
        ("a", "lost", "50"),
    ]
    opps = []
    for key, state, amount in specs:
        fields: dict[str, Any] = {field: key}
        opp = _open(clock, amount=_thb(amount), **fields)
        clock.advance(timedelta(days=10))
        if state == "won":
            opp = opp.win(clock=clock)
        elif state == "lost":
            opp = opp.lose(clock=clock)
        opps.append(opp)
    return opps


@pytest.mark.parametrize(("by", "field"), list(KEYS.items()))
def test_effectiveness_groups_by_each_named_field_with_the_keyless_row_last(
    by: Any, field: str
) -> None:
    """Rows in key order, then a row for deals without a key, each with its counts and money."""
    rows = effectiveness(_grouped(field), by=by)

    assert [row.key for row in rows] == ["a", "b", None]
    a, b, none = rows
    assert (a.opportunities, a.open, a.won, a.lost) == (3, 0, 2, 1)
    assert a.win_rate is not None
    assert round(a.win_rate, 20) == Decimal("0.66666666666666666667")
    assert a.win_rate_all == a.win_rate
    assert a.won_revenue == _thb("400")
    assert a.avg_won_deal == _thb("200")
    assert (b.opportunities, b.open, b.win_rate, b.win_rate_all) == (1, 1, None, Decimal(0))
    assert (b.pipeline, b.weighted, b.won_revenue) == (_thb("400"), _thb("40"), _thb("0"))
    assert (none.won, none.won_revenue, none.win_rate) == (1, _thb("7"), Decimal(1))


def test_effectiveness_groups_by_a_callable() -> None:
    """by= may be any function of an Opportunity; None from it makes the keyless row."""

    def size(opp: Opportunity) -> Hashable:
        if opp.amount is None:
            return None
        return "large" if opp.amount >= _thb("300") else "small"

    rows = effectiveness(_grouped("type"), by=size)

    assert [(row.key, row.opportunities) for row in rows] == [("large", 2), ("small", 3)]
    assert rows.title == "Effectiveness by size"


def test_effectiveness_puts_numeric_keys_in_numeric_order() -> None:
    """Deal-size bands 500, 1000 and 5000 come in that order, not sorted as text."""
    clock = FixedClock(START)
    opps = [_open(clock, amount=_thb(str(n))) for n in (4000, 700, 100)]

    def band(opp: Opportunity) -> Hashable:
        limits = [500, 1000, 5000]
        return next(n for n in limits if opp.amount is not None and opp.amount < _thb(str(n)))

    rows = effectiveness(opps, by=band)

    assert [row.key for row in rows] == [500, 1000, 5000]


def test_win_rate_is_won_over_closed_and_win_rate_all_is_won_over_all() -> None:
    """win_rate is won / (won + lost); win_rate_all is won / all opportunities, open ones included."""
    clock = FixedClock(START)
    opps = [_open(clock, type="new") for _ in range(4)]
    opps[0] = opps[0].win(clock=clock)
    opps[1] = opps[1].lose(clock=clock)

    [row] = effectiveness(opps, by="type")

    assert row.win_rate == Decimal("0.5")
    assert row.win_rate_all == Decimal("0.25")


def test_avg_cycle_days_is_the_mean_days_from_opening_to_winning() -> None:
    """Won after 10 and 25.5 days: 17.75; the lost deal's cycle is not in it."""
    clock = FixedClock(START)
    opps = [_open(clock, type="t") for _ in range(3)]
    clock.advance(timedelta(days=10))
    opps[0] = opps[0].win(clock=clock)
    opps[2] = opps[2].lose(clock=clock)
    clock.advance(timedelta(days=15, hours=12))
    opps[1] = opps[1].win(clock=clock)

    [row] = effectiveness(opps, by="type")

    assert row.avg_cycle_days == Decimal("17.75")


def _campaign_deals() -> list[Opportunity]:
    """Campaign "fair": 2 won (100, 300), 1 lost, 1 open; one deal with no campaign."""
    clock = FixedClock(START)
    fair = [_open(clock, amount=_thb(a), campaign_id="fair") for a in ("100", "300", "50", "80")]
    clock.advance(timedelta(days=3))
    return [
        fair[0].win(clock=clock),
        fair[1].win(clock=clock),
        fair[2].lose(clock=clock),
        fair[3],
        _open(clock, amount=_thb("9")),
    ]


def test_campaign_cost_counts_once_with_cost_per_opportunity_and_per_won_deal() -> None:
    """Cost 200 over 4 deals and 2 wins: 50 per opportunity, 100 per won deal, ROI (400 - 200) / 200."""
    campaigns = [Campaign("fair", "Fair", actual_cost=_thb("200"), budgeted_cost=_thb("999"))]

    fair, none = campaign_effectiveness(_campaign_deals(), campaigns)

    assert fair.key == "fair"
    assert fair.cost == _thb("200")
    assert fair.cost_per_opportunity == _thb("50")
    assert fair.cost_per_won == _thb("100")
    assert fair.roi == Decimal(1)
    assert none.key is None
    assert (none.cost, none.roi, none.cost_per_opportunity, none.cost_per_won) == (
        None,
        None,
        None,
        None,
    )


def test_a_campaign_with_no_deals_still_has_a_row() -> None:
    """A campaign given in campaigns= that brought nothing shows zero counts and ROI -1."""
    campaigns = [
        Campaign("fair", "Fair", actual_cost=_thb("200")),
        Campaign("radio", "Radio", actual_cost=_thb("80")),
    ]

    rows = effectiveness(_campaign_deals(), by="campaign", campaigns=campaigns)

    assert [row.key for row in rows] == ["fair", "radio", None]
    radio = rows[1]
    assert (radio.opportunities, radio.open, radio.won, radio.lost) == (0, 0, 0, 0)
    assert (radio.win_rate, radio.win_rate_all) == (None, None)
    assert radio.cost == _thb("80")
    assert radio.roi == Decimal(-1)
    assert (radio.cost_per_opportunity, radio.cost_per_won) == (None, None)


def test_a_campaign_without_an_actual_cost_has_no_roi() -> None:
    """Only the actual cost counts; a budget alone gives no ROI."""
    campaigns = [Campaign("fair", "Fair", budgeted_cost=_thb("200"))]

    fair, _ = campaign_effectiveness(_campaign_deals(), campaigns)

    assert (fair.cost, fair.roi, fair.cost_per_won) == (None, None, None)


def test_lead_source_effectiveness_is_effectiveness_by_lead_source() -> None:
    """The shortcut gives the same table as by="lead_source"."""
    opps = _grouped("lead_source")

    assert lead_source_effectiveness(opps).rows == effectiveness(opps, by="lead_source").rows


@pytest.mark.parametrize("by", ["region", "campaign_id", "", None, 3])
def test_effectiveness_refuses_an_unknown_by(by: Any) -> None:
    """by= must name a known field or be a function."""
    with pytest.raises(ValidationError, match="by="):
        effectiveness([], by=by)


def test_effectiveness_converts_campaign_cost_to_the_table_currency() -> None:
    """With currency= and rates=, a EUR cost converts into THB at the rate on the campaign's end date."""
    rates = ExchangeRates(
        [("EUR", "THB", date(2026, 1, 1), "38"), ("EUR", "THB", date(2026, 6, 1), "40")]
    )
    campaigns = [Campaign("fair", "Fair", end=date(2026, 6, 30), actual_cost=Money("10", "EUR"))]

    fair, _ = campaign_effectiveness(_campaign_deals(), campaigns, currency="THB", rates=rates)

    assert fair.cost == _thb("400")
    assert fair.roi == Decimal(0)


# -- sales cycle --------------------------------------------------------------------------


def _cycles(won_days: list[Decimal], lost_days: list[Decimal]) -> list[Opportunity]:
    opps = []
    for days, close in [(d, "win") for d in won_days] + [(d, "lose") for d in lost_days]:
        clock = FixedClock(START)
        opp = _open(clock)
        clock.advance(timedelta(days=float(days)))
        opps.append(opp.win(clock=clock) if close == "win" else opp.lose(clock=clock))
    opps.append(_open(FixedClock(START)))  # an open deal is in neither basis
    return opps


WON_DAYS = [Decimal(d) for d in ("1", "2.5", "4", "10", "30", "0.5")]
LOST_DAYS = [Decimal(d) for d in ("3", "100")]


def test_sales_cycle_over_won_deals_interpolates_median_and_p90_linearly() -> None:
    """Mean, median and p90 of 0.5, 1, 2.5, 4, 10, 30 days, as numpy's linear method gives them."""
    stats = sales_cycle(_cycles(WON_DAYS, LOST_DAYS), basis="won")

    assert stats.count == 6
    assert stats.mean_days == Decimal(8)
    assert stats.median_days == Decimal("3.25")  # halfway between 2.5 and 4
    assert stats.p90_days == Decimal("20")  # position 4.5: halfway between 10 and 30
    assert stats.median_days == statistics.median(WON_DAYS)
    assert stats.p90_days == statistics.quantiles(WON_DAYS, n=10, method="inclusive")[8]


def test_sales_cycle_over_closed_deals_includes_the_lost_ones() -> None:
    """basis="closed" takes won and lost deals; p90 matches statistics' inclusive quantile."""
    stats = sales_cycle(_cycles(WON_DAYS, LOST_DAYS), basis="closed")
    everything = sorted(WON_DAYS + LOST_DAYS)

    assert stats.count == 8
    assert stats.mean_days == Decimal("18.875")
    assert stats.median_days == Decimal("3.5")
    assert stats.median_days == statistics.median(everything)
    assert stats.p90_days == statistics.quantiles(everything, n=10, method="inclusive")[8]
    assert stats.p90_days == Decimal("51")  # 30 + 0.3 x (100 - 30)


def test_sales_cycle_is_the_default_basis_won() -> None:
    """Without basis=, only won deals count."""
    opps = _cycles(WON_DAYS, LOST_DAYS)

    assert sales_cycle(opps) == sales_cycle(opps, basis="won")


def test_sales_cycle_of_no_closed_deals_has_no_statistics() -> None:
    """No closed deal: count 0 and None for the rest."""
    stats = sales_cycle(_cycles([], []))

    assert (stats.count, stats.mean_days, stats.median_days, stats.p90_days) == (
        0,
        None,
        None,
        None,
    )


def test_sales_cycle_refuses_an_unknown_basis() -> None:
    """basis is "won" or "closed"."""
    with pytest.raises(ValidationError, match="basis"):
        sales_cycle([], basis="open")  # type: ignore[arg-type]
