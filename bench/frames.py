"""Deal-frame benchmarks (issue 12): oppcore's analytics on a ready polars deal frame against
a hand-written polars expression that computes the same exact numbers, and the pandas route.

Run from the repository root with ``pip install -e '.[frame,test]'``::

    python bench/frames.py --quick            # 100,000 deals, 3 repeats
    python bench/frames.py                    # the issue's workload: 1,000,000 deals, 5 repeats

The frame is built with polars directly (one current row per deal, and an earlier, closed
row for a third of them, as a deal that changed once has), so building a million
``Opportunity`` objects is not part of any figure.  Every contender's answer is checked equal
to oppcore's before timing.  Figures are medians of interleaved repeats and ratios measured in
this one process: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402

from oppcore import analytics  # noqa: E402
from oppcore.domain.versions import COLUMNS  # noqa: E402
from oppcore.frame import _schema  # noqa: E402

UTC = timezone.utc
STAGES = [
    ("wait", "open", "pipeline", 10),
    ("in_progress", "open", "best_case", 50),
    ("negotiation", "open", "commit", 80),
    ("closed_won", "won", "closed", 100),
    ("closed_lost", "lost", "omitted", 0),
]


def build(deals: int, seed: int = 7) -> pl.DataFrame:
    """A valid deal frame of ``deals`` deals in THB, dated over 2026-2027."""
    import numpy as np

    rng = np.random.default_rng(seed)
    stage = rng.integers(0, len(STAGES), deals)
    keys = np.array([s[0] for s in STAGES])[stage]
    outcome = np.array([s[1] for s in STAGES])[stage]
    category = np.array([s[2] for s in STAGES])[stage]
    probability = np.array([s[3] for s in STAGES])[stage]
    cents = rng.integers(100_00, 5_000_000_00, deals)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    created = [start + timedelta(minutes=int(m)) for m in rng.integers(0, 365 * 24 * 60, deals)]
    cycle = rng.integers(1, 200 * 24 * 60, deals)
    closed = [
        created[i] + timedelta(minutes=int(cycle[i])) if outcome[i] != "open" else None
        for i in range(deals)
    ]
    close_day = [date(2026, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 730, deals)]
    ids = [f"opp-{i:07d}" for i in range(deals)]
    amount = [Decimal(int(c)).scaleb(-2) for c in cents]
    revenue = [a * int(p) / 100 for a, p in zip(amount, probability, strict=True)]
    campaign = np.array([f"camp-{i:02d}" for i in range(40)] + [None] * 10)[
        rng.integers(0, 50, deals)
    ]
    owner = np.array([f"rep-{i:02d}" for i in range(60)])[rng.integers(0, 60, deals)]
    current = pl.DataFrame(
        {
            "opportunity_id": ids,
            "version": [3] * deals,
            "valid_from": [c or d for c, d in zip(closed, created, strict=True)],
            "valid_to": [None] * deals,
            "recorded_from": [c or d for c, d in zip(closed, created, strict=True)],
            "recorded_to": [None] * deals,
            "name": ids,
            "pipeline_id": ["default"] * deals,
            "stage": keys.tolist(),
            "outcome": outcome.tolist(),
            "forecast_category": category.tolist(),
            "amount": amount,
            "currency": ["THB"] * deals,
            "probability": [Decimal(int(p)) for p in probability],
            "expected_revenue": revenue,
            "expected_close": close_day,
            "created_at": created,
            "closed_at": closed,
            "type": ["new_customer"] * deals,
            "campaign_id": campaign.tolist(),
            "lead_id": [None] * deals,
            "lead_source": ["web"] * deals,
            "owner": owner.tolist(),
            "account": [None] * deals,
            "lost_reason": [None] * deals,
        },
        schema=_schema(pl),
    )
    earlier = current.head(deals // 3).with_columns(
        version=pl.lit(2, dtype=pl.Int64),
        valid_from=pl.col("created_at"),
        valid_to=pl.col("created_at") + pl.duration(minutes=1),
        recorded_from=pl.col("created_at"),
        stage=pl.lit("wait"),
        outcome=pl.lit("open"),
        forecast_category=pl.lit("pipeline"),
        closed_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
    )
    return pl.concat([current, earlier]).select(list(COLUMNS))


def polars_forecast(frame: pl.DataFrame) -> dict[tuple[Any, ...], Any]:
    """By hand: the quarter of each deal's date, sums per quarter, as exact decimals."""
    now = frame.filter(pl.col("valid_to").is_null() & pl.col("recorded_to").is_null())
    day = (
        pl.when(pl.col("outcome") == "open")
        .then(pl.col("expected_close"))
        .otherwise(pl.col("closed_at").dt.date())
    )
    quarter = day.dt.year().cast(pl.String) + "-Q" + day.dt.quarter().cast(pl.String)
    is_open = pl.col("outcome") == "open"
    table = (
        now.with_columns(period=quarter)
        .group_by("period")
        .agg(
            open_count=is_open.sum(),
            pipeline=pl.col("amount").filter(is_open & (pl.col("forecast_category") != "omitted")).sum(),
            best_case=pl.col("amount").filter(is_open & (pl.col("forecast_category") == "best_case")).sum(),
            commit=pl.col("amount").filter(is_open & (pl.col("forecast_category") == "commit")).sum(),
            weighted=pl.col("expected_revenue").filter(is_open).sum(),
            won_count=(pl.col("outcome") == "won").sum(),
            won=pl.col("amount").filter(pl.col("outcome") == "won").sum(),
            lost_count=(pl.col("outcome") == "lost").sum(),
        )
        .sort("period")
    )
    return {(row["period"],): row for row in table.iter_rows(named=True)}


