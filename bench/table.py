"""Deal-table benchmarks (issue 12): what the stored table buys, against today's route and floors.

Run from the repository root with ``pip install -e '.[frame,test,postgres]'``::

    python bench/table.py --quick              # 20,000 deals, 3 repeats, about 2 minutes
    python bench/table.py                      # the issue's workload: 1,000,000 deals
    python bench/table.py --only saves         # one part (open, find, saves, refresh, size)

Measurements, each a median of interleaved repeats with the ratio printed beside it:

1. open: open the SQLite store and compute the forecast by quarter and effectiveness by
   campaign, (a) through the deal table (``repo.deal_frame(current=True)``), (b) through
   today's route (``repo.opportunities()``, replaying every event), (c) the floor: the same
   columns of the current rows read with plain SQL into polars and grouped there by hand.
2. find: ``repo.find(owner=..., outcome="open")`` against the same query in raw SQL.
3. saves: saves per second with the table kept against the same saves without it (the
   repository as it was before the table), on SQLite and on PostgreSQL, 1, 4 and 8 writer
   processes.
4. refresh: after one save, ``opportunities()`` on an open repository against reading the
   new events with ``read_all(after_position=...)``.
5. size: a polars deal frame's bytes per deal, and the stored bytes per deal.

PostgreSQL parts need ``OPPCORE_TEST_POSTGRES`` (``. .ci/postgres.sh && start_postgres``) or
``--postgres URL``; without one they are skipped and the output says so.  The machine is
shared and noisy: quote the ratios and medians, never a lone time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing
import polars as pl

from oppcore import FixedClock, Money, Opportunity, Repository, analytics, open_repository
from oppcore.storage import SqliteEventStore

UTC = timezone.utc
START = datetime(2026, 1, 5, 9, tzinfo=UTC)
OWNERS = 1_000
CAMPAIGNS = 40
BATCH = 5_000


# -- the deals -------------------------------------------------------------------------------


def deals(count: int, *, seed: int = 7, prefix: str = "deal") -> Iterator[Opportunity]:
    """``count`` deals of 1 to 3 events (open, move on, close), spread over 2026."""
    rng = random.Random(seed)
    for index in range(count):
        created = START + timedelta(minutes=rng.randrange(0, 300 * 24 * 60))
        clock = FixedClock(created)
        opp = Opportunity.open(
            name=f"Deal {index}",
            id=f"{prefix}-{index:07d}",
            amount=Money(Decimal(rng.randrange(1_000_00, 5_000_000_00)).scaleb(-2), "THB"),
            expected_close=date(2026, 1, 1) + timedelta(days=rng.randrange(0, 540)),
            campaign_id=f"camp-{rng.randrange(CAMPAIGNS):02d}" if rng.random() < 0.8 else None,
            owner=f"rep-{rng.randrange(OWNERS):04d}",
            lead_source=rng.choice(("web", "referral", "event", "partner")),
            at=created,
            clock=clock,
        )
        roll = rng.random()
        if roll < 0.6:
            moved = created + timedelta(days=rng.randrange(1, 30))
            opp = opp.move_to("in_progress", at=moved, clock=FixedClock(moved))
            if roll < 0.4:
                closed = moved + timedelta(days=rng.randrange(1, 90))
                clock = FixedClock(closed)
                opp = (
                    opp.win(at=closed, clock=clock)
                    if roll < 0.25
                    else opp.lose(at=closed, clock=clock)
                )
        yield opp


def fill(repo: Repository, count: int, *, prefix: str = "deal") -> None:
    batch: list[Opportunity] = []
    for index, opp in enumerate(deals(count, prefix=prefix), 1):
        batch.append(opp)
        if len(batch) == BATCH:
            repo.save_all(batch)
            batch = []
            if index % 100_000 == 0:
                _timing.progress(f"  {index:,} deals stored")
    if batch:
        repo.save_all(batch)


class WithoutTable(Repository):
    """The repository as it was before the deal table: saves write the events only."""

    def _table_keeper(self) -> Any:
        return None


# -- 1. open and analyse ----------------------------------------------------------------------


def by_table(path: Path) -> Any:
    with open_repository(path) as repo:
        frame = repo.deal_frame(current=True)
        return analytics.forecast(frame, period="quarter"), analytics.effectiveness(
            frame, by="campaign"
        )


def by_replay(path: Path) -> Any:
    with open_repository(path) as repo:
        opps = repo.opportunities()
        return analytics.forecast(opps, period="quarter"), analytics.effectiveness(
            opps, by="campaign"
        )


_FLOOR_SQL = (
    "SELECT outcome, forecast_category, amount, expected_revenue, expected_close, created_at, "
    "closed_at, campaign_id FROM oppcore_deal_versions "
    "WHERE valid_to IS NULL AND recorded_to IS NULL"
)


def by_hand(path: Path) -> Any:
    """The floor: plain SQL into polars, then the sums by hand (exact decimals)."""
    with sqlite3.connect(path) as db:
        rows = db.execute(_FLOOR_SQL).fetchall()
    money = pl.Decimal(38, 18)
    frame = pl.DataFrame(
        rows,
        schema=[
            "outcome",
            "forecast_category",
            "amount",
            "expected_revenue",
            "expected_close",
            "created_at",
            "closed_at",
            "campaign_id",
        ],
        orient="row",
    ).with_columns(
        pl.col("amount").str.to_decimal(scale=18).cast(money),
        pl.col("expected_revenue").str.to_decimal(scale=18).cast(money),
        pl.col("expected_close").str.to_date(),
        pl.col("created_at").str.to_datetime(time_zone="UTC"),
        pl.col("closed_at").str.to_datetime(time_zone="UTC"),
    )
    is_open = pl.col("outcome") == "open"
    won = pl.col("outcome") == "won"
    day = pl.when(is_open).then(pl.col("expected_close")).otherwise(pl.col("closed_at").dt.date())
    quarter = day.dt.year().cast(pl.String) + "-Q" + day.dt.quarter().cast(pl.String)
    forecast = (
        frame.with_columns(period=quarter)
        .group_by("period")
        .agg(
            open_count=is_open.sum(),
            pipeline=pl.col("amount")
            .filter(is_open & (pl.col("forecast_category") != "omitted"))
            .sum(),
            weighted=pl.col("expected_revenue").filter(is_open).sum(),
            won=pl.col("amount").filter(won).sum(),
            won_count=won.sum(),
            lost_count=(pl.col("outcome") == "lost").sum(),
        )
    )
    effectiveness = frame.group_by("campaign_id").agg(
        opportunities=pl.len(),
        won=won.sum(),
        won_revenue=pl.col("amount").filter(won).sum(),
        pipeline=pl.col("amount").filter(is_open).sum(),
        cycle=(pl.col("closed_at") - pl.col("created_at"))
        .filter(won)
        .dt.total_microseconds()
        .sum(),
    )
    return forecast, effectiveness


def measure_open(path: Path, repeats: int, replay_repeats: int) -> list[str]:
    table, _ = _timing.timed(lambda: by_table(path))
    replay, _ = _timing.timed(lambda: by_replay(path))
    assert table == replay, "the table route and the replay route disagree"
    hand = by_hand(path)[0].sort("period")
    for row in table[0]:
        if row.period is not None:
            theirs = hand.filter(pl.col("period") == row.period.label).row(0, named=True)
            assert row.open_count == theirs["open_count"]
            assert (row.won.amount if row.won else 0) == (theirs["won"] or 0)
    times: dict[str, list[float]] = {"table": [], "floor": [], "replay": []}
    for turn in range(repeats):
        contenders = [("table", by_table), ("floor", by_hand)]
        if turn < replay_repeats:
            contenders.append(("replay", by_replay))
        for name, work in _timing.rotated(contenders, turn):
            _, sample = _timing.timed(lambda work=work: work(path))
            times[name].append(sample.wall)
        _timing.progress(f"open: repeat {turn + 1} of {repeats}")
    table_s, floor_s, replay_s = (_timing.median(times[k]) for k in ("table", "floor", "replay"))
    faster = replay_s / table_s
    over_floor = table_s / floor_s
    paired = [t / f for t, f in zip(times["table"], times["floor"], strict=False)]
    return [
        "1. Open the SQLite store, forecast by quarter and effectiveness by campaign",
        f"   deal table route (deal_frame(current=True) + analytics) median {table_s:8.2f} s",
        f"   floor (plain SQL into polars, grouped by hand)          median {floor_s:8.2f} s",
        f"   today's route (opportunities() + analytics)             median {replay_s:8.2f} s"
        f" ({len(times['replay'])} runs)",
        f"   today's / table: {faster:.1f}x faster (target >= 50x: "
        f"{'PASS' if faster >= 50 else 'MISS'})",
        f"   table / floor: {over_floor:.2f}x (paired {min(paired):.2f}-{max(paired):.2f}; "
        f"target <= 2x: {_timing.verdict(over_floor, 2.0, paired)})",
    ]


# -- 2. find ---------------------------------------------------------------------------------


def measure_find(path: Path, repeats: int) -> list[str]:
    owners = [f"rep-{i:04d}" for i in range(0, OWNERS, max(1, OWNERS // 50))]
    repo = open_repository(path)
    repo.find(owner=owners[0], outcome="open")  # caught up, warm
    db = sqlite3.connect(path)
    raw = (
        "SELECT * FROM oppcore_deal_versions WHERE owner = ? AND outcome = ? "
        "AND valid_to IS NULL AND recorded_to IS NULL "
        "ORDER BY (expected_close IS NULL), expected_close, opportunity_id"
    )
    for owner in owners[:3]:
        assert len(repo.find(owner=owner, outcome="open")) == len(
            db.execute(raw, (owner, "open")).fetchall()
        )
    times: dict[str, list[float]] = {"find": [], "raw": []}
    found = 0
    for turn in range(repeats):
        for owner in owners:
            contenders: list[tuple[str, Callable[[], Any]]] = [
                ("find", lambda owner=owner: repo.find(owner=owner, outcome="open")),
                ("raw", lambda owner=owner: db.execute(raw, (owner, "open")).fetchall()),
            ]
            for name, work in _timing.rotated(contenders, turn):
                start = time.perf_counter()
                result = work()
                times[name].append(time.perf_counter() - start)
                found = len(result)
    repo.close()
    db.close()
    ours, theirs = _timing.median(times["find"]), _timing.median(times["raw"])
    paired = [a / b for a, b in zip(times["find"], times["raw"], strict=True)]
    ratio = ours / theirs
    return [
        f"2. find(owner=..., outcome='open'): {len(owners)} owners x {repeats} repeats, "
        f"about {found} rows each",
        f"   find median {ours * 1000:.2f} ms, raw SQL (fetchall of the same rows) median "
        f"{theirs * 1000:.2f} ms",
        f"   find / raw SQL: {ratio:.2f}x (target <= 1.5x: {_timing.verdict(ratio, 1.5, paired)}); "
        f"under 10 ms: {'PASS' if ours < 0.010 else 'MISS'}",
    ]


# -- 3. saves --------------------------------------------------------------------------------


def _writer(target: str, keep: bool, prefix: str, count: int, ready: Any, go: Any) -> float:
    repo = (Repository if keep else WithoutTable)(open_repository(target).store)
    batch = list(deals(count, prefix=prefix, seed=hash(prefix) & 0xFFFF))
    ready.put(1)
    go.wait()
    start = time.perf_counter()
    for opp in batch:
        repo.save(opp)
    elapsed = time.perf_counter() - start
    repo.close()
    return elapsed


def _run_writers(target: str, keep: bool, writers: int, count: int) -> float:
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    ready, go = manager.Queue(), manager.Event()
    with context.Pool(writers) as pool:
        results = [
            pool.apply_async(
                _writer, (target, keep, f"w{uuid.uuid4().hex[:8]}", count // writers, ready, go)
            )
            for _ in range(writers)
        ]
        for _ in range(writers):
            ready.get()
        start = time.perf_counter()
        go.set()
        for result in results:
            result.get()
        wall = time.perf_counter() - start
    manager.shutdown()
    return (count // writers) * writers / wall


def measure_saves(
    root: Path, postgres: str | None, counts: Sequence[int], saves: int, repeats: int
) -> list[str]:
    lines = [
        f"3. Saves per second, the table kept / not kept ({saves} new deals per run, one save "
        "each, 1-3 events; writer processes of their own)"
    ]
    targets: list[tuple[str, Callable[[], str]]] = [
        ("SQLite", lambda: str(root / f"s{uuid.uuid4().hex[:6]}.db"))
    ]
    if postgres is not None:
        targets.append(("PostgreSQL", lambda: postgres))
    else:
        lines.append("   PostgreSQL: SKIPPED (no OPPCORE_TEST_POSTGRES / --postgres)")
    for backend, make in targets:
        for writers in counts:
            rates: dict[bool, list[float]] = {True: [], False: []}
            for turn in range(repeats):
                for keep in _timing.rotated([True, False], turn):
                    target = make()
                    if backend == "PostgreSQL":
                        with pg_schema(postgres or "") as url:
                            open_repository(url).close()
                            rates[keep].append(_run_writers(url, keep, writers, saves))
                    else:
                        open_repository(target).close()
                        rates[keep].append(_run_writers(target, keep, writers, saves))
            kept, plain = _timing.median(rates[True]), _timing.median(rates[False])
            paired = [k / p for k, p in zip(rates[True], rates[False], strict=True)]
            ratio = kept / plain
            lines.append(
                f"   {backend:10s} {writers} writer{'s' if writers > 1 else ' '}: kept "
                f"{kept:7.0f}/s, not kept {plain:7.0f}/s: {ratio:.2f}x (target >= 0.8x: "
                f"{_timing.verdict(ratio, 0.8, paired, at_most=False)})"
            )
            _timing.progress(f"saves: {backend} {writers} writers done")
    return lines


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"oppcore_bench_table_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        conninfo = make_conninfo(url, options=f"-c search_path={name}")
        parts = conninfo_to_dict(conninfo)
        from urllib.parse import quote

        yield (
            f"postgresql://{quote(str(parts.get('user', '')))}@{parts.get('host', 'localhost')}:"
            f"{parts.get('port', 5432)}/{parts.get('dbname', 'postgres')}"
            f"?options={quote(str(parts['options']))}"
        )
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


# -- 4. refresh ------------------------------------------------------------------------------


def measure_refresh(path: Path, repeats: int) -> list[str]:
    repo = open_repository(path)
    repo.opportunities()
    writer = open_repository(path)
    ours: list[float] = []
    floor: list[float] = []
    for turn in range(repeats * 5):
        opp = writer.get(f"deal-{turn * 7:07d}")
        changed = opp.update(
            owner=f"rep-{turn % OWNERS:04d}x",
            at=opp.events[-1].at,
            clock=FixedClock(opp.events[-1].at),
        )
        writer.save(changed)
        store = repo.store
        assert isinstance(store, SqliteEventStore)
        last = store.last_position() - len(changed.events) + opp.version
        start = time.perf_counter()
        list(store.read_all(after_position=last))
        floor.append(time.perf_counter() - start)
        start = time.perf_counter()
        now = repo.opportunities()
        ours.append(time.perf_counter() - start)
        assert any(o.id == changed.id and o.owner == changed.owner for o in now[: turn * 7 + 1])
    repo.close()
    writer.close()
    ratio = _timing.median(ours) / _timing.median(floor)
    return [
        "4. After one save, opportunities() on an open repository",
        f"   refresh median {_timing.median(ours) * 1000:.2f} ms; reading the new events "
        f"(read_all after the last position) median {_timing.median(floor) * 1000:.2f} ms",
        f"   refresh / reading the new events: {ratio:.2f}x (target <= 2x: "
        f"{'PASS' if ratio <= 2 else 'MISS'})",
    ]


# -- 5. size ---------------------------------------------------------------------------------


def measure_size(path: Path, count: int) -> list[str]:
    with open_repository(path) as repo:
        every = repo.deal_frame()
        now = repo.deal_frame(current=True)
    size = path.stat().st_size
    with sqlite3.connect(path) as db:
        events = db.execute("SELECT SUM(LENGTH(payload)) FROM events").fetchone()[0]
        opened = db.execute(
            "SELECT AVG(LENGTH(payload)) FROM events WHERE type = 'Opened'"
        ).fetchone()[0]
    return [
        "5. Size",
        f"   polars deal frame, every row ({len(every):,} rows): "
        f"{every.estimated_size() / count:.0f} bytes per deal; current rows only: "
        f"{now.estimated_size() / count:.0f} bytes per deal (target < 300)",
        f"   SQLite file: {size / count:,.0f} bytes per deal with its table and indexes; event "
        f"payloads {events / count:,.0f} bytes per deal (an Opened payload averages "
        f"{opened:,.0f} bytes, its pipeline referenced, stored once per definition)",
    ]


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", action="append", choices=["open", "find", "saves", "refresh", "size"]
    )
    parser.add_argument("--postgres", default=os.environ.get("OPPCORE_TEST_POSTGRES"))
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--saves", type=int, default=2_000)
    parser.add_argument("--store", type=Path, help="reuse (or create) the benchmark store here")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.deals
    saves = 400 if args.quick else args.saves
    only = set(args.only or ["open", "find", "saves", "refresh", "size"])
    print(f"# deal table: {count:,} deals, {args.repeats} repeats; {_timing.source_state()}")
    print(
        f"# polars {pl.__version__}, narwhals {_timing.package_version('narwhals')}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = args.store or root / "bench.db"
        if only - {"saves"} and not path.exists():
            _timing.progress(f"writing {count:,} deals to {path}")
            start = time.perf_counter()
            with open_repository(path) as repo:
                fill(repo, count)
            print(
                f"store written in {time.perf_counter() - start:.0f} s (save_all, {BATCH:,} a batch)"
            )
        lines: list[str] = []
        if "open" in only:
            lines += measure_open(path, args.repeats, 1 if count > 100_000 else args.repeats)
        if "find" in only:
            lines += measure_find(path, args.repeats)
        if "refresh" in only:
            lines += measure_refresh(path, args.repeats)
        if "size" in only:
            lines += measure_size(path, count)
        if "saves" in only:
            counts = [int(n) for n in args.writers.split(",")]
            lines += measure_saves(root, args.postgres, counts, saves, args.repeats)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
