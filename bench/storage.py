"""Storage benchmarks for oppcore (issue 3): ratios against a floor and against a peer, in one run.

Run from the repository root with oppcore installed::

    python bench/storage.py --quick                    # smoke run: 2,000 opportunities, 3 repeats
    python bench/storage.py                            # the issue's workload: 100,000 opportunities
    python bench/storage.py --opportunities 10000      # smaller
    python bench/storage.py --postgres postgresql://user@host/db   # PostgreSQL too

PostgreSQL is measured when a server is given (``--postgres URL``, else the
``OPPCORE_TEST_POSTGRES`` variable): the load of measurement 1, and measurement 4, saves per
second with 1, 4 and 8 writer processes.  The bench works in fresh schemas of its own,
dropped at the end; without a reachable server those parts are skipped, saying why.

This machine and CI machines are shared and noisy, so nothing here is judged on an absolute
time: every figure is the median of several repeats run side by side (interleaved, the order
rotated each repeat) and every verdict is a ratio against a baseline measured in the same
process.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import multiprocessing
import os
import platform
import pstats
import queue
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from _timing import Sample, median, package_version, progress, rotated, spread, timed, verdict

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
from oppcore.storage import (
    EventStore,
    JsonEventStore,
    PostgresEventStore,
    SqliteEventStore,
    event_record,
)

T = TypeVar("T")

LOAD_TARGET = 1.5  # library load at most this many times the floor
APPEND_TARGET = 1.3  # save with N stored at most this many times the save with SMALL_STORE stored
PEER_TARGET = 1.0  # oppcore throughput at least this many times eventsourcing's
SMALL_STORE = 1_000
CHUNK = 1_000  # opportunities per save_all call when building the stores
POSTGRES_VARIABLE = "OPPCORE_TEST_POSTGRES"  # the server when --postgres is not given
WRITER_COUNTS = (1, 4, 8)  # writer processes in measurement 4
WRITER_WARMUP = 3  # saves each writer makes before the clock starts
WRITER_FIRST_NUMBER = 10_000_000  # deal numbers of measurement 4: in no other store
WRITER_APPLICATION = "oppcore-bench-writer"  # application_name of the writers' connections

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


# (shared with the other benchmarks, in _timing.py)
# -- PostgreSQL: the server, and schemas of the bench's own -----------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """A reachable server. ``url`` is never printed: it may hold a password."""

    url: str
    where: str  # host:port/dbname, for the output
    version: str
    version_num: int
    settings: str  # the durability settings in force


def find_postgres(url: str | None) -> tuple[PostgresServer | None, str]:
    """The server to measure, or None and the reason PostgreSQL is skipped."""
    if not url:
        return None, f"no server given (--postgres URL, or set {POSTGRES_VARIABLE})"
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as exc:
        return None, f"the server's connection string cannot be read: {_one_line(exc)}"
    host, port = parts.get("host") or "localhost", parts.get("port") or "5432"
    where = f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:

            def show(name: str) -> str:
                row = connection.execute(f"SHOW {name}").fetchone()
                return str(row[0]) if row else "?"

            settings = " ".join(
                f"{name}={show(name)}"
                for name in ("fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
            )
            server_version, number = show("server_version").split()[0], show("server_version_num")
    except psycopg.Error as exc:
        return None, f"the server {where} cannot be reached: {_one_line(exc)}"
    return PostgresServer(url, where, server_version, int(number), settings), ""


@contextmanager
def bench_schema(server: PostgresServer, purpose: str) -> Iterator[str]:
    """A connection string whose tables live in a new, empty schema, dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"oppcore_bench_{purpose}_{uuid4().hex[:8]}"
    with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        options = str(conninfo_to_dict(server.url).get("options") or "")
        yield make_conninfo(server.url, options=f"{options} -c search_path={name}".strip())
    finally:
        with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


