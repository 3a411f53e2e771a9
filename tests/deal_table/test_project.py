"""``oppcore.frame.project``: the deal table from a frame of event records, on its own engine.

A store's records as a frame (``event_frame``, what ``oppcore export --format parquet
--events`` writes) projected on polars, lazy polars, pyarrow, pandas and DuckDB give exactly
the rows the store's deals give (``deal_frame``).  A record that is not a deal's event is
``CorruptStoreError`` naming the stream, as the repository says it.  Spark has its own tests
under ``tests/spark``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import CorruptStoreError, Opportunity, Repository, ValidationError, sample
from oppcore.domain.money import EXACT
from oppcore.domain.versions import COLUMNS
from oppcore.frame import EVENT_COLUMNS, deal_frame, event_frame, project
from oppcore.storage import MemoryEventStore, event_record
from oppcore.storage.repository import RESERVED_PREFIXES
from tests.strategies import opportunities

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
duckdb = pytest.importorskip("duckdb")

SAMPLE = sample.generate(opportunities=80)


def _repository() -> Repository:
    repo = Repository(MemoryEventStore())
    repo.save_all(SAMPLE.values())
    return repo


REPO = _repository()
EVENTS = event_frame(REPO)
TABLE = deal_frame(REPO)

ENGINES: dict[str, Callable[[Any], Any]] = {
    "polars": lambda frame: frame,
    "polars-lazy": lambda frame: frame.lazy(),
    "pyarrow": lambda frame: frame.to_arrow(),
    "pandas": lambda frame: frame.to_pandas(),
    "duckdb": lambda frame: duckdb.connect().from_arrow(frame.to_arrow()),
}


def _polars(frame: Any) -> Any:
    """Any engine's deal frame as a polars frame, times in UTC (DuckDB names its own zone)."""
    import narwhals as nw

    wrapped = nw.from_native(frame)
    if isinstance(wrapped, nw.LazyFrame):
        wrapped = wrapped.collect(backend="polars")
    result = wrapped.to_polars()
    return result.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))


def _by_deal(frame: Any) -> Any:
    """Rows deal by deal (in id order), each deal's rows in the projector's order."""
    return frame.sort("opportunity_id", maintain_order=True)


def test_the_projection_of_a_stores_records_is_its_deal_table() -> None:
    """Every row, column and type, in the same order: deals as the store holds them."""
    kinds = set(EVENTS["stream_id"].str.split(":").list.first())
    assert {"lead", "campaign", "pipeline", "definition"} <= kinds  # not deals: skipped
    got = project(EVENTS)
    assert got.schema == TABLE.schema
    assert got.equals(TABLE)
    assert got.height > len(SAMPLE.opportunities)  # deals with history have several rows


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_each_engine_projects_to_a_deal_frame_of_its_own(engine: str) -> None:
    """The result is a frame of the input's engine holding exactly the deal table's rows."""
    events = ENGINES[engine](EVENTS)
    got = project(events)
    assert type(got) is type(events)
    assert _by_deal(_polars(got)).equals(_by_deal(TABLE))


def test_a_pandas_projection_has_the_deal_frames_exact_types() -> None:
    """Money stays decimal(38, 18) on pandas, as deal_frame(backend="pandas") gives it."""
    got = project(EVENTS.to_pandas())
    assert dict(got.dtypes) == dict(deal_frame(REPO, backend="pandas").dtypes)


def test_an_opened_record_finds_the_pipeline_it_names_among_the_records() -> None:
    """A store keeps each pipeline definition once and Opened names it: project reads it."""
    opened = [json.loads(text) for text in EVENTS.filter(pl.col("type") == "Opened")["payload"]]
    assert all("pipeline_ref" in payload and "pipeline" not in payload for payload in opened)
    defined = EVENTS.filter(pl.col("stream_id").str.starts_with("definition:"))
    assert defined.height == len(SAMPLE.pipelines)
    assert project(EVENTS).equals(TABLE)


def test_a_pipeline_named_but_missing_names_the_stream() -> None:
    events = EVENTS.filter(~pl.col("stream_id").str.starts_with("definition:"))
    with pytest.raises(CorruptStoreError, match=f"Stream '{DEAL}' version 1 \\(Opened\\) names"):
        project(events)


def test_a_pipeline_definition_changed_after_it_was_written_is_refused() -> None:
    definition = pl.col("stream_id").str.starts_with("definition:")
    events = EVENTS.with_columns(
        payload=pl.when(definition)
        .then(pl.col("payload").str.replace('"label":"', '"label":"Changed '))
        .otherwise(pl.col("payload"))
    )
    with pytest.raises(CorruptStoreError, match="does not match its content"):
        project(events)


def test_record_order_does_not_matter() -> None:
    """Records shuffled (as a distributed read gives them) project to the same rows."""
    shuffled = EVENTS.sample(fraction=1.0, shuffle=True, seed=3)
    assert _by_deal(project(shuffled)).equals(_by_deal(TABLE))


def test_columns_beyond_the_six_are_ignored() -> None:
    extra = EVENTS.with_columns(position=pl.int_range(1, EVENTS.height + 1))
    assert project(extra.select("position", *EVENT_COLUMNS)).equals(TABLE)


