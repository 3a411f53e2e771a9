"""What the benchmarks share: timing one run, ordering contenders, summing up, verdicts,
and saying which source tree was measured.

The machine is shared and noisy, so every script runs its contenders interleaved (in a new
order each repeat), times wall and CPU time, and reports medians and ratios.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

T = TypeVar("T")


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


def verdict(ratio: float, target: float, paired: Sequence[float], *, at_most: bool = True) -> str:
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


def source_state() -> str:
    """The commit of the source tree the run measured, and whether src/ had changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "source: not a git checkout"
    return f"source: git {commit}" + (" with uncommitted changes in src/" if changed else "")
