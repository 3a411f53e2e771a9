"""The analytics on a deal frame give exactly what they give on the opportunities, on every engine.

Each public function is called twice with the same arguments, once with the opportunities
and once with a deal frame of each engine (polars, pyarrow, pandas with Arrow dtypes,
DuckDB), and the two results must be equal: every row, every exact decimal.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import CurrencyMismatchError, ExchangeRates, ValidationError, sample
from oppcore.analytics import (
    campaign_effectiveness,
    effectiveness,
    forecast,
    lead_source_effectiveness,
    sales_cycle,
    snapshot,
)
from oppcore.frame import deal_frame
from tests.deal_table.engines import ENGINES, as_arrow

pl = pytest.importorskip("polars")

SAMPLE = sample.generate(opportunities=120)
FRAME = deal_frame(SAMPLE.opportunities)
MOMENTS: list[datetime | date | None] = [
    None,
    datetime(2026, 6, 1, tzinfo=timezone.utc),
    date(2026, 3, 31),
]
TODAY = datetime(2027, 1, 1, tzinfo=timezone.utc)


def _clock() -> Any:
    from oppcore import FixedClock

    return FixedClock(TODAY)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("as_of", MOMENTS)
@pytest.mark.parametrize("period", ["month", "quarter"])
def test_the_forecast_of_a_frame_is_the_forecast_of_the_deals(
    engine: str, as_of: datetime | date | None, period: Any
) -> None:
    """Every row, every exact sum, on each engine, now and as of a past day."""
    frame = ENGINES[engine](FRAME)
    got = forecast(frame, period=period, as_of=as_of, clock=_clock())
    want = forecast(SAMPLE.opportunities, period=period, as_of=as_of, clock=_clock())
    assert got == want
    assert got.rows  # the sample has deals in every quarter: nothing compared empty


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("zone", ["Asia/Bangkok", "America/New_York"])
def test_the_forecast_of_a_frame_follows_the_time_zone(engine: str, zone: str) -> None:
    """Close dates fall in the local calendar's periods on the engine too."""
    frame = ENGINES[engine](FRAME)
    got = forecast(frame, period="month", time_zone=zone, clock=_clock())
    want = forecast(SAMPLE.opportunities, period="month", time_zone=zone, clock=_clock())
    assert got == want


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_stage_probabilities_replace_the_deals_own_on_a_frame(engine: str) -> None:
    chances: dict[str, Decimal | int | str] = {"qualification": Decimal(5), "proposal": "55.5"}
    got = forecast(ENGINES[engine](FRAME), probabilities=chances, clock=_clock())
    want = forecast(SAMPLE.opportunities, probabilities=chances, clock=_clock())
    assert got == want


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("as_of", MOMENTS)
@pytest.mark.parametrize("by", ["campaign", "owner", "lead_source", "type", "account"])
def test_effectiveness_of_a_frame_is_the_effectiveness_of_the_deals(
    engine: str, as_of: datetime | date | None, by: Any
) -> None:
    """Counts, both win rates, revenue, cycle days and campaign costs agree exactly."""
    campaigns = SAMPLE.campaigns if by == "campaign" else None
    frame = ENGINES[engine](FRAME)
    got = effectiveness(frame, by=by, campaigns=campaigns, as_of=as_of, clock=_clock())
    want = effectiveness(
        SAMPLE.opportunities, by=by, campaigns=campaigns, as_of=as_of, clock=_clock()
    )
    assert got == want
    assert got.rows


@pytest.mark.parametrize("engine", ["polars", "pandas"])
def test_the_effectiveness_wrappers_take_frames(engine: str) -> None:
    frame = ENGINES[engine](FRAME)
    assert campaign_effectiveness(frame, SAMPLE.campaigns, clock=_clock()) == (
        campaign_effectiveness(SAMPLE.opportunities, SAMPLE.campaigns, clock=_clock())
    )
    assert lead_source_effectiveness(frame, clock=_clock()) == lead_source_effectiveness(
        SAMPLE.opportunities, clock=_clock()
    )


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("basis", ["won", "closed"])
@pytest.mark.parametrize("zone", [None, "America/New_York"])
def test_the_sales_cycle_of_a_frame_is_the_cycle_of_the_deals(
    engine: str, basis: Any, zone: str | None
) -> None:
    """Count, mean, median and p90 agree, days counted on the zone's clocks."""
    got = sales_cycle(ENGINES[engine](FRAME), basis=basis, time_zone=zone)
    want = sales_cycle(SAMPLE.opportunities, basis=basis, time_zone=zone)
    assert got == want
    assert got.count > 0


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_snapshot_of_a_frame_is_a_frame_of_the_deals_as_they_stood(engine: str) -> None:
    """The rows standing then, as a frame of the same engine, are the deals' own rows then."""
    as_of = datetime(2026, 6, 1, tzinfo=timezone.utc)
    frame = ENGINES[engine](FRAME)
    got = snapshot(frame, as_of=as_of)
    assert type(got) is type(frame)
    then = snapshot(SAMPLE.opportunities, as_of=as_of)
    want = deal_frame(then).filter(pl.col("valid_to").is_null(), pl.col("recorded_to").is_null())
    rows = pl.from_arrow(as_arrow(got)).sort("opportunity_id")
    assert rows["opportunity_id"].to_list() == sorted(opp.id for opp in then)
    columns = ["opportunity_id", "version", "stage", "outcome", "expected_close"]
    assert rows.select(columns).rows() == want.sort("opportunity_id").select(columns).rows()
    assert [Decimal(v).normalize() if v is not None else None for v in rows["amount"]] == [
        v.normalize() if v is not None else None for v in want.sort("opportunity_id")["amount"]
    ]


def test_rates_convert_on_both_routes_alike() -> None:
    """A table in another currency converts each deal at its own date, exactly alike."""
    rates = ExchangeRates([("THB", "USD", date(2020, 1, 1), "0.0275")])
    got = forecast(FRAME, currency="USD", rates=rates, clock=_clock())
    want = forecast(SAMPLE.opportunities, currency="USD", rates=rates, clock=_clock())
    assert got == want
    assert {row.pipeline.currency for row in got.rows if row.pipeline} == {"USD"}


def test_mixed_currencies_without_rates_are_the_same_error_on_both_routes() -> None:
    from oppcore import Money, Opportunity

    usd = Opportunity.open(
        name="In dollars", amount=Money("10", "USD"), id="usd-1", at=TODAY, clock=_clock()
    )
    deals = [usd, *SAMPLE.opportunities]
    with pytest.raises(CurrencyMismatchError) as on_objects:
        forecast(deals, clock=_clock())
    with pytest.raises(CurrencyMismatchError) as on_frame:
        forecast(deal_frame(deals), clock=_clock())
    assert str(on_frame.value) == str(on_objects.value)


def test_a_function_as_by_is_refused_on_a_frame_naming_what_works() -> None:
    with pytest.raises(ValidationError, match="by= takes 'campaign'"):
        effectiveness(FRAME, by=lambda row: row.owner)


def test_a_frame_without_the_deal_table_columns_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a deal frame"):
        forecast(pl.DataFrame({"x": [1]}))