def pandas_forecast(frame: pd.DataFrame) -> dict[tuple[Any, ...], Any]:
    """The pandas route: the same sums, with Decimal objects (exact, as a user would)."""
    now = frame[frame["valid_to"].isna() & frame["recorded_to"].isna()].copy()
    closed = now["closed_at"].dt.date
    day = now["expected_close"].where(now["outcome"] == "open", closed)
    day = pd.to_datetime(day.astype("object"))
    now["period"] = day.dt.year.astype(str) + "-Q" + day.dt.quarter.astype(str)
    now["amount"] = now["amount"].astype(object)
    now["expected_revenue"] = now["expected_revenue"].astype(object)
    result = {}
    for period, group in now.groupby("period"):
        open_ = group[group["outcome"] == "open"]
        won = group[group["outcome"] == "won"]
        result[(period,)] = {
            "open_count": len(open_),
            "pipeline": sum(open_.loc[open_["forecast_category"] != "omitted", "amount"], Decimal(0)),
            "weighted": sum(open_["expected_revenue"], Decimal(0)),
            "won_count": len(won),
            "won": sum(won["amount"], Decimal(0)),
        }
    return result


def polars_effectiveness(frame: pl.DataFrame) -> dict[Any, Any]:
    now = frame.filter(pl.col("valid_to").is_null() & pl.col("recorded_to").is_null())
    won = pl.col("outcome") == "won"
    is_open = pl.col("outcome") == "open"
    table = now.group_by("campaign_id").agg(
        opportunities=pl.len(),
        open=is_open.sum(),
        won=won.sum(),
        lost=(pl.col("outcome") == "lost").sum(),
        won_revenue=pl.col("amount").filter(won).sum(),
        pipeline=pl.col("amount").filter(is_open & (pl.col("forecast_category") != "omitted")).sum(),
        weighted=pl.col("expected_revenue").filter(is_open).sum(),
        cycle=(pl.col("closed_at") - pl.col("created_at")).filter(won).dt.total_microseconds().sum(),
    )
    return {row["campaign_id"]: row for row in table.iter_rows(named=True)}


def check(frame: pl.DataFrame) -> None:
    """The hand-written answers agree with oppcore's before anything is timed."""
    ours = analytics.forecast(frame, period="quarter")
    by_hand = polars_forecast(frame)
    for row in ours:
        assert row.period is not None
        theirs = by_hand[(row.period.label,)]
        assert row.open_count == theirs["open_count"]
        assert row.pipeline is not None and row.pipeline.amount == theirs["pipeline"]
        assert row.weighted is not None and row.weighted.amount == theirs["weighted"]
        assert row.won is not None and row.won.amount == theirs["won"]
    effect = analytics.effectiveness(frame, by="campaign")
    hand = polars_effectiveness(frame)
    for row in effect:
        assert row.won_revenue is not None and row.won_revenue.amount == hand[row.key]["won_revenue"]
        assert row.opportunities == hand[row.key]["opportunities"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    deals, repeats = (100_000, 3) if args.quick else (args.deals, args.repeats)
    print(f"# deal frames: {deals:,} deals, {repeats} repeats; {_timing.source_state()}")
    print(f"# polars {pl.__version__}, pandas {pd.__version__}, "
          f"narwhals {_timing.package_version('narwhals')}")
    _timing.progress("building the frame")
    frame = build(deals)
    rows = len(frame)
    size = frame.estimated_size()
    print(f"frame: {rows:,} rows, {size / deals:.0f} bytes per deal (polars estimated_size)")
    panda = frame.to_pandas(use_pyarrow_extension_array=True)
    check(frame)
    contenders = {
        "oppcore forecast": lambda: analytics.forecast(frame, period="quarter"),
        "polars forecast by hand": lambda: polars_forecast(frame),
        "pandas forecast (Decimal)": lambda: pandas_forecast(panda),
        "oppcore effectiveness": lambda: analytics.effectiveness(frame, by="campaign"),
        "polars effectiveness by hand": lambda: polars_effectiveness(frame),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for turn in range(repeats):
        for name, work in _timing.rotated(list(contenders.items()), turn):
            _, sample = _timing.timed(work)
            times[name].append(sample.wall)
        _timing.progress(f"repeat {turn + 1} of {repeats}")
    for name, values in times.items():
        print(f"{name:32s} median {_timing.median(values) * 1000:9.1f} ms "
              f"({_timing.spread(values, 1000, 1)} ms)")
    for ours, theirs, target in (
        ("oppcore forecast", "polars forecast by hand", 1.5),
        ("oppcore effectiveness", "polars effectiveness by hand", 1.5),
        ("pandas forecast (Decimal)", "oppcore forecast", None),
    ):
        paired = [a / b for a, b in zip(times[ours], times[theirs], strict=True)]
        ratio = _timing.median(times[ours]) / _timing.median(times[theirs])
        word = "" if target is None else f"target <= {target}x: {_timing.verdict(ratio, target, paired)}"
        print(f"{ours} / {theirs}: {ratio:.2f}x (paired {min(paired):.2f}-{max(paired):.2f}) {word}")


if __name__ == "__main__":
    main()
