"""The oppcore command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oppcore.cli import main


def test_demo_prints_the_history_of_a_won_deal(capsys: pytest.CaptureFixture[str]) -> None:
    """`oppcore demo` opens, works and wins a sample deal and prints every step."""
    assert main(["demo"]) == 0

    out = capsys.readouterr().out
    assert "Siam Logistics - fleet tracking" in out
    assert "ปิดการขายได้" in out
    for event in (
        "Opened",
        "LineItemAdded",
        "StageChanged",
        "LineItemChanged",
        "FieldsChanged",
        "Won",
    ):
        assert event in out
    assert "198,300.00 THB" in out


def test_no_command_is_a_usage_error_without_a_traceback() -> None:
    """Running oppcore with no command prints usage on stderr and exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-m", "oppcore"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 2
    assert "usage: oppcore" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_one_clear_error() -> None:
    """An unknown command names itself and exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-m", "oppcore", "dance"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 2
    assert "invalid choice: 'dance'" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_piped_into_a_reader_that_stops_early_is_not_an_error() -> None:
    """`oppcore demo | head -1` exits cleanly, with no broken-pipe traceback."""
    result = subprocess.run(
        f"{sys.executable} -m oppcore demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )

    assert "Siam Logistics" in result.stdout
    assert "Traceback" not in result.stderr