def test_no_records_make_an_empty_deal_table() -> None:
    got = project(EVENTS.clear())
    assert got.columns == list(COLUMNS)
    assert got.schema == TABLE.schema
    assert got.height == 0


def _fits(value: Decimal | None) -> bool:
    return value is None or (
        value == value.quantize(Decimal("1E-18"), context=EXACT) and abs(value) < 10**20
    )


@given(opps=st.lists(opportunities(max_commands=8), max_size=4, unique_by=lambda opp: opp.id))
def test_any_deals_records_project_to_their_rows(opps: list[Opportunity]) -> None:
    """Back-dated changes included: the rows of the records are the deals' own rows.  A
    stream under a reserved prefix is no deal, as in a store (which refuses such ids)."""
    deals = [opp for opp in opps if not opp.id.startswith(RESERVED_PREFIXES)]
    rows = [row for opp in deals for row in opp.versions()]
    if not all(_fits(row.amount) and _fits(row.expected_revenue) for row in rows):
        return  # deal_frame refuses these, naming the deal (tests/deal_table/test_frames.py)
    records = [event_record(event) for opp in opps for event in opp.events]
    assert project(event_frame(records)).equals(deal_frame(rows))


# -- event frames ------------------------------------------------------------------------


def test_an_event_frame_holds_every_record_of_the_store_in_its_order() -> None:
    records = list(REPO.store.read_all())
    assert EVENTS.columns == list(EVENT_COLUMNS)
    assert EVENTS.schema["version"] == pl.Int64
    assert EVENTS.height == len(records)
    for row, record in zip(EVENTS.iter_rows(named=True), records, strict=True):
        assert (row["stream_id"], row["version"], row["type"]) == (
            record.stream_id,
            record.version,
            record.type,
        )
        assert (row["at"], row["recorded_at"]) == (record.at, record.recorded_at)
        assert json.loads(row["payload"]) == record.payload


@pytest.mark.parametrize("backend", ["pandas", "pyarrow"])
def test_an_event_frame_comes_in_each_backend(backend: str) -> None:
    frame = event_frame(REPO, backend=backend)
    assert (
        pl.from_pandas(frame).equals(EVENTS)
        if backend == "pandas"
        else (pl.from_arrow(frame).equals(EVENTS))
    )


@pytest.mark.parametrize("source", ["deals.jsonl", 42, [1]])
def test_an_event_frame_of_something_else_is_refused(source: Any) -> None:
    with pytest.raises(ValidationError, match="event_frame\\(\\) takes"):
        event_frame(source)


def test_an_event_frame_backend_must_be_known() -> None:
    with pytest.raises(ValidationError, match="backend must be one of"):
        event_frame(REPO, backend="spark")


# -- bad records -------------------------------------------------------------------------

DEAL = SAMPLE.opportunities[0].id


def _changed(column: str, value: Any, *, version: int = 2) -> Any:
    """The events with one record of the first deal changed."""
    target = (pl.col("stream_id") == DEAL) & (pl.col("version") == version)
    kind = EVENTS.schema[column]
    return EVENTS.with_columns(
        pl.when(target).then(pl.lit(value, dtype=kind)).otherwise(pl.col(column)).alias(column)
    )


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_unknown_event_type_names_the_stream_on_every_engine(engine: str) -> None:
    events = ENGINES[engine](_changed("type", "Teleported"))
    with pytest.raises(CorruptStoreError, match=f"Stream '{DEAL}' version 2 holds unknown"):
        project(events)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            EVENTS.filter((pl.col("stream_id") != DEAL) | (pl.col("version") != 1)),
            f"history of opportunity '{DEAL}' does not replay: An opportunity's history starts "
            "with Opened",
        ),
        (
            pl.concat([EVENTS, EVENTS.filter(pl.col("stream_id") == DEAL).head(2)]),
            f"history of opportunity '{DEAL}' does not replay",
        ),
        (_changed("payload", "{not json"), f"Stream '{DEAL}' version 2 .*payload is not JSON"),
        (_changed("payload", "[1, 2]"), f"Stream '{DEAL}' version 2 .*not a JSON object"),
        (_changed("payload", None), f"Stream '{DEAL}' version 2 .*which is not JSON text"),
        (_changed("payload", '{"at": 3}'), f"Stream '{DEAL}' version 2 .*cannot be read"),
        (_changed("version", None), f"Stream '{DEAL}' holds a record with version None"),
        (_changed("stream_id", None), "An event record has stream_id None"),
    ],
    ids=[
        "no-opened",
        "a-version-twice",
        "not-json",
        "not-an-object",
        "no-payload",
        "bad-payload",
        "no-version",
        "no-stream",
    ],
)
def test_a_record_that_is_not_a_deals_event_is_corrupt_naming_it(events: Any, message: str) -> None:
    with pytest.raises(CorruptStoreError, match=message):
        project(events)


def test_a_frame_without_the_record_columns_is_refused_naming_them() -> None:
    with pytest.raises(ValidationError, match="no 'type', 'payload' column"):
        project(EVENTS.drop("type", "payload"))


@pytest.mark.parametrize("value", [[1, 2], "events.parquet", None])
def test_something_other_than_a_frame_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError, match="project\\(\\) takes a frame of event records"):
        project(value)
