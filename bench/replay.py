"""Reading one deal is linear in its events: replay, history() and get() at 1k, 10k and 100k events.

The target (issue 11, case 12): everything that reads a deal is linear in its events, so
100,000 events replay in seconds.  For each size the script builds one deal and times, side
by side in this process (interleaved, the order rotated each repeat, medians of the repeats):

- ``Opportunity.replay(opp.events)`` against a hand-written fold of the same events into a
  dict (the least any replay does: one pass, one dict update per event);
- ``opp.history()`` against the same hand fold keeping a copy of the dict per event;
- ``Repository.get`` from SQLite and from JSON Lines against the store's ``read_stream``
  plus decoding each record with oppcore's converter and the hand fold (the floor for a
  reader of that store).

Each row prints the median time, its ratio to the baseline, and the growth per 10x events
(linear is about 10x, quadratic 100x).  Two workloads: *busy* (stage moves, field changes
and a handful of lines added, changed and removed) and *lines* (every event adds a line,
as in the issue's 10,000 line items added one by one).

    python bench/replay.py --quick        # 1k and 10k events, 3 repeats, about a minute
    python bench/replay.py                # 1k, 10k and 100k events, 3 repeats
    python bench/replay.py --sizes 1000,10000,100000 --repeats 5 --only busy
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from _timing import Sample, median, progress, rotated, source_state, timed

from oppcore import FixedClock, LineItem, Money, Opportunity, Repository
from oppcore.domain.events import (
    FieldsChanged,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    Lost,
    Opened,
    Reopened,
    StageChanged,
    Won,
)
from oppcore.serialization import converter
from oppcore.storage import JsonEventStore, SqliteEventStore
from oppcore.storage.repository import _EVENTS_BY_NAME  # the record type -> event class table

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


# -- the workloads ----------------------------------------------------------------------


def busy_deal(events: int) -> Opportunity:
    """Moves, field changes and a few lines (at most about 20) added, changed and removed."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Busy", id="deal", currency="USD", clock=clock)
    for n in range(1, events):
        clock.advance(timedelta(seconds=1))
        step = n % 10
        if step in (0, 5):
            opp = opp.move_to("in_progress" if opp.stage_key == "wait" else "wait", clock=clock)
        elif step == 3:
            opp = opp.add_line_item(LineItem("p", Money("1.25", "USD"), id=f"l{n}"), clock=clock)
        elif step == 7 and len(opp.line_items) > 20:
            opp = opp.remove_line_item(opp.line_items[0].id, clock=clock)
        elif step == 8 and opp.line_items:
            opp = opp.update_line_item(opp.line_items[-1].id, quantity=n % 7 + 1, clock=clock)
        else:
            opp = opp.update(description=f"call {n}", clock=clock)
    return opp


