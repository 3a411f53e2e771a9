"""The history analytics on a deal frame give exactly what they give on the opportunities.

``forecast_range``, ``pipeline_movement``, ``time_in_stage``, ``stale``, ``funnel``,
``slippage``, ``slippage_summary``, ``stage_win_rates`` and ``calibration`` are each called
with the opportunities and with a deal frame of every engine (polars, lazy polars, pyarrow,
pandas with Arrow dtypes, DuckDB), and the results must be equal: every row, every exact
decimal, every duration.  The deals are the seeded sample plus a few drawn by hand for the
corners of DESIGN section 8: two events at one instant (a row with an empty valid span),
back-dated changes (revised rows), a reopened deal, amounts from line items, and ties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import (
    CurrencyMismatchError,
    ExchangeRates,
    FixedClock,
    LineItem,
    Money,
    OppcoreError,
    Opportunity,
    Pipeline,
    ValidationError,
    sample,
)
from oppcore.analytics import (
    as_probabilities,
    calibration,
    forecast_range,
    funnel,
    period_of,
    pipeline_movement,
    slippage,
    slippage_summary,
    stage_win_rates,
    stale,
    time_in_stage,
)
from oppcore.frame import deal_frame
from tests.analytics.test_history_cases import BAD_CALLS, _mixed_deals
from tests.deal_table.engines import ENGINES

pl = pytest.importorskip("polars")

UTC = timezone.utc
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _thb(amount: str) -> Money:
    return Money(amount, "THB")


def _corner_deals() -> list[Opportunity]:
    """Deals drawn for the corners: see the module documentation."""
    clock = FixedClock(T0)
    # In progress and won at the same instant: in_progress is entered and left at once.
    at_once = Opportunity.open(
        id="corner-at-once", name="At once", amount=_thb("5000"), owner="Nok", clock=clock
    )
    clock.advance(timedelta(days=3))
    at_once = at_once.move_to("in_progress", clock=clock).win(clock=clock)
    # Changes recorded days after they happened: the rows they revise are closed.
    late = FixedClock(T0)
    backdated = Opportunity.open(
        id="corner-backdated",
        name="Back-dated",
        amount=_thb("12000"),
        expected_close=date(2026, 6, 30),
        owner="Ploy",
        clock=late,
    )
    late.advance(timedelta(days=20))
    backdated = backdated.update(
        amount=_thb("15000"),
        expected_close=date(2026, 7, 31),
        at=T0 + timedelta(days=5),
        clock=late,
    )
    backdated = backdated.move_to("in_progress", at=T0 + timedelta(days=9), clock=late)
    late.advance(timedelta(days=30))
    backdated = backdated.update(expected_close=date(2026, 9, 30), clock=late)
    # Won, reopened with a hand-set probability, then lost.
    clock = FixedClock(T0 + timedelta(days=1))
    reopened = Opportunity.open(
        id="corner-reopened",
        name="Reopened",
        amount=_thb("8000"),
        expected_close=date(2026, 6, 15),
        clock=clock,
    )
    clock.advance(timedelta(days=10))
    reopened = reopened.move_to("in_progress", probability="62.5", clock=clock).win(clock=clock)
    clock.advance(timedelta(days=15))
    reopened = reopened.reopen(clock=clock).update(probability="35", clock=clock)
    clock.advance(timedelta(days=40))
    reopened = reopened.lose(reason="Budget", clock=clock)
    # Priced by its lines: a line added later grows the amount.
    clock = FixedClock(T0 + timedelta(days=2))
    lines = Opportunity.open(
        id="corner-lines",
        name="Lines",
        line_items=[LineItem("Licence", _thb("1500.50"), quantity=4)],
        expected_close=date(2026, 8, 20),
        clock=clock,
    )
    clock.advance(timedelta(days=60))
    lines = lines.add_line_item(LineItem("Support", _thb("999.99"), quantity=3), clock=clock)
    # Two deals slipping alike, given in reverse id order.
    ties = []
    for opp_id in ("corner-tie-b", "corner-tie-a"):
        clock = FixedClock(T0)
        tie = Opportunity.open(
            id=opp_id, name=opp_id, amount=_thb("100"), expected_close=date(2026, 6, 1), clock=clock
        )
        clock.advance(timedelta(days=7))
        ties.append(tie.update(expected_close=date(2026, 6, 11), clock=clock))
    return [at_once, backdated, reopened, lines, *ties]


SAMPLE = sample.generate(opportunities=120)
DEALS = [*SAMPLE.opportunities, *_corner_deals()]
FRAME = deal_frame(DEALS)


def _first_used(deals: Iterable[Opportunity]) -> list[Pipeline]:
    """The deals' pipelines in the order the deals first use them (the object route's
    order without ``pipelines=``)."""
    found: dict[str, Pipeline] = {}
    for opp in deals:
        found.setdefault(opp.pipeline.id, opp.pipeline)
    return list(found.values())


PIPELINES = _first_used(DEALS)
EVERY_ENGINE = pytest.mark.parametrize("engine", sorted(ENGINES))
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
ZONES = [None, "Asia/Bangkok", "America/New_York"]


def _clock() -> FixedClock:
    return FixedClock(NOW)


def _frame(engine: str) -> Any:
    return ENGINES[engine](FRAME)


def test_the_corners_are_in_the_frame() -> None:
    """The deal table really holds an empty valid span and revised rows to read past."""
    assert FRAME.filter(pl.col("valid_from") == pl.col("valid_to")).height > 0
    assert FRAME.filter(pl.col("recorded_to").is_not_null()).height > 0
    assert len(PIPELINES) == 2


# -- forecast_range -----------------------------------------------------------------------


@EVERY_ENGINE
@pytest.mark.parametrize(
    "as_of", [None, datetime(2026, 6, 1, tzinfo=UTC), date(2026, 3, 31)], ids=str
)
@pytest.mark.parametrize("zone", [None, "Asia/Bangkok"])
def test_forecast_range_of_a_frame_is_the_range_of_the_deals(
    engine: str, as_of: datetime | date | None, zone: str | None
) -> None:
    """Exact mean and stdev and the same Monte Carlo quantiles for one seed."""
    kw: dict[str, Any] = {"seed": 7, "simulations": 400, "as_of": as_of, "time_zone": zone}
    got = forecast_range(_frame(engine), period="month", clock=_clock(), **kw)
    want = forecast_range(DEALS, period="month", clock=_clock(), **kw)
    assert got == want
    assert got.rows


def test_forecast_range_draws_in_opportunity_id_order_whatever_the_input_order() -> None:
    """One seed, the same quantiles, for the deals in any order and for a shuffled frame."""
    kw: dict[str, Any] = {"seed": 11, "simulations": 300, "clock": _clock()}
    want = forecast_range(DEALS, **kw)
    assert forecast_range(list(reversed(DEALS)), **kw) == want
    assert forecast_range(FRAME.sample(fraction=1.0, shuffle=True, seed=3), **kw) == want


def test_forecast_range_converts_on_both_routes_alike() -> None:
    rates = ExchangeRates([("THB", "USD", date(2020, 1, 1), "0.0275")])
    kw: dict[str, Any] = {"seed": 1, "simulations": 200, "currency": "USD", "rates": rates}
    for engine in ("polars", "duckdb"):
        got = forecast_range(_frame(engine), clock=_clock(), **kw)
        assert got == forecast_range(DEALS, clock=_clock(), **kw)
        assert {row.mean.currency for row in got if row.mean} == {"USD"}


# -- pipeline_movement --------------------------------------------------------------------

SPANS: list[tuple[datetime | date, datetime | date, Any]] = [
    (date(2026, 4, 1), date(2026, 6, 30), None),
    (date(2026, 5, 1), date(2026, 9, 30), period_of(date(2026, 7, 1), "quarter")),
    (T0, T0 + timedelta(days=5), (date(2026, 6, 1), date(2026, 12, 31))),
    (T0 + timedelta(days=3), T0 + timedelta(days=3), None),  # the instant of the empty span
]


@EVERY_ENGINE
@pytest.mark.parametrize("span", SPANS, ids=lambda span: f"{span[0]}..{span[1]}")
@pytest.mark.parametrize("zone", [None, "America/New_York"])
def test_the_movement_of_a_frame_is_the_movement_of_the_deals(
    engine: str, span: tuple[Any, Any, Any], zone: str | None
) -> None:
    """Every bucket, count and entry, entries in opportunity id order within each bucket."""
    start, end, window = span
    got = pipeline_movement(_frame(engine), start=start, end=end, window=window, time_zone=zone)
    want = pipeline_movement(DEALS, start=start, end=end, window=window, time_zone=zone)
    assert got == want
    assert got.counts["opening"] + got.counts["closing"] > 0


def test_movement_entries_follow_the_ids_not_the_input_order() -> None:
    start, end = date(2026, 4, 1), date(2026, 9, 30)
    want = pipeline_movement(DEALS, start=start, end=end)
    assert pipeline_movement(list(reversed(DEALS)), start=start, end=end) == want
    for bucket in {entry.bucket for entry in want.entries}:
        ids = [entry.opportunity_id for entry in want.entries if entry.bucket == bucket]
        assert ids == sorted(ids)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_movement_converts_at_the_end_date_on_both_routes(engine: str) -> None:
    rates = ExchangeRates([("USD", "THB", date(2020, 1, 1), "36")])
    kw: dict[str, Any] = {"start": date(2026, 4, 1), "end": date(2026, 6, 30)}
    got = pipeline_movement(_frame(engine), currency="USD", rates=rates, **kw)
    assert got == pipeline_movement(DEALS, currency="USD", rates=rates, **kw)
    assert got.opening is not None
    assert got.opening.currency == "USD"


# -- time_in_stage and stale ------------------------------------------------------------------


@EVERY_ENGINE
@pytest.mark.parametrize("now", [NOW, date(2026, 6, 30), T0 + timedelta(days=3)], ids=str)
@pytest.mark.parametrize("zone", [None, "Asia/Bangkok"])
def test_time_in_stage_of_a_frame_is_the_time_of_the_deals(
    engine: str, now: datetime | date, zone: str | None
) -> None:
    """Every stage's count, mean, median, p90 and total, to the microsecond."""
    got = time_in_stage(_frame(engine), now=now, time_zone=zone, pipelines=PIPELINES)
    assert got == time_in_stage(DEALS, now=now, time_zone=zone, pipelines=PIPELINES)
    assert got == time_in_stage(DEALS, now=now, time_zone=zone)  # the deals' own order
    assert [row.stage for row in got] == [
        key for pipeline in PIPELINES for key in (s.key for s in pipeline.open_stages)
    ]


