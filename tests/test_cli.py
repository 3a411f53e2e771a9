"""The oppcore command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oppcore.cli import main


def test_demo_fills_its_store_and_prints_the_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`oppcore demo` fills oppcore-demo.db in the current folder and prints every report."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0

    out = capsys.readouterr().out
    assert (tmp_path / "oppcore-demo.db").is_file()
    assert "Filled oppcore-demo.db with a sample year" in out
    for section in (
        "Forecast by quarter",
        "Campaign effectiveness",
        "Lead-source effectiveness",
        "Effectiveness by type of deal",
        "Funnel of pipeline 'b2b'",
        "Pipeline movement over 2026-Q4",
    ):
        assert section in out


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


def test_demo_piped_into_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """`oppcore demo | head -1` exits cleanly, with no broken-pipe traceback."""
    result = subprocess.run(
        f"{sys.executable} -m oppcore demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert "Filled oppcore-demo.db" in result.stdout
    assert "Traceback" not in result.stderr
