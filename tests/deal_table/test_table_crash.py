"""A writer killed with SIGKILL at any moment leaves SQLite's deal table equal to the projection
of the acknowledged events: never behind them, never holding rows of a save that did not land.

A forked child saves deals through a ``Repository`` (each deal in pieces: a prefix of its
events, then more), telling the parent what it is about to save and what was acknowledged.
The parent kills it after a random few milliseconds and reads the file with the store alone
(no repository, so nothing catches the table up): the table's position must be the last
event's, and its rows exactly ``opp.versions()`` of every stored deal.

Set ``OPPCORE_CRASH_SEED`` to replay a run's random choices.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from oppcore import DealVersion, Opportunity, Repository, sample
from oppcore.storage import SqliteEventStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

KILLS = 40
MAX_KILL_DELAY = 0.05
TIMEOUT = 30.0
DEALS = sample.generate(opportunities=150, seed=3).opportunities


def _seed() -> int:
    text = os.environ.get("OPPCORE_CRASH_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _child(path: Path, out: int, seed: int) -> NoReturn:
    status = 3
    try:
        rng = random.Random(seed)
        store = SqliteEventStore(path)
        repo = Repository(store)
        stored = {opp.id: store.stream_version(opp.id) for opp in DEALS}
        _send(out, {"ready": True})
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            pending = [opp for opp in DEALS if stored[opp.id] < opp.version]
            if not pending:
                status = 0
                break
            chosen = rng.sample(pending, min(len(pending), rng.randint(1, 6)))
            plan = {opp.id: rng.randint(stored[opp.id] + 1, opp.version) for opp in chosen}
            values = [Opportunity.replay(o.events[: plan[o.id]]) for o in chosen]
            _send(out, {"attempt": plan})
            if len(values) == 1:
                repo.save(values[0])
            else:
                repo.save_all(values)
            stored.update(plan)
            _send(out, {"ack": plan})
    except BaseException:
        status = 4
    os._exit(status)


def _kill_one(path: Path, rng: random.Random, seed: int) -> tuple[list[dict[str, int]], bool, bool]:
    """Fork a saver, kill it at a random moment: what it acknowledged, whether it finished,
    and whether the kill caught a save between its attempt and its acknowledgement."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(path, write, seed)
    os.close(write)
    buffer = b""
    acked: list[dict[str, int]] = []
    deadline = time.monotonic() + TIMEOUT
    while b'"ready"' not in buffer and time.monotonic() < deadline:
        ready, _, _ = select.select([read], [], [], 0.5)
        if ready:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            buffer += chunk
    time.sleep(rng.uniform(0, MAX_KILL_DELAY))
    with contextlib.suppress(ProcessLookupError):  # it may have finished already
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    finished = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not (os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0,)), (
        f"seed {seed}: the saver failed (exit {os.WEXITSTATUS(status)})"
    )
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        buffer += chunk
    os.close(read)
    in_flight = False
    for line in buffer.splitlines():
        message = json.loads(line)
        if "ack" in message:
            acked.append(message["ack"])
        in_flight = "attempt" in message
    return acked, finished, in_flight


def _key(row: DealVersion) -> tuple[str, int, datetime]:
    return row.opportunity_id, row.version, row.recorded_from


def test_a_saver_killed_at_random_moments_never_leaves_the_table_off_the_events(
    tmp_path: Path,
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    SqliteEventStore(path).close()
    acknowledged: dict[str, int] = {}
    kills = caught = 0
    for cycle in range(KILLS):
        acked, finished, in_flight = _kill_one(path, rng, rng.randrange(2**32))
        caught += in_flight
        for plan in acked:
            for opp_id, version in plan.items():
                acknowledged[opp_id] = max(acknowledged.get(opp_id, 0), version)
        where = f"seed {seed} (OPPCORE_CRASH_SEED), kill {cycle + 1}"
        with SqliteEventStore(path) as store:
            assert store.deal_table_position() == store.last_position(), (
                f"{where}: the table is behind the events"
            )
            rows = sorted(store.deal_versions(), key=_key)
            opps = Repository(store).opportunities()
            want = sorted((row for opp in opps for row in opp.versions()), key=_key)
            assert rows == want, f"{where}: the table differs from the projection of the events"
            for opp_id, version in acknowledged.items():
                assert store.stream_version(opp_id) >= version, (
                    f"{where}: an acknowledged save of {opp_id!r} is missing"
                )
        kills += not finished
        if finished:
            break
    assert caught >= kills // 3, (
        f"seed {seed}: only {caught} of {kills} kills caught a save in flight; the test is "
        "not exercising crashes in the middle of saves"
    )