def lines_deal(events: int) -> Opportunity:
    """Every event after the first adds one line item."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Lines", id="deal", currency="USD", clock=clock)
    for n in range(1, events):
        opp = opp.add_line_item(LineItem("p", Money("0.10", "USD"), id=f"l{n}"), clock=clock)
    return opp


WORKLOADS: dict[str, Callable[[int], Opportunity]] = {"busy": busy_deal, "lines": lines_deal}


# -- the hand-written baseline ----------------------------------------------------------


def hand_fold(events: Sequence[Any], keep: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
    """The events folded into a plain dict, one update per event; ``keep``: a copy per event."""
    state: dict[str, Any] = {}
    lines: dict[str, Any] = {}
    kept: list[dict[str, Any]] = []
    for event in events:
        kind = type(event)
        if kind is Opened:
            state = {"name": event.name, "stage": event.stage, "amount": event.amount}
            lines = {item.id: item for item in event.line_items}
        elif kind is FieldsChanged:
            for name in event.fields:
                state[name] = getattr(event, name)
        elif kind in (StageChanged, Won, Lost, Reopened):
            state["stage"] = event.to_stage
        elif kind is LineItemAdded or kind is LineItemChanged:
            lines[event.item.id] = event.item
        elif kind is LineItemRemoved:
            del lines[event.item_id]
        state["version"] = event.version
        if keep:
            kept.append({**state, "lines": len(lines)})
    state["lines"] = lines
    return kept if keep else state


def decode(records: Sequence[Any]) -> list[Any]:
    structure = converter().structure
    return [structure(record.payload, _EVENTS_BY_NAME[record.type]) for record in records]


# -- measuring --------------------------------------------------------------------------


def measure(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in contenders}
    names = list(contenders)
    for turn in range(repeats):
        for name in rotated(names, turn):
            _, sample = timed(contenders[name])
            samples[name].append(sample)
    return samples


def run(workload: str, sizes: Sequence[int], repeats: int, folder: str) -> None:
    rows: dict[str, dict[int, float]] = {}
    for size in sizes:
        progress(f"{workload}: building a deal of {size:,} events")
        started = time.perf_counter()
        opp = WORKLOADS[workload](size)
        built = time.perf_counter() - started
        print(f"  {workload} {size:>7,} events: built by commands in {built:.2f} s")
        paths = {
            "SQLite": os.path.join(folder, f"{workload}-{size}.db"),
            "JSON Lines": os.path.join(folder, f"{workload}-{size}.jsonl"),
        }
        stores: dict[str, SqliteEventStore | JsonEventStore] = {
            "SQLite": SqliteEventStore(paths["SQLite"]),
            "JSON Lines": JsonEventStore(paths["JSON Lines"]),
        }
        repos = {name: Repository(store) for name, store in stores.items()}
        for repo in repos.values():
            repo.save(opp)
            assert repo.get(opp.id) == opp
        assert Opportunity.replay(opp.events) == opp
        events = opp.events
        contenders: dict[str, Callable[[], object]] = {
            "replay": lambda events=events: Opportunity.replay(events),  # type: ignore[misc]
            "replay: hand fold": lambda events=events: hand_fold(events),  # type: ignore[misc]
            "history()": opp.history,
            "history: hand fold": lambda events=events: hand_fold(events, keep=True),  # type: ignore[misc]
        }
        for name, repo in repos.items():
            store = stores[name]
            contenders[f"get, {name}"] = lambda repo=repo: repo.get("deal")  # type: ignore[misc]
            contenders[f"get, {name}: read + decode + hand fold"] = (
                lambda store=store: hand_fold(decode(store.read_stream("deal")))  # type: ignore[misc]
            )
        progress(f"{workload}: timing {size:,} events, {repeats} repeats")
        samples = measure(contenders, repeats)
        for name, values in samples.items():
            rows.setdefault(name, {})[size] = median([s.wall for s in values])
        for repo in repos.values():
            repo.close()
    report(workload, sizes, rows)


def report(workload: str, sizes: Sequence[int], rows: dict[str, dict[int, float]]) -> None:
    print(f"\n{workload}: median wall seconds; x base = ratio to the baseline row below it;")
    print("growth = time at this size / time at the size before (per 10x events: linear ~10x)")
    header = f"  {'contender':<44}" + "".join(f"{size:>12,}" for size in sizes)
    print(header)
    names = list(rows)
    for index, name in enumerate(names):
        times = rows[name]
        print(f"  {name:<44}" + "".join(f"{times[size]:>12.4f}" for size in sizes))
        growth = [
            f"{times[b] / times[a]:>11.1f}x" if times[a] > 0 else f"{'n/a':>12}"
            for a, b in itertools.pairwise(sizes)
        ]
        print(f"  {'  growth':<44}{'':>12}" + "".join(growth))
        is_library = ":" not in name
        if is_library and index + 1 < len(names):
            base = rows[names[index + 1]]
            ratios = "".join(f"{times[s] / base[s]:>11.1f}x" for s in sizes)
            print(f"  {'  x base':<44}" + ratios)
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="events per deal, comma-separated (1000,10000,100000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; figures are medians (3)")
    parser.add_argument("--quick", action="store_true", help="1k and 10k events only")
    parser.add_argument(
        "--only", action="append", choices=sorted(WORKLOADS), help="run only these workloads"
    )
    parser.add_argument("--tmpdir", help="where the stores are written (system temp)")
    args = parser.parse_args(argv)
    if args.sizes:
        args.sizes = [int(part.replace("_", "")) for part in args.sizes.split(",")]
    else:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"oppcore replay benchmark: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {source_state()}"
    )
    print(f"sizes {', '.join(f'{s:,}' for s in args.sizes)} events; {args.repeats} repeats\n")
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as folder:
        for workload in args.only or sorted(WORKLOADS):
            run(workload, args.sizes, args.repeats, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