def test_a_stage_entered_and_left_at_once_still_counts_on_a_frame() -> None:
    """The at-once deal spent no time in in_progress, and is one of the deals that were there."""
    (deal,) = [opp for opp in DEALS if opp.id == "corner-at-once"]
    frame = deal_frame([deal])
    table = time_in_stage(frame, now=NOW, pipelines=[deal.pipeline])
    assert table == time_in_stage([deal], now=NOW)
    row = {row.stage: row for row in table}["in_progress"]
    assert (row.opportunities, row.total) == (1, timedelta(0))


@EVERY_ENGINE
@pytest.mark.parametrize(
    "now", [NOW, date(2026, 11, 30), datetime(2026, 3, 20, tzinfo=UTC)], ids=str
)
@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("days", [None, 10, Decimal("2.5")], ids=str)
def test_stale_deals_of_a_frame_are_the_stale_deals(
    engine: str, now: datetime | date, zone: str | None, days: int | Decimal | None
) -> None:
    """The same deals, stages, owners and exact day counts, on the zone's clocks."""
    kw: dict[str, Any] = {"now": now, "time_zone": zone, "days": days}
    got = stale(_frame(engine), pipelines=PIPELINES, **kw)
    assert got == stale(DEALS, **kw)
    assert got.rows


def test_stale_with_days_needs_no_stage_definitions() -> None:
    """days= replaces every stage's threshold, so a frame needs no pipelines= then."""
    assert stale(FRAME, now=NOW, days=30) == stale(DEALS, now=NOW, days=30)


