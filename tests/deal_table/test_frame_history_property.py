"""Properties (Hypothesis): every history analytic of a deal frame equals the analytic of the
opportunities, on polars and on DuckDB, for random valid deals.

The deals come from ``tests.strategies.built_opportunities``: random valid command histories
(back-dated commands and several events at one instant included) over a small pool of
pipelines, in any currency.  The times asked about are the deals' own event times, a
microsecond either side, so the ends of valid spans are hit exactly.  Where the object
route refuses (mixed currencies without rates), the frame must refuse with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from oppcore import ExchangeRates, FixedClock, Opportunity, Pipeline, ValidationError
from oppcore.analytics import (
    calibration,
    forecast_range,
    funnel,
    pipeline_movement,
    slippage,
    slippage_summary,
    stage_win_rates,
    stale,
    time_in_stage,
)
from oppcore.exceptions import OppcoreError
from oppcore.frame import deal_frame
from tests.strategies import CURRENCIES, built_opportunities, pipelines

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")

TARGET = "USD"
RATES = ExchangeRates(
    [
        (code, TARGET, date(1900, 1, 1), rate)
        for code, rate in {"THB": "0.028", "JPY": "0.0067", "KWD": "3.25", "EUR": "1.08"}.items()
    ]
)
assert set(CURRENCIES) == {"THB", "USD", "JPY", "KWD", "EUR"}, "RATES must cover CURRENCIES"
UTC = timezone.utc
ZONES = (None, "Asia/Bangkok", "America/New_York", "Asia/Kathmandu")
CONNECTION = duckdb.connect()


@st.composite
def pipeline_pools(draw: st.DrawFn) -> list[Pipeline]:
    """The stock pipeline and up to two custom ones, ids all different."""
    custom = draw(st.lists(pipelines(), max_size=2, unique_by=lambda pipeline: pipeline.id))
    return [Pipeline.default(), *(p for p in custom if p.id != "default")]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Pipeline], list[Opportunity]]:
    pool = draw(pipeline_pools())
    built = draw(
        st.lists(
            built_opportunities(pipeline_strategy=st.sampled_from(pool), max_commands=8),
            max_size=4,
            unique_by=lambda made: made.opp.id,
        )
    )
    return pool, [made.opp for made in built]


def _moments(data: st.DataObject, opps: list[Opportunity]) -> datetime:
    """One of the deals' event times, a microsecond either side or exactly."""
    times = [event.at for opp in opps for event in opp.events]
    base = data.draw(st.sampled_from(times)) if times else datetime(2030, 1, 1, tzinfo=UTC)
    return base + timedelta(microseconds=data.draw(st.sampled_from((-1, 0, 1))))


def _same(call: Callable[[Any], Any], opps: list[Opportunity], frames: list[Any]) -> None:
    """The call gives the same result, or the same refusal, on the deals and every frame."""
    refused: OppcoreError | None = None
    try:
        want: Any = call(opps)
    except OppcoreError as error:
        refused = error
    for frame in frames:
        if refused is None:
            assert call(frame) == want
        else:
            with pytest.raises(type(refused), match=f"^{re.escape(str(refused))}$"):
                call(frame)


def _frames(opps: list[Opportunity]) -> list[Any]:
    try:
        frame = deal_frame(opps)
    except ValidationError:  # an amount with more than 18 places: no frame holds it exactly
        reject()
    return [frame, CONNECTION.from_arrow(frame.to_arrow())]


@settings(max_examples=40)
@given(case=cases(), data=st.data())
def test_the_history_analytics_of_a_frame_are_those_of_the_deals(
    case: tuple[list[Pipeline], list[Opportunity]], data: st.DataObject
) -> None:
    pool, opps = case
    frames = _frames(opps)
    first, second = sorted([_moments(data, opps), _moments(data, opps)])
    zone = data.draw(st.sampled_from(ZONES))
    used = [pipeline for pipeline in pool if any(opp.pipeline.id == pipeline.id for opp in opps)]
    converting = data.draw(st.booleans())
    money: dict[str, Any] = {"currency": TARGET, "rates": RATES} if converting else {}

    _same(
        lambda deals: pipeline_movement(deals, start=first, end=second, time_zone=zone, **money),
        opps,
        frames,
    )
    _same(
        lambda deals: forecast_range(
            deals,
            seed=3,
            simulations=64,
            as_of=second,
            clock=FixedClock(second),
            time_zone=zone,
            **money,
        ),
        opps,
        frames,
    )
    _same(lambda deals: time_in_stage(deals, now=second, pipelines=used), opps, frames)
    days = data.draw(st.sampled_from([None, 0, 3]))
    _same(
        lambda deals: stale(deals, now=second, days=days, time_zone=zone, pipelines=used),
        opps,
        frames,
    )
    _same(lambda deals: funnel(deals, pipeline=pool[-1]), opps, frames)
    _same(lambda deals: stage_win_rates(deals, min_closed=1, pipelines=used), opps, frames)
    _same(slippage, opps, frames)
    _same(lambda deals: slippage_summary(deals, by="account"), opps, frames)
    point: Any = data.draw(st.sampled_from(["last_open_stage", "opened", "before_close"]))
    _same(lambda deals: calibration(deals, bins=4, point=point), opps, frames)
