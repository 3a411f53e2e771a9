"""The analytics on a PySpark DataFrame of deal versions give exactly the object results.

The deal table is written as Parquet and read by a real local Spark, as a team does with
``oppcore export --format parquet``; each analytic is called with the Spark DataFrame and with
the opportunities, and the two results must be equal, every row and every exact decimal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from oppcore import ValidationError
from oppcore.analytics import effectiveness, forecast, sales_cycle, snapshot
from oppcore.frame import deal_frame
from tests.spark.conftest import PANDAS_WARNING, Book

pl = pytest.importorskip("polars")

pytestmark = pytest.mark.filterwarnings(PANDAS_WARNING)


@pytest.mark.parametrize(
    ("period", "as_of", "zone"),
    [("quarter", False, None), ("month", True, None), ("month", False, "Asia/Bangkok")],
    ids=["quarter", "month-as-of", "month-in-bangkok"],
)
def test_the_forecast_of_a_spark_frame_is_the_forecast_of_the_deals(
    book: Book, period: Any, as_of: bool, zone: str | None
) -> None:
    """Every period, every exact sum: now, as of a day in the history, in a local calendar."""
    moment = book.midway if as_of else None
    kw: dict[str, Any] = {"period": period, "as_of": moment, "time_zone": zone}
    got = forecast(book.deals, clock=book.clock, **kw)
    want = forecast(book.opportunities, clock=book.clock, **kw)
    assert got == want
    assert got.rows


@pytest.mark.parametrize("by", ["campaign", "owner", "type"])
def test_effectiveness_of_a_spark_frame_is_the_effectiveness_of_the_deals(
    book: Book, by: Any
) -> None:
    """Counts, both win rates, revenue, cycle days and campaign costs agree exactly."""
    campaigns = book.campaigns if by == "campaign" else None
    got = effectiveness(book.deals, by=by, campaigns=campaigns, clock=book.clock)
    want = effectiveness(book.opportunities, by=by, campaigns=campaigns, clock=book.clock)
    assert got == want
    assert got.rows


@pytest.mark.parametrize(("basis", "zone"), [("won", None), ("closed", "America/New_York")])
def test_the_sales_cycle_of_a_spark_frame_is_the_cycle_of_the_deals(
    book: Book, basis: Any, zone: str | None
) -> None:
    """Count, mean, median and p90 agree, days counted on the zone's clocks."""
    got = sales_cycle(book.deals, basis=basis, time_zone=zone)
    want = sales_cycle(book.opportunities, basis=basis, time_zone=zone)
    assert got == want
    assert got.count > 0


def test_a_snapshot_of_a_spark_frame_is_a_spark_frame_of_the_deals_then(book: Book) -> None:
    """The rows standing then, as a Spark DataFrame, are the deals' own current rows then."""
    got = snapshot(book.deals, as_of=book.midway)
    assert type(got) is type(book.deals)
    then = snapshot(book.opportunities, as_of=book.midway)
    want = deal_frame(then).filter(pl.col("valid_to").is_null(), pl.col("recorded_to").is_null())
    rows = _polars(got).sort("opportunity_id")
    assert rows["opportunity_id"].to_list() == sorted(opp.id for opp in then)
    columns = ["opportunity_id", "version", "stage", "outcome", "expected_close", "amount"]
    assert rows.select(columns).equals(want.sort("opportunity_id").select(columns))


def _polars(frame: Any) -> Any:
    """A Spark DataFrame's rows as a polars frame (through Arrow, so decimals stay exact)."""
    return pl.from_arrow(frame.toArrow()).with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC")
    )


def test_a_session_in_another_time_zone_gives_the_same_forecast_or_says_so(
    spark: Any, sample_book: Book
) -> None:
    """A cluster whose sessions run in New York time: the same (UTC) monthly forecast, or a
    clear refusal (Spark would read dates in the session's zone: some deals closed late in a
    UTC day would land a day, and now and then a month, early)."""
    kw: dict[str, Any] = {"period": "month", "clock": sample_book.clock}
    want = forecast(sample_book.opportunities, **kw)
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        got: object = forecast(sample_book.deals, **kw)
    except ValidationError as exc:
        got = exc
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    if isinstance(got, ValidationError):
        assert "spark.sql.session.timeZone" in str(got)
    else:
        assert got == want


def test_a_past_day_is_a_moment_not_a_session_date(sample_book: Book) -> None:
    """as_of compares instants on Spark: the same forecast at an instant and its UTC twin."""
    moment = datetime.fromisoformat("2026-06-01T07:00:00+07:00")
    got = forecast(sample_book.deals, as_of=moment, clock=sample_book.clock)
    assert got == forecast(sample_book.opportunities, as_of=moment, clock=sample_book.clock)