# -- funnel and stage win rates -------------------------------------------------------------


@EVERY_ENGINE
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda pipeline: pipeline.id)
def test_the_funnel_of_a_frame_is_the_funnel_of_the_deals(engine: str, pipeline: Pipeline) -> None:
    got = funnel(_frame(engine), pipeline=pipeline)
    assert got == funnel(DEALS, pipeline=pipeline)
    assert got.rows[0].reached > 0


def test_the_funnel_of_an_empty_frame_is_an_empty_table() -> None:
    empty = FRAME.head(0)
    assert funnel(empty, pipeline=PIPELINES[0]).rows == funnel([], pipeline=PIPELINES[0]).rows == ()


@EVERY_ENGINE
@pytest.mark.parametrize("min_closed", [0, 10, 30])
def test_stage_win_rates_of_a_frame_are_the_rates_of_the_deals(
    engine: str, min_closed: int
) -> None:
    """Closed, won, the exact rate and its Wilson bounds, per stage of both pipelines."""
    got = stage_win_rates(_frame(engine), min_closed=min_closed, pipelines=PIPELINES)
    assert got == stage_win_rates(DEALS, min_closed=min_closed, pipelines=PIPELINES)
    assert got == stage_win_rates(DEALS, min_closed=min_closed)
    assert as_probabilities(got) == as_probabilities(stage_win_rates(DEALS, min_closed=min_closed))


