"""Storage benchmarks for oppcore (issue 3): ratios against a floor and against a peer, in one run.

Run from the repository root with oppcore installed::

    python bench/storage.py --quick                    # smoke run: 2,000 opportunities, 3 repeats
    python bench/storage.py                            # the issue's workload: 100,000 opportunities
    python bench/storage.py --opportunities 10000      # smaller

This machine and CI machines are shared and noisy, so nothing here is judged on an absolute
time: every figure is the median of several repeats run side by side (interleaved, the order
rotated each repeat) and every verdict is a ratio against a baseline measured in the same
process.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

import oppcore
from oppcore import (
    FieldsChanged,
    FixedClock,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    Lost,
    Money,
    Opened,
    Opportunity,
    Pipeline,
    Reopened,
    Repository,
    StageChanged,
    Won,
)
from oppcore.serialization import converter
from oppcore.storage import EventStore, JsonEventStore, SqliteEventStore

T = TypeVar("T")

LOAD_TARGET = 1.5  # library load at most this many times the floor
APPEND_TARGET = 1.3  # save with N stored at most this many times the save with SMALL_STORE stored
PEER_TARGET = 1.0  # oppcore throughput at least this many times eventsourcing's
SMALL_STORE = 1_000
CHUNK = 1_000  # opportunities per save_all call when building the stores

EVENT_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Opened,
        StageChanged,
        FieldsChanged,
        LineItemAdded,
        LineItemChanged,
        LineItemRemoved,
        Won,
        Lost,
        Reopened,
    )
}

# -- the workload ----------------------------------------------------------------------------

PIPELINE = Pipeline.salesforce()
MOVES = ("qualification", "needs_analysis", "value_proposition")
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
THAI_ACCOUNTS = (
    "บริษัท สยามโลจิสติกส์ จำกัด",
    "ธนาคารกรุงเทพมหานคร จำกัด (มหาชน)",
    "โรงพยาบาลเชียงใหม่ราม",
    "บริษัท ไทยฟู้ดส์ อินดัสตรี จำกัด",
)
THAI_PRODUCTS = ("ระบบติดตามรถขนส่ง", "เครื่องขายหน้าร้าน", "บริการคลาวด์ 3 ปี", "ซอฟต์แวร์บัญชี")
ENGLISH_ACCOUNTS = ("Acme Logistics Ltd.", "Northwind Traders", "Globex Health", "Initech Foods")
ENGLISH_PRODUCTS = ("fleet tracking", "POS terminals", "3-year cloud plan", "accounting suite")


@dataclass(frozen=True)
class DealSpec:
    """Everything one deal of the workload says, shared by oppcore and the peer."""

    number: int
    id: str
    name: str
    account: str
    owner: str
    currency: str
    amount: Decimal
    new_amount: Decimal
    description: str
    expected_close: date
    won: bool
    lost_reason: str


def opportunity_id(number: int) -> str:
    return f"opp-{number:07d}"


def deal_spec(number: int) -> DealSpec:
    """Deal ``number`` of the workload: even numbers Thai, odd numbers English."""
    thai = number % 2 == 0
    pick = (number // 2) % 4
    account = (THAI_ACCOUNTS if thai else ENGLISH_ACCOUNTS)[pick]
    product = (THAI_PRODUCTS if thai else ENGLISH_PRODUCTS)[(number // 8) % 4]
    return DealSpec(
        number=number,
        id=opportunity_id(number),
        name=f"{account} - {product} #{number}",
        account=account,
        owner="สมชาย ใจดี" if thai else "Alice Walker",
        currency="THB" if thai else "USD",
        amount=Decimal(100_000 + (number * 7919) % 900_000) / 100,
        new_amount=Decimal(120_000 + (number * 104_729) % 900_000) / 100,
        description="ต่อสัญญา 3 ปี พร้อมติดตั้ง" if thai else "3-year renewal with installation",
        expected_close=date(2026, 6, 1) + timedelta(days=number % 120),
        won=number % 3 != 0,
        lost_reason="ราคาสูงกว่าคู่แข่ง" if thai else "Price above the competition",
    )


def build_opportunity(number: int) -> Opportunity:
    """Open, three stage moves, an update, then won or lost: six events, on a FixedClock."""
    spec = deal_spec(number)
    clock = FixedClock(BASE_TIME + timedelta(minutes=number))
    opp = Opportunity.open(
        id=spec.id,
        name=spec.name,
        pipeline=PIPELINE,
        account=spec.account,
        owner=spec.owner,
        currency=spec.currency,
        amount=Money(spec.amount, spec.currency),
        expected_close=spec.expected_close,
        clock=clock,
    )
    for stage in MOVES:
        clock.advance(timedelta(hours=6))
        opp = opp.move_to(stage, clock=clock)
    clock.advance(timedelta(hours=6))
    opp = opp.update(
        amount=Money(spec.new_amount, spec.currency), description=spec.description, clock=clock
    )
    clock.advance(timedelta(days=1))
    opp = opp.win(clock=clock) if spec.won else opp.lose(reason=spec.lost_reason, clock=clock)
    if opp.version != 6:
        raise AssertionError(f"the workload makes 6 events, not {opp.version}")
    return opp


def build_store(repo: Repository, first: int, count: int) -> None:
    """Opportunities ``first`` .. ``first + count - 1``, saved ``CHUNK`` at a time."""
    for start in range(first, first + count, CHUNK):
        stop = min(start + CHUNK, first + count)
        repo.save_all([build_opportunity(number) for number in range(start, stop)])


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


def timed(work: Callable[[], T]) -> tuple[T, Sample]:
    """Run ``work`` once (after collecting garbage left by earlier runs) and time it."""
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = work()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    return result, Sample(wall1 - wall0, cpu1 - cpu0)


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` starting at ``turn``: each repeat runs the contenders in another order."""
    shift = turn % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    return f"{min(values) * scale:.{digits}f}..{max(values) * scale:.{digits}f}"