def postgres_query(conninfo: str, query: str) -> Any:
    """The first column of the first row ``query`` gives, on a connection of its own."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
        row = connection.execute(query).fetchone()
    return row[0] if row else None


def postgres_size(conninfo: str) -> str:
    size = postgres_query(conninfo, "SELECT pg_total_relation_size('oppcore_events')")
    return f"{size / 1e6:,.1f} MB"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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


def postgres_floor(conninfo: str, replay: bool) -> int:
    """SELECT the payloads in position order, json.loads and structure each (and replay):
    the SQLite floor, on a fresh psycopg connection, in one query."""
    import psycopg

    structure = converter().structure
    events: list[Any] = []
    streams: dict[str, list[Any]] = {}
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as db:
        rows = db.execute("SELECT stream_id, type, payload FROM oppcore_events ORDER BY position")
        for stream_id, kind, payload in rows:
            event = structure(json.loads(payload), EVENT_CLASSES[kind])
            if replay:
                streams.setdefault(stream_id, []).append(event)
            else:
                events.append(event)
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


def measure_load(
    jsonl: Path,
    db: Path,
    count: int,
    repeats: int,
    postgres: str | None = None,
    postgres_note: str = "",
) -> list[str]:
    """Measurement 1; ``postgres`` is the conninfo of a schema holding the same deals (or
    None, and ``postgres_note`` says why not)."""
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
    if postgres is not None:
        conninfo = postgres
        cases += [
            LoadCase(
                "PostgreSQL",
                "floor: SELECT payload + json.loads + structure",
                "floor",
                lambda: postgres_floor(conninfo, replay=False),
                expect(events),
                [],
                [],
            ),
            LoadCase(
                "PostgreSQL",
                "floor + Opportunity.replay (context)",
                "context",
                lambda: postgres_floor(conninfo, replay=True),
                expect(count),
                [],
                [],
            ),
            LoadCase(
                "PostgreSQL",
                "library: open store + opportunities()",
                "library",
                lambda: library_load(lambda: PostgresEventStore(conninfo)),
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
        f"   files: JSON Lines {_size(jsonl)}, SQLite {_size(db)}"
        + (f"; PostgreSQL table and indexes {postgres_size(postgres)}" if postgres else ""),
        f"   {'':10} {'':47} {'median s':>8} {'min..max s':>13} {'x floor':>8} "
        f"{'paired':>11}  verdict",
    ]
    for backend in dict.fromkeys(case.backend for case in cases):
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
        label = (
            "library / floor in client CPU time (context)"
            if backend == "PostgreSQL"
            else "library / floor in CPU time (context)"
        )
        lines.append(f"   {'':10} {label:47} {'':8} {'':13} {cpu:7.2f}x")
    if postgres is None:
        lines.append(f"   PostgreSQL: SKIPPED, {postgres_note}")
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


# -- 4. concurrent writers on PostgreSQL -------------------------------------------------------

WRITER_MODES = {
    "library": "library: Repository.save",
    "raw+lock": "raw psycopg, the store's lock (ctx)",
    "raw": "raw psycopg, no lock (ctx)",
}
COPY_ROWS = "COPY oppcore_events (stream_id, version, type, at, recorded_at, payload) FROM STDIN"
# The lock PostgresEventStore.append_many takes so that positions follow commit order (an
# advisory lock keyed by the events table, held to the end of the transaction); the raw
# contender takes the same, and must follow the store if that changes.
APPEND_LOCK = "SELECT pg_advisory_xact_lock('oppcore_events'::regclass::oid::bigint)"
WRITER_TIMEOUT = 600.0  # seconds a run may take before the bench gives up on it


def raw_rows(opp: Opportunity) -> list[tuple[Any, ...]]:
    """The rows the library writes for ``opp``: its event records, payloads as the same JSON."""
    return [
        (
            record.stream_id,
            record.version,
            record.type,
            record.at,
            record.recorded_at,
            json.dumps(record.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False),
        )
        for record in map(event_record, opp.events)
    ]


def writer_process(
    mode: str,
    conninfo: str,
    warmup: Sequence[int],
    numbers: Sequence[int],
    barrier: Any,
    results: Any,
) -> None:
    """One writer, in a process of its own: connect, build its deals, save ``warmup`` deals,
    wait for the other writers, then save each of its deals in one transaction, timed.

    Puts exactly one report on ``results``: ("ok", start, end, [seconds per save]) or
    ("error", text).
    """
    try:
        opps = [build_opportunity(number) for number in numbers]
        save: Callable[[Opportunity], Any]
        if mode == "library":
            repo = Repository(PostgresEventStore(conninfo))
            save, close = repo.save, repo.close
        else:
            import psycopg

            connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            lock = mode == "raw+lock"

            def save(opp: Opportunity) -> None:
                rows = raw_rows(opp)
                with connection.transaction():
                    if lock:
                        connection.execute(APPEND_LOCK)
                    with connection.cursor() as cursor, cursor.copy(COPY_ROWS) as copy:
                        for row in rows:
                            copy.write_row(row)

            close = connection.close
        try:
            for number in warmup:
                save(build_opportunity(number))
            gc.collect()
            barrier.wait(timeout=WRITER_TIMEOUT)
            latencies = []
            start = time.perf_counter()
            for opp in opps:
                began = time.perf_counter()
                save(opp)
                latencies.append(time.perf_counter() - began)
            end = time.perf_counter()
        finally:
            close()
        results.put(("ok", start, end, latencies))
    except BaseException:
        barrier.abort()  # the other writers and the parent stop waiting
        results.put(("error", traceback.format_exc(limit=8)))


@dataclass(frozen=True)
class WriterRun:
    saves: int
    wall: float  # from the first writer's start to the last writer's end
    latency: float  # median seconds of one save, over every writer's saves
    flushes: int | None  # WAL flushes the server made (warm-up saves included), if known
    busy: float | None  # share of the machine's CPU time that was busy during the run


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle and iowait; guest time is counted inside user
    return sum(values) - idle, sum(values)


def wal_flushes(server: PostgresServer, conninfo: str) -> int | None:
    """The server's WAL flushes so far (pg_stat_wal.wal_sync; PostgreSQL 15 or later, whose
    backends report their statistics when they exit)."""
    if server.version_num < 150000:
        return None
    return int(postgres_query(conninfo, "SELECT wal_sync FROM pg_stat_wal"))


def writers_gone(conninfo: str) -> None:
    """Wait (a little) until the writers' server processes have exited: a backend reports
    its WAL statistics on the way out, before it leaves pg_stat_activity."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = postgres_query(
            conninfo,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            f"'{WRITER_APPLICATION}'",
        )
        if not left:
            return
        time.sleep(0.02)