def test_rows_follow_the_order_of_pipelines_on_both_routes() -> None:
    backwards = list(reversed(PIPELINES))
    got = stage_win_rates(FRAME, pipelines=backwards)
    assert got == stage_win_rates(DEALS, pipelines=backwards)
    assert got.rows[0].stage == backwards[0].open_stages[0].key


# -- slippage -----------------------------------------------------------------------------------


@EVERY_ENGINE
def test_slippage_of_a_frame_is_the_slippage_of_the_deals(engine: str) -> None:
    """The history as known now: a back-dated push counts where it happened."""
    got = slippage(_frame(engine))
    assert got == slippage(DEALS)
    assert got == slippage(list(reversed(DEALS)))
    ids = [row.opportunity_id for row in got]
    assert ids.index("corner-tie-a") + 1 == ids.index("corner-tie-b")  # a tie: id order


@EVERY_ENGINE
@pytest.mark.parametrize("by", ["owner", "type", "campaign", "lead_source", "account"])
def test_slippage_summary_of_a_frame_is_the_summary_of_the_deals(engine: str, by: Any) -> None:
    got = slippage_summary(_frame(engine), by=by)
    assert got == slippage_summary(DEALS, by=by)
    assert got.rows


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_a_function_as_by_receives_each_deals_current_row_on_a_frame(engine: str) -> None:
    """The current DealVersion holds what the function reads off an Opportunity here."""
    got = slippage_summary(_frame(engine), by=lambda deal: (deal.owner or "").upper())
    assert got == slippage_summary(DEALS, by=lambda deal: (deal.owner or "").upper())


# -- calibration -------------------------------------------------------------------------------


