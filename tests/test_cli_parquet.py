"""``oppcore export --format parquet``: the deal table, or with ``--events`` every event record,
as a Parquet file, run as a user runs the command (see ``tests/test_cli.py``).

Read back with polars, the file is the store's deal table (``deal_frame``) or its records
(``event_frame``), and ``project`` of the records read back is the deal table again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oppcore import open_repository, sample
from oppcore.domain.versions import COLUMNS
from oppcore.frame import EVENT_COLUMNS, deal_frame, project
from tests.test_cli import assert_one_line_error, ok, oppcore

pl = pytest.importorskip("polars")

SAMPLE = sample.generate(opportunities=60)


@pytest.fixture(scope="module", params=["deals.db", "deals.jsonl"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite or JSON Lines store holding the sample: deals, pipelines, leads, campaigns."""
    path = tmp_path_factory.mktemp("store") / str(request.param)
    with open_repository(path) as repo:
        repo.save_all(SAMPLE.values())
    return path


def _table(store: Path) -> object:
    with open_repository(store) as repo:
        return deal_frame([row for opp in repo.opportunities() for row in opp.versions()])


def test_export_parquet_writes_the_deal_table(store: Path, tmp_path: Path) -> None:
    """Every row and column of the deal table, money exact, read back as it was written."""
    written = oppcore(
        "export", "--store", store, "--format", "parquet", "-o", "t.parquet", cwd=tmp_path
    )

    assert ok(written) == ""
    assert written.stderr == "wrote t.parquet\n"
    back = pl.read_parquet(tmp_path / "t.parquet")
    assert back.columns == list(COLUMNS)
    assert back.schema["amount"] == pl.Decimal(38, 18)
    assert back.equals(_table(store))
    assert back["opportunity_id"].n_unique() == len(SAMPLE.opportunities)


def test_export_parquet_events_writes_every_record_of_the_store(
    store: Path, tmp_path: Path
) -> None:
    """Deals, pipelines, leads and campaigns, in the store's order; projected back, the deal
    table."""
    written = oppcore(
        "export",
        "--store",
        store,
        "--format",
        "parquet",
        "--events",
        "-o",
        "e.parquet",
        cwd=tmp_path,
    )

    assert ok(written) == ""
    assert written.stderr == "wrote e.parquet\n"
    back = pl.read_parquet(tmp_path / "e.parquet")
    assert back.columns == list(EVENT_COLUMNS)
    with open_repository(store) as repo:
        records = list(repo.store.read_all())
    assert back.height == len(records)
    assert [tuple(row) for row in back.select("stream_id", "version", "type").rows()] == [
        (record.stream_id, record.version, record.type) for record in records
    ]
    assert [json.loads(text) for text in back["payload"]] == [r.payload for r in records]
    assert set(back["stream_id"].str.split(":").list.first()) >= {"lead", "campaign", "pipeline"}
    assert project(back).equals(_table(store))


def test_export_parquet_replaces_an_existing_file_whole(store: Path, tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"an older export")

    ok(oppcore("export", "--store", store, "--format", "parquet", "-o", "t.parquet", cwd=tmp_path))

    assert pl.read_parquet(tmp_path / "t.parquet").equals(_table(store))
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]  # no temporary file left beside it


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([], ["--format parquet writes a file", "give --output FILE"]),
        (["-o", "-"], ["--format parquet writes a file"]),
        (["--history", "-o", "t.parquet"], ["--history is for CSV"]),
    ],
    ids=["no-output", "stdout", "history"],
)
def test_export_parquet_refuses_what_it_cannot_do_in_one_line(
    store: Path, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    result = oppcore("export", "--store", store, "--format", "parquet", *args, cwd=tmp_path)

    assert_one_line_error(result, *needles)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("format_", ["csv", "json"])
def test_events_without_parquet_is_refused(store: Path, tmp_path: Path, format_: str) -> None:
    result = oppcore(
        "export", "--store", store, "--format", format_, "--events", "-o", "x", cwd=tmp_path
    )

    assert_one_line_error(result, "--events writes the event records as Parquet")
    assert os.listdir(tmp_path) == []


def test_export_parquet_never_writes_over_the_store(store: Path, tmp_path: Path) -> None:
    before = store.read_bytes()

    result = oppcore("export", "--store", store, "--format", "parquet", "-o", store, cwd=tmp_path)

    assert_one_line_error(result, "is the store", "Nothing was written")
    assert store.read_bytes() == before


def test_export_parquet_without_polars_names_the_extra(store: Path, tmp_path: Path) -> None:
    """Without the frame extra: one line naming what to install, and no file."""
    script = textwrap.dedent(
        f"""
        import runpy, sys
        sys.modules["polars"] = None  # as if it were not installed
        sys.argv = ["oppcore", "export", "--store", {os.fspath(store)!r}, "--format",
                    "parquet", "-o", "t.parquet"]
        runpy.run_module("oppcore", run_name="__main__")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=120,
    )

    assert_one_line_error(result, "pip install 'oppcore[frame]'")
    assert os.listdir(tmp_path) == []
