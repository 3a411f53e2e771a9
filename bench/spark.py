"""Spark benchmarks: oppcore's forecast on a PySpark DataFrame (local[2]) against the same
forecast on DuckDB, both reading the same Parquet deal table, and ``project`` of event records
on Spark against ``project`` on polars in this one process.

Run from the repository root with ``pip install -e '.[spark,test]'`` and Java 17 or later::

    python bench/spark.py --quick             # 20,000 deals, 3 repeats: about a minute
    python bench/spark.py                     # 100,000 deals, 5 repeats: a few minutes

The deal table is the synthetic frame of ``bench/frames.py`` (one current row per deal and an
earlier, closed row for a third of them), written once as Parquet; every run reads it again
(``spark.read.parquet`` / ``duckdb.read_parquet`` / ``polars.scan_parquet``), so reading is
part of each figure, as it is for a team whose table lives in files.  The event records for
``project`` are a ``sample.generate`` book (``--project-deals``), written as Parquet the way
``oppcore export --format parquet --events`` writes them.  Every contender's answer is checked
equal to the others' before timing; figures are medians of interleaved repeats, ratios
measured in this process: the machine is shared and noisy.  Spark runs on two cores here, so
the figures say what a cluster adds on one machine (the JVM, its scheduling, the Arrow hops
to the Python workers), not what a cluster of many machines gives.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing
import duckdb
import frames
import polars as pl

from oppcore import FixedClock, Repository, analytics, sample
from oppcore.frame import event_frame, project
from oppcore.storage import MemoryEventStore

UTC = timezone.utc
CLOCK = FixedClock(datetime(2027, 1, 1, tzinfo=UTC))


def spark_session(cores: int) -> Any:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("oppcore-bench")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.default.parallelism", str(cores))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def run(contenders: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for turn in range(repeats):
        for name, work in _timing.rotated(list(contenders.items()), turn):
            _, sample_ = _timing.timed(work)
            times[name].append(sample_.wall)
        _timing.progress(f"repeat {turn + 1} of {repeats}")
    for name, values in times.items():
        print(
            f"  {name:40s} median {_timing.median(values) * 1000:9.1f} ms "
            f"({_timing.spread(values, 1000, 1)} ms)"
        )
    return times


def ratio(times: dict[str, list[float]], ours: str, theirs: str) -> None:
    paired = [a / b for a, b in zip(times[ours], times[theirs], strict=True)]
    value = _timing.median(times[ours]) / _timing.median(times[theirs])
    print(f"  {ours} / {theirs}: {value:.2f}x (paired {min(paired):.2f}-{max(paired):.2f})")


def forecast_part(spark: Any, folder: str, deals: int, repeats: int) -> None:
    _timing.progress(f"building and writing the deal table of {deals:,} deals")
    table = frames.build(deals)
    path = os.path.join(folder, "deals.parquet")
    table.write_parquet(path)
    size = os.path.getsize(path)
    print(
        f"forecast by quarter: {deals:,} deals, {table.height:,} rows, Parquet {size / 1e6:.1f} MB"
    )

    def on_spark() -> Any:
        return analytics.forecast(spark.read.parquet(path), period="quarter", clock=CLOCK)

    def on_duckdb() -> Any:
        return analytics.forecast(duckdb.read_parquet(path), period="quarter", clock=CLOCK)

    def on_polars() -> Any:
        return analytics.forecast(pl.scan_parquet(path), period="quarter", clock=CLOCK)

    _timing.progress("checking that the three engines agree (and warming the JVM)")
    want = on_duckdb()
    assert on_spark() == want, "Spark's forecast differs from DuckDB's"
    assert on_polars() == want, "polars's forecast differs from DuckDB's"
    assert want.rows
    times = run(
        {
            "Spark local[2]: read + forecast": on_spark,
            "DuckDB: read + forecast": on_duckdb,
            "polars lazy (context): scan + forecast": on_polars,
        },
        repeats,
    )
    ratio(times, "Spark local[2]: read + forecast", "DuckDB: read + forecast")
    ratio(times, "polars lazy (context): scan + forecast", "DuckDB: read + forecast")


def project_part(spark: Any, folder: str, deals: int, repeats: int) -> None:
    _timing.progress(f"generating a sample book of {deals:,} deals")
    repo = Repository(MemoryEventStore())
    repo.save_all(sample.generate(opportunities=deals).values())
    events = event_frame(repo)
    path = os.path.join(folder, "events.parquet")
    events.write_parquet(path)
    size = os.path.getsize(path)
    print(f"project: {deals:,} deals, {events.height:,} event records, Parquet {size / 1e6:.1f} MB")
    key = ["opportunity_id", "recorded_from", "valid_from", "version"]

    def on_spark() -> Any:
        # Written out, as a team keeps the projected table: every deal is projected.
        target = os.path.join(folder, "projected-by-spark")
        project(spark.read.parquet(path)).write.mode("overwrite").parquet(target)
        return target

    def on_polars() -> Any:
        return project(pl.read_parquet(path))

    _timing.progress("checking that Spark and polars project alike")
    want = on_polars()
    got = pl.read_parquet(os.path.join(on_spark(), "*.parquet")).with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC")
    )
    assert got.sort(key).equals(want.sort(key)), "Spark's projection differs from polars's"
    print(f"  {want.height:,} deal-version rows")
    times = run(
        {
            "Spark local[2]: read + project + write": on_spark,
            "polars, one process: read + project": on_polars,
        },
        repeats,
    )
    ratio(times, "Spark local[2]: read + project + write", "polars, one process: read + project")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000, help="deals in the forecast table")
    parser.add_argument(
        "--project-deals", type=int, default=20_000, help="deals in the book for project"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cores", type=int, default=2, help="Spark's local[N]")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 deals, 5,000 to project, 3 repeats"
    )
    parser.add_argument("--only", action="append", choices=("forecast", "project"))
    args = parser.parse_args()
    deals, projected, repeats = (
        (20_000, 5_000, 3) if args.quick else (args.deals, args.project_deals, args.repeats)
    )
    parts = args.only or ["forecast", "project"]
    import pyspark

    print(f"# Spark against DuckDB: {repeats} repeats; {_timing.source_state()}")
    print(
        f"# pyspark {pyspark.__version__}, duckdb {duckdb.__version__}, polars {pl.__version__}, "
        f"narwhals {_timing.package_version('narwhals')}, Spark local[{args.cores}]"
    )
    _timing.progress("starting Spark")
    spark = spark_session(args.cores)
    try:
        with tempfile.TemporaryDirectory(prefix="oppcore-bench-spark-") as folder:
            if "forecast" in parts:
                forecast_part(spark, folder, deals, repeats)
            if "project" in parts:
                project_part(spark, folder, projected, repeats)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