@EVERY_ENGINE
@pytest.mark.parametrize("point", ["last_open_stage", "opened", "before_close"])
@pytest.mark.parametrize("bins", [10, 3])
def test_calibration_of_a_frame_is_the_calibration_of_the_deals(
    engine: str, point: Any, bins: int
) -> None:
    """The Brier score and every bin, exactly."""
    got = calibration(_frame(engine), bins=bins, point=point)
    assert got == calibration(DEALS, bins=bins, point=point)
    assert got.count > 0


# -- what a frame needs, and bad input --------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda deals: time_in_stage(deals, now=NOW),
        lambda deals: stale(deals, now=NOW),
        lambda deals: stage_win_rates(deals),
    ],
    ids=["time_in_stage", "stale", "stage_win_rates"],
)
def test_a_frame_without_pipelines_is_refused_saying_what_to_pass(call: Any) -> None:
    with pytest.raises(ValidationError, match=r"pass pipelines= \(the Pipeline values"):
        call(FRAME)


def test_a_frame_without_a_pipeline_is_refused_by_the_funnel() -> None:
    with pytest.raises(ValidationError, match="pass pipeline="):
        funnel(FRAME)


@pytest.mark.parametrize(
    "call",
    [
        lambda deals: time_in_stage(deals, now=NOW, pipelines=PIPELINES[:1]),
        lambda deals: stale(deals, now=NOW, pipelines=PIPELINES[1:]),
        lambda deals: stage_win_rates(deals, pipelines=PIPELINES[:1]),
        lambda deals: stage_win_rates(deals, pipelines="default"),  # type: ignore[arg-type]
        lambda deals: time_in_stage(deals, now=NOW, pipelines=[*PIPELINES, "b2b"]),  # type: ignore[list-item]
    ],
    ids=["time_in_stage", "stale", "stage_win_rates", "a str", "not a Pipeline"],
)
def test_pipelines_that_miss_a_deals_pipeline_are_the_same_error_on_both_routes(call: Any) -> None:
    with pytest.raises(ValidationError) as on_objects:
        call(DEALS)
    with pytest.raises(ValidationError) as on_frame:
        call(FRAME)
    assert str(on_frame.value) == str(on_objects.value)


def test_as_probabilities_refuses_a_frame_saying_what_to_call() -> None:
    with pytest.raises(ValidationError, match=r"call stage_win_rates\(frame"):
        as_probabilities(FRAME)


def test_a_frame_without_the_columns_a_function_reads_is_refused() -> None:
    with pytest.raises(ValidationError, match="no 'expected_close' column"):
        slippage(FRAME.drop("expected_close"))


FRAME_CALLS = [
    pytest.param(call, error, id=name)
    for name, call, error, _ in BAD_CALLS
    if not any(skip in name for skip in ("of a str", "non-Opportunity", "as_probabilities"))
]


@pytest.mark.parametrize(("call", "error"), FRAME_CALLS)
def test_bad_input_is_the_same_error_on_a_frame(
    call: Callable[[Any], object], error: type[OppcoreError]
) -> None:
    """Each refusal of the object route's bad-input table, message for message, on a frame:
    the arguments are checked before a frame's want of stage definitions."""
    deals = _mixed_deals()
    with pytest.raises(error) as on_objects:
        call(deals)
    with pytest.raises(error) as on_frame:
        call(deal_frame(deals))
    assert str(on_frame.value) == str(on_objects.value)


def test_mixed_currencies_are_the_same_error_in_forecast_range() -> None:
    usd = Opportunity.open(
        name="Dollars", amount=Money("10", "USD"), id="usd-1", clock=FixedClock(T0)
    )
    deals = [usd, *DEALS]
    with pytest.raises(CurrencyMismatchError) as on_objects:
        forecast_range(deals, seed=1, simulations=10)
    with pytest.raises(CurrencyMismatchError) as on_frame:
        forecast_range(deal_frame(deals), seed=1, simulations=10)
    assert str(on_frame.value) == str(on_objects.value)
