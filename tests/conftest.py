"""Shared test configuration: Hypothesis profiles and the shared data folder."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
