"""For any generated set of histories, the analytics give identical results on the opportunities
and on deal frames of polars, pandas, pyarrow and DuckDB (DESIGN section 8).

Histories come from ``tests.strategies``: every event kind, back-dated changes, events that
share an instant, several currencies, odd pipelines.  A set whose values do not fit a deal
frame's ``decimal(38, 18)`` is refused by ``deal_frame`` (tested in test_frames.py) and left
out here; a set in several currencies must give the same error on every route.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oppcore import FixedClock, OppcoreError, Opportunity, ValidationError
from oppcore.analytics import effectiveness, forecast, sales_cycle, snapshot
from oppcore.frame import deal_frame
from tests.deal_table.engines import EAGER_AND_DUCKDB, as_arrow
from tests.strategies import opportunities

pl = pytest.importorskip("polars")

ENGINES = EAGER_AND_DUCKDB
CLOCK = FixedClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
# Each example runs the analytic five times (the objects and four engines): a quarter of the
# profile's examples (25 in CI, 500 with HYPOTHESIS_PROFILE=thorough).
RUN = settings(
    max_examples=max(10, settings().max_examples // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

deal_sets = st.lists(
    opportunities(max_commands=6), min_size=1, max_size=5, unique_by=lambda o: o.id
)


def _frame(opps: list[Opportunity]) -> Any:
    try:
        return deal_frame(opps)
    except ValidationError:
        assume(False)  # a value beyond decimal(38, 18): refused, never rounded
        raise


def _outcome(work: Callable[[], Any]) -> Any:
    """The result, or the error (class and message) it raised: both routes must agree."""
    try:
        return work()
    except OppcoreError as exc:
        return type(exc), str(exc)


def _same_everywhere(opps: list[Opportunity], analytic: Callable[[Any], Any]) -> None:
    frame = _frame(opps)
    want = _outcome(lambda: analytic(opps))
    for engine, make in ENGINES.items():
        native = make(frame)
        got = _outcome(lambda: analytic(native))  # noqa: B023 - called here, at once
        assert got == want, engine


@RUN
@given(opps=deal_sets, period=st.sampled_from(["month", "quarter", "year"]), data=st.data())
def test_the_forecast_is_the_same_on_every_engine(
    opps: list[Opportunity], period: Any, data: st.DataObject
) -> None:
    moments = sorted({e.at for o in opps for e in o.events})
    as_of = data.draw(st.sampled_from([None, *moments]))
    zone = data.draw(st.sampled_from([None, "Asia/Bangkok", "America/New_York"]))
    _same_everywhere(
        opps,
        lambda deals: forecast(deals, period=period, as_of=as_of, clock=CLOCK, time_zone=zone),
    )


@RUN
@given(
    opps=deal_sets,
    by=st.sampled_from(["campaign", "lead_source", "type", "owner", "account"]),
    data=st.data(),
)
def test_effectiveness_is_the_same_on_every_engine(
    opps: list[Opportunity], by: Any, data: st.DataObject
) -> None:
    moments = sorted({e.at for o in opps for e in o.events})
    as_of = data.draw(st.sampled_from([None, *moments]))
    _same_everywhere(opps, lambda deals: effectiveness(deals, by=by, as_of=as_of, clock=CLOCK))


@RUN
@given(opps=deal_sets, basis=st.sampled_from(["won", "closed"]))
def test_the_sales_cycle_is_the_same_on_every_engine(opps: list[Opportunity], basis: Any) -> None:
    _same_everywhere(opps, lambda deals: sales_cycle(deals, basis=basis))


@RUN
@given(opps=deal_sets, data=st.data())
def test_a_snapshot_of_a_frame_holds_the_rows_of_the_deals_as_they_stood(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """At any event time, as known at any later one: the frame's rows are those the
    snapshot of the opportunities projects to, on every engine."""
    moments = sorted(
        {e.at for o in opps for e in o.events} | {e.recorded_at for o in opps for e in o.events}
    )
    as_of = data.draw(st.sampled_from(moments))
    known = data.draw(st.sampled_from([None, *[m for m in moments if m >= as_of]]))
    frame = _frame(opps)
    then = snapshot(opps, as_of=as_of, known_at=known)
    want = sorted((o.id, o.version, o.stage_key) for o in then)
    for engine, make in ENGINES.items():
        got = snapshot(make(frame), as_of=as_of, known_at=known)
        native = pl.from_arrow(as_arrow(got))
        rows = sorted(native.select("opportunity_id", "version", "stage").iter_rows())
        assert rows == want, engine