def verdict(ratio: float, target: float, paired: Sequence[float], *, at_most: bool) -> str:
    """PASS or MISS on the median ratio; noted when the paired ratios straddle the target."""
    passed = ratio <= target if at_most else ratio >= target
    word = "PASS" if passed else "MISS"
    if min(paired) <= target <= max(paired) and len(paired) > 1:
        word += " (within noise)"
    return word


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# -- 1. load: the library against the floor -----------------------------------------------


def jsonl_floor(path: Path, replay: bool) -> int:
    """Read the journal with json.loads per line and structure each event (and replay)."""
    structure = converter().structure
    events: list[Any] = []
    streams: dict[str, list[Any]] = {}
    with path.open("rb") as journal:
        journal.readline()  # the header
        for line in journal:
            for record in json.loads(line)["records"]:
                event = structure(record["payload"], EVENT_CLASSES[record["type"]])
                if replay:
                    streams.setdefault(record["stream_id"], []).append(event)
                else:
                    events.append(event)
    if replay:
        return len([Opportunity.replay(stream) for stream in streams.values()])
    return len(events)


def sqlite_floor(path: Path, replay: bool) -> int:
    """SELECT the payloads in position order, json.loads and structure each (and replay)."""
    structure = converter().structure
    events: list[Any] = []
    streams: dict[str, list[Any]] = {}
    db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT stream_id, type, payload FROM events ORDER BY position")
        for stream_id, kind, payload in rows:
            event = structure(json.loads(payload), EVENT_CLASSES[kind])
            if replay:
                streams.setdefault(stream_id, []).append(event)
            else:
                events.append(event)
    finally:
        db.close()
    if replay:
        return len([Opportunity.replay(stream) for stream in streams.values()])
    return len(events)


def library_load(open_store: Callable[[], EventStore]) -> tuple[list[Opportunity], float]:
    """What a process does to read every deal: open the store and call opportunities().

    Returns the deals and the seconds spent opening the store (part of the load).
    """
    start = time.perf_counter()
    repo = Repository(open_store())
    opened = time.perf_counter() - start
    try:
        return repo.opportunities(), opened
    finally:
        repo.close()


