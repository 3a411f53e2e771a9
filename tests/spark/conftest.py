"""A real local Spark for the tests in this folder, which run only with ``OPPCORE_SPARK=1``.

Starting Spark takes some seconds and needs Java and pyspark (the ``spark`` extra), so the
default test run skips this folder; CI runs it as a step of its own (``.ci/run``)::

    OPPCORE_SPARK=1 pytest -q -W error tests/spark

pyspark is imported only here, at run time and typed ``Any``, so the folder collects and
type-checks without it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from oppcore import FixedClock, Repository, sample
from oppcore.frame import deal_frame, event_frame
from oppcore.storage import MemoryEventStore

#: pyspark 4 warns about pandas 3 on every pandas-backed call; nothing here is affected (the
#: money and time columns go through Arrow), so that one warning, and only it, is let through.
PANDAS_WARNING = "ignore:PySpark does not yet fully support pandas:FutureWarning"
MAVEN_TODAY = datetime(2018, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session", autouse=True)
def _only_with_spark() -> None:
    if os.environ.get("OPPCORE_SPARK") != "1":
        pytest.skip("the Spark tests start a local Spark: run them with OPPCORE_SPARK=1")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local Spark with two cores, two shuffle partitions, no UI, sessions in UTC."""
    sql: Any = importlib.import_module("pyspark.sql")
    session = (
        sql.SparkSession.builder.master("local[2]")
        .appName("oppcore-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # The executors' Python is this one: it has oppcore and its frame extra.
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class Book:
    """One book of deals in every form the tests read: the opportunities, the deal table and
    the event records as Parquet files, and both as Spark DataFrames."""

    def __init__(
        self,
        name: str,
        repo: Repository,
        folder: Path,
        spark: Any,
        *,
        midway: datetime,
        today: datetime,
    ) -> None:
        self.name = name
        self.midway = midway  # a moment inside the book's history, for as_of
        self.clock = FixedClock(today)  # after all of it: what "now" is for the analytics
        self.opportunities = repo.opportunities()
        self.campaigns = repo.campaigns()
        self.table = deal_frame(repo)
        self.events = event_frame(repo)
        self.table_path = folder / f"{name}-deals.parquet"
        self.events_path = folder / f"{name}-events.parquet"
        self.table.write_parquet(self.table_path)
        self.events.write_parquet(self.events_path)
        self.deals = spark.read.parquet(os.fspath(self.table_path))
        self.records = spark.read.parquet(os.fspath(self.events_path))


def _repository(values: Any) -> Repository:
    repo = Repository(MemoryEventStore())
    repo.save_all(values)
    return repo


@pytest.fixture(scope="session")
def sample_book(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Book:
    """The seeded sample: 300 deals with a year of history, in two pipelines."""
    made = sample.generate(opportunities=300)
    return Book(
        "sample",
        _repository(made.values()),
        tmp_path_factory.mktemp("sample"),
        spark,
        midway=datetime(2026, 6, 1, tzinfo=timezone.utc),
        today=datetime(2027, 1, 1, tzinfo=timezone.utc),
    )


@pytest.fixture(scope="session")
def maven_book(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Book:
    """The Maven CRM data set (8,800 real deals from 2016-2017), read with the preset mapping
    as the other tests read it (tests/trust/test_time_zones.py)."""
    from oppcore.io import MAVEN_CRM, read_csv

    folder = Path(
        os.environ.get("OPPCORE_SHARED_DATA", Path(__file__).parents[2] / ".." / "shared" / "data")
    )
    source = folder / "maven_crm" / "sales_pipeline.csv"
    if not source.is_file():
        pytest.skip(f"{source} is absent (set OPPCORE_SHARED_DATA)")
    result = read_csv(
        source,
        mapping=MAVEN_CRM,
        opened_at=datetime(2016, 10, 1, tzinfo=timezone.utc),
        clock=FixedClock(MAVEN_TODAY),
    )
    assert not result.rejected
    repo = _repository([MAVEN_CRM.pipeline, *result.opportunities])
    return Book(
        "maven",
        repo,
        tmp_path_factory.mktemp("maven"),
        spark,
        midway=datetime(2017, 6, 1, tzinfo=timezone.utc),
        today=MAVEN_TODAY,
    )


@pytest.fixture(scope="session", params=["sample", "maven"])
def book(request: pytest.FixtureRequest) -> Book:
    """Each book in turn."""
    found: Book = request.getfixturevalue(f"{request.param}_book")
    return found
