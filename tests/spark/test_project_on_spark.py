"""``oppcore.frame.project`` on a PySpark DataFrame of event records: the deal table, made in
the executors (one call of the domain's projector per deal), nothing collected to the driver.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from oppcore.analytics import forecast
from oppcore.domain.versions import COLUMNS
from oppcore.frame import _project_spark, project
from tests.spark.conftest import PANDAS_WARNING, Book

pl = pytest.importorskip("polars")

pytestmark = pytest.mark.filterwarnings(PANDAS_WARNING)

KEY = ["opportunity_id", "recorded_from", "valid_from", "version"]


def _polars(frame: Any) -> Any:
    """A Spark DataFrame's rows as a polars frame (through Arrow, so decimals stay exact)."""
    return pl.from_arrow(frame.toArrow()).with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC")
    )


def test_the_projection_of_spark_records_is_the_deal_table(book: Book) -> None:
    """Every row and column of the store's deal table, with its types, as a Spark DataFrame."""
    got = project(book.records)
    assert type(got) is type(book.records)
    assert got.columns == list(COLUMNS)
    assert dict(got.dtypes) == dict(book.deals.dtypes)  # the Parquet deal table's types
    assert _polars(got).sort(KEY).equals(book.table.sort(KEY))


@pytest.mark.parametrize("arrow", [True, False], ids=["applyInArrow", "applyInPandas"])
def test_both_grouped_routes_give_the_same_rows(sample_book: Book, arrow: bool) -> None:
    """applyInArrow (Spark 4) and applyInPandas (Spark 3.5) project alike."""
    got = _project_spark(sample_book.records, arrow=arrow)
    assert _polars(got).sort(KEY).equals(sample_book.table.sort(KEY))


def test_the_analytics_of_a_projection_are_the_analytics_of_the_deals(book: Book) -> None:
    """Events to analytics without leaving Spark: project (kept, as the how-to advises: the
    forecast reads the table more than once), then forecast on the result."""
    projected = project(book.records).cache()
    try:
        got = forecast(projected, period="quarter", clock=book.clock)
    finally:
        projected.unpersist()
    assert got == forecast(book.opportunities, period="quarter", clock=book.clock)


def test_a_session_in_another_time_zone_projects_the_same_instants(
    spark: Any, sample_book: Book
) -> None:
    """Times leave the executors as UTC instants, whatever the session's zone."""
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        got = _polars(project(sample_book.records))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert got.sort(KEY).equals(sample_book.table.sort(KEY))


def test_a_bad_record_fails_the_job_naming_the_stream(spark: Any, sample_book: Book) -> None:
    """The executor raises CorruptStoreError; Spark reports it with its sentence."""
    errors: Any = pytest.importorskip("pyspark.errors")
    deal = sample_book.opportunities[0].id
    records = sample_book.records.selectExpr(
        *(
            f"CASE WHEN stream_id = '{deal}' AND version = 2 THEN 'Teleported' ELSE type END AS type"
            if name == "type"
            else name
            for name in sample_book.records.columns
        )
    )
    projected = project(records)  # lazy: nothing has run yet
    with pytest.raises(errors.PythonException) as raised:
        projected.collect()
    message = str(raised.value)
    assert "CorruptStoreError" in message
    assert f"Stream '{deal}' version 2 holds unknown event type 'Teleported'" in message


def test_a_missing_pipeline_definition_fails_the_job_naming_the_stream(
    sample_book: Book,
) -> None:
    """Opened names its pipeline; without the definition record the deal cannot be read."""
    errors: Any = pytest.importorskip("pyspark.errors")
    records = sample_book.records.filter("NOT startswith(stream_id, 'definition:')")
    with pytest.raises(errors.PythonException) as raised:
        project(records).collect()
    message = str(raised.value)
    assert "CorruptStoreError" in message
    assert "(Opened) names pipeline definition" in message


def test_records_written_by_another_process_project_alike(
    spark: Any, sample_book: Book, tmp_path: Any
) -> None:
    """Parquet split into many files (as a cluster writes it) projects to the same rows."""
    folder = os.fspath(tmp_path / "split")
    sample_book.records.repartition(7).write.parquet(folder)
    got = project(spark.read.parquet(folder))
    assert _polars(got).sort(KEY).equals(sample_book.table.sort(KEY))