def run_writers(
    context: Any,
    server: PostgresServer,
    conninfo: str,
    mode: str,
    shares: list[list[int]],
    warmups: list[list[int]],
) -> WriterRun:
    """One run: a process per share, started together; their saves per second overall."""
    from psycopg.conninfo import make_conninfo

    writer_conninfo = make_conninfo(conninfo, application_name=WRITER_APPLICATION)
    barrier = context.Barrier(len(shares) + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=writer_process,
            args=(mode, writer_conninfo, warm, share, barrier, results),
            daemon=True,
        )
        for share, warm in zip(shares, warmups, strict=True)
    ]
    flushes0 = wal_flushes(server, conninfo)
    reports: list[tuple[Any, ...]] = []
    try:
        for process in processes:
            process.start()
        with_errors = False
        try:
            barrier.wait(timeout=WRITER_TIMEOUT)
        except threading.BrokenBarrierError:
            with_errors = True  # a writer failed before the start: its report says why
        ticks0 = cpu_ticks()
        while len(reports) < len(processes):
            try:
                reports.append(results.get(timeout=1.0))
            except queue.Empty:
                if not any(process.is_alive() for process in processes) and results.empty():
                    break
        ticks1 = cpu_ticks()
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    errors = [report[1] for report in reports if report[0] != "ok"]
    if errors or with_errors or len(reports) < len(processes):
        died = [p.exitcode for p in processes if p.exitcode not in (0, None)]
        raise RuntimeError(
            f"a {mode} writer failed (exit codes {died or 'fine'}):\n" + "\n".join(errors)
        )
    writers_gone(conninfo)
    flushes1 = wal_flushes(server, conninfo)
    flushes = None if flushes0 is None or flushes1 is None else flushes1 - flushes0
    busy = None
    if ticks0 is not None and ticks1 is not None and ticks1[1] > ticks0[1]:
        busy = (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
    return WriterRun(
        saves=sum(len(share) for share in shares),
        wall=max(report[2] for report in reports) - min(report[1] for report in reports),
        latency=median([seconds for report in reports for seconds in report[3]]),
        flushes=flushes,
        busy=busy,
    )


def measure_writers(
    server: PostgresServer | None,
    postgres_note: str,
    counts: Sequence[int],
    total: int,
    repeats: int,
) -> list[str]:
    title = (
        "4. Concurrent writers on PostgreSQL: saves per second with "
        f"{', '.join(map(str, counts))} writer processes (no figure to reach: it should "
        "scale with writers until the disk is the limit)"
    )
    if server is None:
        return [title, f"   SKIPPED, {postgres_note}"]
    context = multiprocessing.get_context("spawn")
    numbers = iter(range(WRITER_FIRST_NUMBER, sys.maxsize))
    contenders = [(mode, writers) for mode in WRITER_MODES for writers in counts]
    runs: dict[tuple[str, int], list[WriterRun]] = {contender: [] for contender in contenders}
    with bench_schema(server, "writers") as conninfo:
        PostgresEventStore(conninfo).close()  # the tables, made once before any writer
        for turn in range(repeats):
            progress(f"writers: repeat {turn + 1} of {repeats}")
            for mode, writers in rotated(contenders, turn):
                warmups = [[next(numbers) for _ in range(WRITER_WARMUP)] for _ in range(writers)]
                shares = [
                    [next(numbers) for _ in range(total // writers + (index < total % writers))]
                    for index in range(writers)
                ]
                runs[mode, writers].append(
                    run_writers(context, server, conninfo, mode, shares, warmups)
                )
        stored = postgres_query(conninfo, "SELECT count(DISTINCT stream_id) FROM oppcore_events")

    def rates(mode: str, writers: int) -> list[float]:
        return [run.saves / run.wall for run in runs[mode, writers]]

    lines = [
        title,
        f"   server: PostgreSQL {server.version} at {server.where}, {server.settings}",
        f"   each run: {total:,} new deals split evenly over the writers, each deal saved in one "
        "transaction (6 events); a writer is a process of its own",
        "   with its own connection, started, connected and warmed up "
        f"({WRITER_WARMUP} saves) before the clock runs; the table held {stored:,} deals "
        "at the end",
        f"   this machine has {os.cpu_count()} CPUs"
        + (
            ", shared by the writers and the server"
            if server.where.split(":")[0] in ("localhost", "127.0.0.1", "::1", "")
            or server.where.startswith("/")
            else ""
        ),
        f"   {'':36} {'writers':>7} {'saves/s':>8} {'min..max':>11} {'x 1 writer':>10} "
        f"{'paired':>11} {'ms/save':>8} {'saves/flush':>11} {'CPUs busy':>9}",
    ]
    first = counts[0]
    for mode, label in WRITER_MODES.items():
        for writers in counts:
            rate, base = rates(mode, writers), rates(mode, first)
            scale = median(rate) / median(base)
            paired = [r / b for r, b in zip(rate, base, strict=True)]
            latency = median([run.latency for run in runs[mode, writers]]) * 1e3
            per_flush = [
                (run.saves + writers * WRITER_WARMUP) / run.flushes
                for run in runs[mode, writers]
                if run.flushes
            ]
            flush_text = (
                f"{median(per_flush):11.2f}"
                if len(per_flush) == len(runs[mode, writers])
                else f"{'n/a':>11}"
            )
            busy = [run.busy for run in runs[mode, writers] if run.busy is not None]
            busy_text = f"{median(busy) * 100:8.0f}%" if busy else f"{'n/a':>9}"
            lines.append(
                f"   {label if writers == first else '':36} {writers:7d} {median(rate):8,.0f} "
                f"{spread(rate, digits=0):>11} {scale:9.2f}x "
                f"{spread(paired) if writers != first else '':>11} {latency:8.2f} "
                f"{flush_text} {busy_text}"
            )
    for other, name in (("raw", "raw, no lock"), ("raw+lock", "raw, the store's lock")):
        ratios = []
        for writers in counts:
            ours, theirs = rates("library", writers), rates(other, writers)
            ratios.append(
                f"{writers} writer{'s' if writers > 1 else ''} {median(ours) / median(theirs):.2f}x "
                f"({spread([o / t for o, t in zip(ours, theirs, strict=True)])})"
            )
        lines.append(f"   library / {name} (ctx): {', '.join(ratios)}")
    lines.append(
        f"   (figures: medians over {repeats} runs of each; saves/s = saves / (last writer's end "
        "- first writer's start); ms/save = median time of one save call;"
    )
    lines.append(
        "   saves/flush = saves, warm-ups included, per WAL flush the server made "
        "(pg_stat_wal.wal_sync, the whole server); CPUs busy = the whole machine's)"
    )
    return lines


# -- profiling -------------------------------------------------------------------------------


def profile_loads(jsonl: Path, db: Path, top: int, postgres: str | None = None) -> list[str]:
    lines = ["Profile of one library load per backend (cProfile; its overhead inflates all)"]
    backends: list[tuple[str, Callable[[], EventStore]]] = [
        ("JSON Lines", lambda: JsonEventStore(jsonl)),
        ("SQLite", lambda: SqliteEventStore(db)),
    ]
    if postgres is not None:
        conninfo = postgres
        backends.append(("PostgreSQL", lambda: PostgresEventStore(conninfo)))
    for backend, open_store in backends:
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
        "--postgres",
        metavar="URL",
        default=os.environ.get(POSTGRES_VARIABLE) or None,
        help=f"PostgreSQL server to measure too (default: ${POSTGRES_VARIABLE}); the bench "
        "makes schemas of its own there and drops them",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip PostgreSQL even when a server is set"
    )
    parser.add_argument(
        "--writer-saves",
        type=int,
        help="deals saved in each run of measurement 4, split over the writers (2,000)",
    )
    parser.add_argument(
        "--writers",
        default=",".join(map(str, WRITER_COUNTS)),
        help="writer process counts of measurement 4, comma-separated (1,4,8)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 opportunities, 3 repeats, 40 appends, 300 peer aggregates, "
        "400 writer saves (options given as well win)",
    )
    parser.add_argument(
        "--only",
        choices=("load", "append", "peer", "writers"),
        action="append",
        help="run only these measurements (repeatable)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also profile one load: top N rows"
    )
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the stores go")
    args = parser.parse_args(argv)
    defaults = (2_000, 3, 40, 300, 400) if args.quick else (100_000, 3, 100, 2_000, 2_000)
    for name, default in zip(
        ("opportunities", "repeats", "appends", "peer_aggregates", "writer_saves"),
        defaults,
        strict=True,
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    try:
        args.writers = sorted({int(part) for part in args.writers.split(",") if part.strip()})
    except ValueError:
        parser.error("--writers takes whole numbers separated by commas, such as 1,4,8")
    if not args.writers or args.writers[0] < 1 or args.writers[-1] > args.writer_saves:
        parser.error("--writers must be 1 or more, and at most --writer-saves")
    if args.no_postgres:
        args.postgres = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    count: int = args.opportunities
    wanted = set(args.only or ("load", "append", "peer", "writers"))
    started = time.perf_counter()
    fingerprint = source_fingerprint()
    if args.no_postgres:
        server, postgres_note = None, "--no-postgres was given"
    else:
        server, postgres_note = find_postgres(args.postgres)
    header = [
        f"oppcore storage benchmarks: {count:,} opportunities x 6 events "
        f"(open, 3 stage moves, update, close; Thai and English), {args.repeats} repeats",
        f"oppcore {oppcore.__version__}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, eventsourcing {package_version('eventsourcing')}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        (
            f"PostgreSQL {server.version} at {server.where}, psycopg {package_version('psycopg')}"
            if server is not None
            else f"PostgreSQL: not measured, {postgres_note}"
        ),
        "Figures are medians over the repeats; 'paired' is the range of the ratio within each "
        "repeat; contenders run interleaved.",
    ]
    print("\n".join(header), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="oppcore-bench-", dir=args.tmpdir) as tmp,
        ExitStack() as schemas,
    ):
        root = Path(tmp)
        jsonl, db = root / "large.jsonl", root / "large.db"
        small_jsonl, small_db = root / "small.jsonl", root / "small.db"
        if wanted & {"load", "append"} or args.profile:
            progress(f"building the stores: {count:,} opportunities each")
            for path, make in ((jsonl, JsonEventStore), (db, SqliteEventStore)):
                with Repository(make(path)) as repo:
                    build_store(repo, 0, count)
                progress(f"  {path.name}: {_size(path)}")
        postgres: str | None = None  # the schema holding the same deals, for loads
        if server is not None and ("load" in wanted or args.profile):
            postgres = schemas.enter_context(bench_schema(server, "load"))
            with Repository(PostgresEventStore(postgres)) as repo:
                build_store(repo, 0, count)
            progress(f"  PostgreSQL: {postgres_size(postgres)}")
        if "load" in wanted:
            print()
            print(
                "\n".join(measure_load(jsonl, db, count, args.repeats, postgres, postgres_note)),
                flush=True,
            )
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
        if "writers" in wanted:
            print()
            lines = measure_writers(
                server, postgres_note, args.writers, args.writer_saves, args.repeats
            )
            print("\n".join(lines), flush=True)
        if args.profile:
            print()
            print("\n".join(profile_loads(jsonl, db, args.profile, postgres)), flush=True)
    if source_fingerprint() != fingerprint:
        print(
            "\nWARNING: oppcore's source files changed while the bench ran; the writer "
            "processes of measurement 4 may have run another version than the rest. Run again.",
            flush=True,
        )
    progress(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def source_fingerprint() -> str:
    """A hash of oppcore's source files: the writer processes of measurement 4 import
    oppcore afresh, so a change to it while the bench runs would mix two versions."""
    digest = hashlib.sha256()
    for path in sorted(Path(oppcore.__file__).parent.rglob("*.py")):
        digest.update(path.as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.1f} MB"


if __name__ == "__main__":
    sys.exit(main())