def check_loaded(loaded: list[Opportunity], count: int) -> None:
    """The load gave every deal, in order, as built (a sample compared field for field)."""
    if len(loaded) != count:
        raise AssertionError(f"loaded {len(loaded)} opportunities, not {count}")
    for number in sorted({0, count - 1, *range(0, count, max(count // 25, 1))}):
        if loaded[number] != build_opportunity(number):
            raise AssertionError(f"opportunity {number} did not read back as it was saved")
    if any(opp.id != opportunity_id(number) for number, opp in enumerate(loaded)):
        raise AssertionError("opportunities came back out of order")


@dataclass
class LoadCase:
    backend: str
    label: str
    role: str  # "floor", "context" or "library"
    work: Callable[[], Any]
    check: Callable[[Any], None]
    samples: list[Sample]
    opens: list[float]  # library only: seconds of each load spent opening the store


def measure_load(jsonl: Path, db: Path, count: int, repeats: int) -> list[str]:
    events = count * 6

    def expect(items: int) -> Callable[[Any], None]:
        def check(result: Any) -> None:
            if result != items:
                raise AssertionError(f"the floor read {result} items, not {items}")

        return check

    def loaded(result: Any) -> None:
        check_loaded(result[0], count)

    cases = [
        LoadCase(
            "JSON Lines",
            "floor: json.loads per line + structure",
            "floor",
            lambda: jsonl_floor(jsonl, replay=False),
            expect(events),
            [],
            [],
        ),
        LoadCase(
            "JSON Lines",
            "floor + Opportunity.replay (context)",
            "context",
            lambda: jsonl_floor(jsonl, replay=True),
            expect(count),
            [],
            [],
        ),
        LoadCase(
            "JSON Lines",
            "library: open store + opportunities()",
            "library",
            lambda: library_load(lambda: JsonEventStore(jsonl)),
            loaded,
            [],
            [],
        ),
        LoadCase(
            "SQLite",
            "floor: SELECT payload + json.loads + structure",
            "floor",
            lambda: sqlite_floor(db, replay=False),
            expect(events),
            [],
            [],
        ),
        LoadCase(
            "SQLite",
            "floor + Opportunity.replay (context)",
            "context",
            lambda: sqlite_floor(db, replay=True),
            expect(count),
            [],
            [],
        ),
        LoadCase(
            "SQLite",
            "library: open store + opportunities()",
            "library",
            lambda: library_load(lambda: SqliteEventStore(db)),
            loaded,
            [],
            [],
        ),
    ]
    for turn in range(repeats):
        progress(f"load: repeat {turn + 1} of {repeats}")
        for case in rotated(cases, turn):
            result, sample = timed(case.work)
            case.check(result)
            if case.role == "library":
                case.opens.append(result[1])
            del result
            case.samples.append(sample)

    lines = [
        f"1. Load every opportunity ({count:,} deals, {events:,} events): "
        f"library at most {LOAD_TARGET}x the floor",
        f"   files: JSON Lines {_size(jsonl)}, SQLite {_size(db)}",
        f"   {'':10} {'':47} {'median s':>8} {'min..max s':>13} {'x floor':>8} "
        f"{'paired':>11}  verdict",
    ]
    for backend in ("JSON Lines", "SQLite"):
        group = {case.role: case for case in cases if case.backend == backend}
        floor_walls = [s.wall for s in group["floor"].samples]
        for role in ("floor", "context", "library"):
            case = group[role]
            walls = [s.wall for s in case.samples]
            row = f"   {backend:10} {case.label:47} {median(walls):8.2f} {spread(walls):>13} "
            if role == "floor":
                row += f"{'1.00x':>8}"
            else:
                ratio = median(walls) / median(floor_walls)
                paired = [w / f for w, f in zip(walls, floor_walls, strict=True)]
                row += f"{ratio:7.2f}x {spread(paired):>11}"
                if role == "library":
                    row += f"  {verdict(ratio, LOAD_TARGET, paired, at_most=True)}"
            lines.append(row)
        library = group["library"]
        opens = median(library.opens) / median(floor_walls)
        lines.append(
            f"   {'':10} {'  of which opening the store (context)':47} "
            f"{median(library.opens):8.2f} {spread(library.opens):>13} {opens:7.2f}x"
        )
        cpu = median([s.cpu for s in library.samples]) / median(
            [s.cpu for s in group["floor"].samples]
        )
        lines.append(
            f"   {'':10} {'library / floor in CPU time (context)':47} {'':8} {'':13} {cpu:7.2f}x"
        )
    return lines


# -- 2. append cost stays flat ---------------------------------------------------------------


def measure_append(
    stores: dict[str, tuple[Callable[[Path], EventStore], Path, Path]],
    count: int,
    repeats: int,
    per_round: int,
) -> list[str]:
    first_new = count + SMALL_STORE  # numbers in neither store
    fresh = iter(range(first_new, first_new + 2 * (repeats * per_round + 10)))
    lines = [
        f"2. Append one new opportunity (Repository.save, 6 events, fsync) with {count:,} "
        f"stored vs {SMALL_STORE:,} stored: at most {APPEND_TARGET}x",
        f"   {'':10} {'':8} {f'{SMALL_STORE:,} stored ms':>16} {f'{count:,} stored ms':>18} "
        f"{'ratio':>7} {'paired':>11}  verdict",
    ]
    for backend, (make, small_path, large_path) in stores.items():
        progress(f"append: {backend}")
        small, large = Repository(make(small_path)), Repository(make(large_path))
        # Per round, per store: the median wall and CPU seconds of one save.
        walls: dict[str, list[float]] = {"small": [], "large": []}
        cpus: dict[str, list[float]] = {"small": [], "large": []}
        try:
            for repo in (small, large):  # warm up: the first writes after opening
                for _ in range(3):
                    repo.save(build_opportunity(next(fresh)))
            for turn in range(repeats):
                opps = [build_opportunity(next(fresh)) for _ in range(per_round)]
                wall: dict[str, list[float]] = {"small": [], "large": []}
                cpu: dict[str, list[float]] = {"small": [], "large": []}
                for index, opp in enumerate(opps):
                    for size, repo in rotated([("small", small), ("large", large)], index + turn):
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        repo.save(opp)
                        wall[size].append(time.perf_counter() - wall0)
                        cpu[size].append(time.process_time() - cpu0)
                for size in ("small", "large"):
                    walls[size].append(median(wall[size]))
                    cpus[size].append(median(cpu[size]))
        finally:
            small.close()
            large.close()
        for label, figures in (("wall", walls), ("CPU", cpus)):
            ratio = median(figures["large"]) / median(figures["small"])
            paired = [lg / sm for lg, sm in zip(figures["large"], figures["small"], strict=True)]
            row = (
                f"   {backend if label == 'wall' else '':10} {label:8} "
                f"{median(figures['small']) * 1e3:16.2f} {median(figures['large']) * 1e3:18.2f} "
                f"{ratio:6.2f}x {spread(paired):>11}  "
            )
            if label == "wall":
                row += verdict(ratio, APPEND_TARGET, paired, at_most=True)
            else:
                row += "(context: CPU only, no disk wait)"
            lines.append(row)
    lines.append(
        f"   (each figure: the median over {repeats} rounds of the median of {per_round} saves; "
        "the two stores alternate save by save)"
    )
    return lines


# -- 3. against the eventsourcing library ----------------------------------------------------


def measure_peer(root: Path, aggregates: int, repeats: int) -> list[str]:
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
        from eventsourcing.sqlite import SQLiteApplicationRecorder
    except ImportError:
        return [
            "3. Against eventsourcing: SKIPPED, the eventsourcing package is not installed "
            "(pip install eventsourcing)"
        ]

    class Deal(Aggregate):
        """The same deal, written the way eventsourcing's documentation writes aggregates."""

        @staticmethod
        def create_id(number: int) -> UUID:
            return uuid5(NAMESPACE_URL, f"oppcore-bench/{opportunity_id(number)}")

        @event("Opened")
        def __init__(
            self,
            number: int,
            name: str,
            account: str,
            owner: str,
            currency: str,
            amount: Decimal,
            expected_close: str,
            stage: str,
            probability: Decimal,
        ) -> None:
            self.number = number
            self.name = name
            self.account = account
            self.owner = owner
            self.currency = currency
            self.amount = amount
            self.expected_close = expected_close
            self.stage = stage
            self.probability = probability
            self.description = ""
            self.lost_reason = ""

        @event("StageChanged")
        def move_to(self, from_stage: str, to_stage: str, probability: Decimal) -> None:
            self.stage = to_stage
            self.probability = probability

        @event("FieldsChanged")
        def update(self, amount: Decimal, description: str) -> None:
            self.amount = amount
            self.description = description

        @event("Won")
        def win(self, from_stage: str, to_stage: str) -> None:
            self.stage = to_stage
            self.probability = Decimal(100)

        @event("Lost")
        def lose(self, from_stage: str, to_stage: str, reason: str) -> None:
            self.stage = to_stage
            self.probability = Decimal(0)
            self.lost_reason = reason

    class Deals(Application[UUID]):
        pass

    def build_deal(number: int) -> Deal:
        spec = deal_spec(number)
        first = PIPELINE.first_stage
        deal = Deal(
            number=number,
            name=spec.name,
            account=spec.account,
            owner=spec.owner,
            currency=spec.currency,
            amount=spec.amount,
            expected_close=spec.expected_close.isoformat(),
            stage=first.key,
            probability=first.probability,
        )
        for stage in MOVES:
            deal.move_to(deal.stage, stage, PIPELINE.stage(stage).probability)
        deal.update(spec.new_amount, spec.description)
        if spec.won:
            deal.win(deal.stage, PIPELINE.won_stages[0].key)
        else:
            deal.lose(deal.stage, PIPELINE.lost_stages[0].key, spec.lost_reason)
        return deal

    def deals_app(path: Path) -> Deals:
        return Deals(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(path),
            }
        )

    def pragmas(cursor_source: Callable[[str], Any]) -> str:
        mode = str(cursor_source("PRAGMA journal_mode")).lower()
        sync = int(cursor_source("PRAGMA synchronous"))
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return f"journal_mode={mode} synchronous={names.get(sync, str(sync))}"

    def oppcore_pragmas(store: SqliteEventStore) -> str:
        db = getattr(store, "_db", None)  # private: read only to report the setting in force
        if not isinstance(db, sqlite3.Connection):
            return "unknown (no connection to ask)"
        return pragmas(lambda sql: db.execute(sql).fetchone()[0])

    def es_pragmas(app: Deals) -> str:
        recorder = app.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return f"unknown (recorder is {type(recorder).__name__})"

        def ask(sql: str) -> Any:
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(sql)
                return cursor.fetchone()[0]

        return pragmas(ask)

    def payload_bytes(path: Path, sql: str) -> float:
        db = sqlite3.connect(path)
        try:
            return float(db.execute(sql).fetchone()[0]) / aggregates
        finally:
            db.close()

    results: dict[str, dict[str, list[Sample]]] = {
        "oppcore": {"save": [], "call": [], "get": [], "bulk": []},
        "eventsourcing": {"save": [], "call": [], "get": []},
    }
    notes: dict[str, str] = {}

    def run_oppcore(folder: Path) -> None:
        path = folder / "oppcore.db"
        repo = Repository(SqliteEventStore(path))
        if "oppcore" not in notes:
            store = repo.store
            notes["oppcore"] = (
                oppcore_pragmas(store) if isinstance(store, SqliteEventStore) else "unknown"
            )

        calls = [0.0, 0.0]  # wall and CPU seconds inside the save calls alone

        def save_each() -> None:
            for number in range(aggregates):
                deal = build_opportunity(number)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                repo.save(deal)
                calls[0] += time.perf_counter() - wall0
                calls[1] += time.process_time() - cpu0

        try:
            _, save = timed(save_each)
        finally:
            repo.close()
        repo = Repository(SqliteEventStore(path))
        try:
            loaded, get = timed(lambda: [repo.get(opportunity_id(n)) for n in range(aggregates)])
            for number in (0, aggregates // 2, aggregates - 1):
                if loaded[number] != build_opportunity(number):
                    raise AssertionError(f"oppcore get({number}) did not read back")
            del loaded
            everything, bulk = timed(repo.opportunities)
            if len(everything) != aggregates:
                raise AssertionError("oppcore opportunities() missed some")
            del everything
        finally:
            repo.close()
        if "oppcore bytes" not in notes:
            notes["oppcore bytes"] = (
                f"{payload_bytes(path, 'SELECT SUM(LENGTH(CAST(payload AS BLOB))) FROM events'):,.0f}"
            )
        results["oppcore"]["save"].append(save)
        results["oppcore"]["call"].append(Sample(calls[0], calls[1]))
        results["oppcore"]["get"].append(get)
        results["oppcore"]["bulk"].append(bulk)

    def run_eventsourcing(folder: Path) -> None:
        path = folder / "eventsourcing.db"
        app = deals_app(path)
        if "eventsourcing" not in notes:
            notes["eventsourcing"] = es_pragmas(app)

        calls = [0.0, 0.0]  # wall and CPU seconds inside the save calls alone

        def save_each() -> None:
            for number in range(aggregates):
                deal = build_deal(number)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                app.save(deal)
                calls[0] += time.perf_counter() - wall0
                calls[1] += time.process_time() - cpu0

        try:
            _, save = timed(save_each)
        finally:
            app.close()
        app = deals_app(path)
        try:
            ids = [Deal.create_id(n) for n in range(aggregates)]

            def get_each() -> list[Any]:
                return [app.repository.get(deal_id) for deal_id in ids]

            loaded, get = timed(get_each)
            for number in (0, aggregates // 2, aggregates - 1):
                deal = loaded[number]
                spec = deal_spec(number)
                if (
                    not isinstance(deal, Deal)
                    or deal.version != 6
                    or deal.amount != spec.new_amount
                ):
                    raise AssertionError(f"eventsourcing get({number}) did not read back")
            del loaded
        finally:
            app.close()
        if "eventsourcing bytes" not in notes:
            notes["eventsourcing bytes"] = (
                f"{payload_bytes(path, 'SELECT SUM(LENGTH(state)) FROM stored_events'):,.0f}"
            )
        results["eventsourcing"]["save"].append(save)
        results["eventsourcing"]["call"].append(Sample(calls[0], calls[1]))
        results["eventsourcing"]["get"].append(get)

    contenders: list[tuple[str, Callable[[Path], None]]] = [
        ("oppcore", run_oppcore),
        ("eventsourcing", run_eventsourcing),
    ]
    for turn in range(repeats):
        progress(f"peer: repeat {turn + 1} of {repeats}")
        for name, run in rotated(contenders, turn):
            folder = root / f"peer-{turn}-{name}"
            folder.mkdir()
            try:
                run(folder)
            finally:
                for leftover in folder.iterdir():
                    leftover.unlink()
                folder.rmdir()

    def rate(samples: list[Sample]) -> list[float]:
        return [aggregates / s.wall for s in samples]

    es_version = package_version("eventsourcing")
    lines = [
        f"3. oppcore SqliteEventStore + Repository vs eventsourcing {es_version} (SQLite), "
        f"{aggregates:,} aggregates:",
        "   create + 5 changes + save each (one transaction each), then get each by id; "
        f"oppcore at least {PEER_TARGET:.1f}x as fast",
        f"   durability: oppcore {notes.get('oppcore', '?')}; eventsourcing "
        f"{notes.get('eventsourcing', '?')}",
    ]
    if "synchronous=FULL" not in notes.get("eventsourcing", ""):
        lines.append(
            "   WARNING: eventsourcing does not run with synchronous=FULL here, and it has no "
            "setting for it: durability differs"
        )
    else:
        lines.append(
            "   (eventsourcing sets WAL itself and has no setting for synchronous: FULL is "
            "SQLite's compiled default here, checked on its own connection)"
        )
    lines.append(
        f"   stored payload bytes per aggregate: oppcore {notes.get('oppcore bytes', '?')}, "
        f"eventsourcing {notes.get('eventsourcing bytes', '?')}"
    )
    lines.append(
        f"   {'':30} {'oppcore agg/s':>14} {'eventsourcing agg/s':>20} {'ratio':>7} "
        f"{'paired':>11}  verdict"
    )
    for phase, label in (("save", "save (wall)"), ("get", "get every aggregate")):
        ours, theirs = rate(results["oppcore"][phase]), rate(results["eventsourcing"][phase])
        ratio = median(ours) / median(theirs)
        paired = [o / t for o, t in zip(ours, theirs, strict=True)]
        lines.append(
            f"   {label:30} {median(ours):14,.0f} {median(theirs):20,.0f} {ratio:6.2f}x "
            f"{spread(paired):>11}  {verdict(ratio, PEER_TARGET, paired, at_most=False)}"
        )
    for phase, label in (
        ("save", "save, CPU"),
        ("call", "  of which save(), wall"),
        ("call", "  of which save(), CPU"),
        ("get", "get, CPU"),
    ):
        seconds = "wall" if label.endswith("wall") else "cpu"

        def per_second(samples: list[Sample], seconds: str = seconds) -> float:
            return median([aggregates / getattr(sample, seconds) for sample in samples])

        ours_rate = per_second(results["oppcore"][phase])
        theirs_rate = per_second(results["eventsourcing"][phase])
        lines.append(
            f"   {label + ' (ctx)':30} {ours_rate:14,.0f} {theirs_rate:20,.0f} "
            f"{ours_rate / theirs_rate:6.2f}x"
        )
    bulk = median(rate(results["oppcore"]["bulk"]))
    theirs_get = median(rate(results["eventsourcing"]["get"]))
    lines.append(
        f"   {'opportunities() (ctx)':30} {bulk:14,.0f} {'(no bulk load)':>20} "
        f"{bulk / theirs_get:6.2f}x  vs eventsourcing's get"
    )
    return lines


# -- profiling -------------------------------------------------------------------------------


def profile_loads(jsonl: Path, db: Path, top: int) -> list[str]:
    lines = ["Profile of one library load per backend (cProfile; its overhead inflates all)"]
    for backend, open_store in (
        ("JSON Lines", lambda: JsonEventStore(jsonl)),
        ("SQLite", lambda: SqliteEventStore(db)),
    ):
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        loaded = library_load(open_store)
        profiler.disable()
        del loaded
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats(order).print_stats(top)
            lines.append(f"--- {backend}, by {order}")
            lines.extend(
                line
                for line in text.getvalue().splitlines()
                if line.strip() and not line.startswith("   Ordered by")
            )
    return lines


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="oppcore storage benchmarks: medians and ratios, library vs floor and peer."
    )
    parser.add_argument("--opportunities", type=int, help="deals in the stores (100,000)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (3)")
    parser.add_argument("--appends", type=int, help="saves per store in each append round (100)")
    parser.add_argument(
        "--peer-aggregates",
        type=int,
        help="aggregates in the eventsourcing comparison (2,000; each save is an fsync)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 opportunities, 3 repeats, 40 appends, 300 peer aggregates "
        "(options given as well win)",
    )
    parser.add_argument(
        "--only",
        choices=("load", "append", "peer"),
        action="append",
        help="run only these measurements (repeatable)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also profile one load: top N rows"
    )
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the stores go")
    args = parser.parse_args(argv)
    defaults = (2_000, 3, 40, 300) if args.quick else (100_000, 3, 100, 2_000)
    for name, default in zip(
        ("opportunities", "repeats", "appends", "peer_aggregates"), defaults, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    count: int = args.opportunities
    wanted = set(args.only or ("load", "append", "peer"))
    started = time.perf_counter()
    header = [
        f"oppcore storage benchmarks: {count:,} opportunities x 6 events "
        f"(open, 3 stage moves, update, close; Thai and English), {args.repeats} repeats",
        f"oppcore {oppcore.__version__}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, eventsourcing {package_version('eventsourcing')}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "Figures are medians over the repeats; 'paired' is the range of the ratio within each "
        "repeat; contenders run interleaved.",
    ]
    print("\n".join(header), flush=True)
    with tempfile.TemporaryDirectory(prefix="oppcore-bench-", dir=args.tmpdir) as tmp:
        root = Path(tmp)
        jsonl, db = root / "large.jsonl", root / "large.db"
        small_jsonl, small_db = root / "small.jsonl", root / "small.db"
        if wanted & {"load", "append"} or args.profile:
            progress(f"building the stores: {count:,} opportunities each")
            for path, make in ((jsonl, JsonEventStore), (db, SqliteEventStore)):
                with Repository(make(path)) as repo:
                    build_store(repo, 0, count)
                progress(f"  {path.name}: {_size(path)}")
        if "load" in wanted:
            print()
            print("\n".join(measure_load(jsonl, db, count, args.repeats)), flush=True)
        if "append" in wanted:
            small = min(SMALL_STORE, count)
            for path, make in ((small_jsonl, JsonEventStore), (small_db, SqliteEventStore)):
                with Repository(make(path)) as repo:
                    build_store(repo, 0, small)
            if count <= SMALL_STORE:
                print(f"\n(append: {count:,} stored is no larger than {SMALL_STORE:,}; ratio ~1)")
            print()
            stores: dict[str, tuple[Callable[[Path], EventStore], Path, Path]] = {
                "JSON Lines": (JsonEventStore, small_jsonl, jsonl),
                "SQLite": (SqliteEventStore, small_db, db),
            }
            print("\n".join(measure_append(stores, count, args.repeats, args.appends)), flush=True)
        if "peer" in wanted:
            print()
            print("\n".join(measure_peer(root, args.peer_aggregates, args.repeats)), flush=True)
        if args.profile:
            print()
            print("\n".join(profile_loads(jsonl, db, args.profile)), flush=True)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.1f} MB"


if __name__ == "__main__":
    sys.exit(main())
