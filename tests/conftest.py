"""Shared test configuration: Hypothesis profiles, the shared data folder, and a repository
on each backend (``opener``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from oppcore import Repository, open_repository
from oppcore.storage import MemoryEventStore
from tests.storage.postgres_support import as_url, fresh_schema, server

# The machine CI runs on is shared and noisy: no per-example deadline, and a fixed number of
# examples so the whole suite stays well inside its time budget.  "thorough" is for hunting.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("thorough", deadline=None, max_examples=2_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def shared_data() -> Path:
    """The folder of real data sets beside the project; skips when it is absent."""
    folder = Path(
        os.environ.get("OPPCORE_SHARED_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
    )
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} is absent (set OPPCORE_SHARED_DATA)")
    return folder.resolve()


@pytest.fixture(params=["memory", "jsonl", "sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Repository]]:
    """Opens a repository on one backend; every call opens the same store again."""
    kind = request.param
    if kind == "memory":
        store = MemoryEventStore()
        yield lambda: Repository(store)
    elif kind == "jsonl":
        yield lambda: open_repository(tmp_path / "deals.jsonl")
    elif kind == "sqlite":
        yield lambda: open_repository(tmp_path / "deals.db")
    else:
        with fresh_schema(server()) as conninfo:
            url = as_url(conninfo)
            yield lambda: open_repository(url)
