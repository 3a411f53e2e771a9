"""Whole repositories as one JSON document: ``dump_json`` and ``load_json``, and the schema."""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from oppcore import (
    Campaign,
    ConcurrencyError,
    DeserializationError,
    FixedClock,
    ForecastCategory,
    Lead,
    LineItem,
    Money,
    OppcoreError,
    Opportunity,
    Outcome,
    Pipeline,
    Repository,
    Stage,
    StorageError,
    ValidationError,
    open_repository,
)
from oppcore.io.documents import FORMAT, SCHEMA_PATH, VERSION, dump_json, load_json
from oppcore.storage.repository import RESERVED_PREFIXES
from tests.strategies import (
    any_pipelines,
    aware_datetimes,
    currencies,
    dates,
    money,
    nonblank_texts,
    opportunities,
    optional,
    pipelines,
)

ROOT = Path(__file__).parents[2]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=7)))

REGIONAL = Pipeline(
    "regional",
    "ภาคเหนือ",
    stages=(
        Stage("ติดต่อ", "ติดต่อ", 10),
        Stage("เสนอราคา", "เสนอราคา", "62.5", forecast_category=ForecastCategory.COMMIT),
        Stage("won", "ปิดการขายได้", 100, Outcome.WON),
        Stage("lost", "ปิดการขายไม่ได้", 0, Outcome.LOST),
    ),
    transitions={"ติดต่อ": ("เสนอราคา", "lost"), "เสนอราคา": ("won", "lost")},
)
LEAD = Lead(
    "lead-1",
    "คุณสมหญิง",
    company="บริษัท สยามเทรดดิ้ง จำกัด",
    source="web",
    campaign_id="cmp-1",
    created_at=T0 - timedelta(days=10),
)
CAMPAIGN = Campaign(
    "cmp-1",
    "งานแสดงสินค้า 2026",
    type="trade_show",
    start=date(2026, 1, 1),
    end=date(2026, 1, 31),
    budgeted_cost=Money("50000", "THB"),
    actual_cost=Money("48250.50", "THB"),
)


def sample_deals() -> list[Opportunity]:
    """Three deals: won on the default pipeline, lost on Salesforce's, open on a custom one."""
    clock = FixedClock(T0)
    a = LEAD.convert(
        name="บริษัท สยามเทรดดิ้ง จำกัด — แอร์",
        id="opp-a",
        currency="THB",
        line_items=[
            LineItem(
                "เครื่องปรับอากาศ",
                Money("25900.00", "THB"),
                quantity=3,
                discount="12.5",
                id="line-1",
            )
        ],
        owner="สมชาย",
        expected_close=date(2026, 3, 31),
        clock=clock,
    )
    clock.advance(timedelta(days=3))
    a = a.move_to("in_progress", clock=clock, by="สมชาย")
    clock.advance(timedelta(hours=5))
    a = a.update(amount=Money("70000.00", "THB"), clock=clock)
    clock.advance(timedelta(days=20))
    a = a.win(clock=clock)
    b = Opportunity.open(
        name="GTX Pro",
        id="opp-b",
        pipeline=Pipeline.salesforce(),
        amount=Money("4821.000001", "USD"),
        clock=clock,
    )
    clock.advance(timedelta(minutes=1))
    b = b.lose(reason="ราคาสูงไป", clock=clock)
    c = Opportunity.open(name="ชุดโซลาร์เซลล์", id="opp-c", pipeline=REGIONAL, clock=clock)
    clock.advance(timedelta(hours=1))
    c = c.move_to("เสนอราคา", clock=clock, at=clock.now() - timedelta(minutes=30))
    return [a, b, c]


def sample_repository(target: str | Path | None = None) -> Repository:
    repository = open_repository(target, clock=FixedClock(T0 + timedelta(days=60)))
    repository.save_all([REGIONAL, CAMPAIGN, LEAD, *sample_deals()])
    return repository


def dump_text(repository: Repository) -> str:
    out = io.StringIO()
    dump_json(repository, out)
    return out.getvalue()


def load_text(text: str, *, into: Repository | None = None) -> Repository:
    return load_json(io.StringIO(text), into=into)


def load_document(document: Any) -> Repository:
    return load_text(json.dumps(document, ensure_ascii=False))


def sample_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(dump_text(sample_repository()))
    return document


Contents = tuple[list[Pipeline], list[Campaign], list[Lead], list[Opportunity]]


def contents(repository: Repository) -> Contents:
    def by_id(value: Any) -> str:
        return str(value.id)

    return (
        sorted(repository.pipelines(), key=by_id),
        sorted(repository.campaigns(), key=by_id),
        sorted(repository.leads(), key=by_id),
        sorted(repository.opportunities(), key=by_id),
    )


@functools.cache
def validator() -> Draft202012Validator:
    schema = json.loads((ROOT / SCHEMA_PATH).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def refused(document: Any) -> str:
    """The message of the ``DeserializationError`` loading ``document`` raises."""
    with pytest.raises(DeserializationError) as caught:
        load_document(document)
    return str(caught.value)


# -- the document ------------------------------------------------------------------------


def test_document_starts_with_format_and_version_then_sections_in_order() -> None:
    """The document is one object: format, version, pipelines, campaigns, leads, opportunities."""
    document = sample_document()
    assert list(document) == [
        "format",
        "version",
        "pipelines",
        "campaigns",
        "leads",
        "opportunities",
    ]
    assert (document["format"], document["version"]) == (FORMAT, VERSION) == ("oppcore-document", 1)


def test_each_item_is_on_its_own_line_and_thai_text_is_not_escaped() -> None:
    """One pipeline, campaign, lead or opportunity per line; non-ASCII text kept as it is."""
    text = dump_text(sample_repository())
    lines = text.splitlines()
    assert lines[0] == '{"format":"oppcore-document","version":1,'
    assert sum(line.startswith('{"id":"opp-') for line in lines) == 3
    assert "ปิดการขายได้" in text
    assert "\\u0e" not in text
    assert text.endswith("]}\n")


def test_opportunities_travel_as_their_full_event_lists() -> None:
    """Every event is in the document, tagged by type, so history survives the trip."""
    document = sample_document()
    deal = document["opportunities"][0]
    assert deal["id"] == "opp-a"
    assert [event["event"] for event in deal["events"]] == [
        "Opened",
        "StageChanged",
        "FieldsChanged",
        "Won",
    ]
    reloaded = load_document(document).get("opp-a")
    original = sample_deals()[0]
    assert reloaded.history() == original.history()
    assert reloaded.stage_timeline() == original.stage_timeline()


def test_amounts_are_exact_strings_and_times_keep_their_offsets() -> None:
    """Money is {amount: string, currency}; times are ISO 8601 with a UTC offset."""
    document = sample_document()
    opened_b = document["opportunities"][1]["events"][0]
    assert opened_b["amount"] == {"amount": "4821.000001", "currency": "USD"}
    assert datetime.fromisoformat(opened_b["at"]).utcoffset() is not None
    assert document["campaigns"][0]["actual_cost"] == {"amount": "48250.50", "currency": "THB"}


def test_sections_are_sorted_by_id() -> None:
    """Deals come out sorted by id whatever order they were saved in."""
    repository = open_repository(None)
    clock = FixedClock(T0)
    ids = ["zeta", "อัลฟา", "alpha", "Beta", "10", "9"]
    repository.save_all([Opportunity.open(name=i, id=i, clock=clock) for i in ids])
    repository.save_all([Lead("l2", "b"), Lead("l1", "a")])
    document = json.loads(dump_text(repository))
    assert [deal["id"] for deal in document["opportunities"]] == sorted(ids)
    assert [lead["id"] for lead in document["leads"]] == ["l1", "l2"]


def test_an_empty_repository_gives_empty_sections_and_loads_back_empty() -> None:
    """Nothing stored: four empty lists, which load into an empty repository."""
    text = dump_text(open_repository(None))
    assert json.loads(text) == {
        "format": "oppcore-document",
        "version": 1,
        "pipelines": [],
        "campaigns": [],
        "leads": [],
        "opportunities": [],
    }
    assert contents(load_text(text)) == ([], [], [], [])


def test_missing_sections_read_as_empty() -> None:
    """A document with only format and version is an empty repository."""
    repository = load_document({"format": "oppcore-document", "version": 1})
    assert contents(repository) == ([], [], [], [])


# -- pipelines: by id or whole -----------------------------------------------------------


def opened_pipeline(document: dict[str, Any], index: int) -> Any:
    return document["opportunities"][index]["events"][0]["pipeline"]


def test_opened_names_a_saved_or_stock_pipeline_by_id() -> None:
    """Deals on a saved pipeline or a stock one carry just the pipeline's id."""
    document = sample_document()
    assert [opened_pipeline(document, i) for i in range(3)] == ["default", "salesforce", "regional"]
    assert [p["id"] for p in document["pipelines"]] == ["regional"]
    assert document["pipelines"][0] == REGIONAL.to_dict()


def test_a_pipeline_changed_since_the_deal_opened_travels_whole() -> None:
    """The deal keeps the pipeline it opened in; the document's pipelines hold the new one."""
    repository = sample_repository()
    renamed = attrs.evolve(repository.get_pipeline("regional"), name="ภาคเหนือ (ใหม่)")
    repository.save(renamed)
    document = json.loads(dump_text(repository))
    assert opened_pipeline(document, 2) == REGIONAL.to_dict()
    reloaded = load_document(document)
    assert reloaded.get("opp-c").pipeline == REGIONAL
    assert reloaded.pipelines() == [renamed]
    assert validator().is_valid(document)


def test_a_custom_pipeline_never_saved_travels_whole() -> None:
    """A deal's pipeline that the repository does not hold goes inline, and is not added."""
    repository = open_repository(None)
    repository.save(Opportunity.open(name="x", id="x", pipeline=REGIONAL, clock=FixedClock(T0)))
    document = json.loads(dump_text(repository))
    assert opened_pipeline(document, 0) == REGIONAL.to_dict()
    assert document["pipelines"] == []
    reloaded = load_document(document)
    assert reloaded.pipelines() == []
    assert reloaded.get("x").pipeline == REGIONAL


def test_a_saved_pipeline_shadowing_a_stock_id_does_not_capture_stock_deals() -> None:
    """A saved pipeline with id 'default' that differs from the stock one: stock deals go inline."""
    shadow = attrs.evolve(REGIONAL, id="default")
    repository = open_repository(None)
    clock = FixedClock(T0)
    repository.save_all(
        [
            shadow,
            Opportunity.open(name="stock", id="stock", clock=clock),
            Opportunity.open(name="shadow", id="shadow", pipeline=shadow, clock=clock),
        ]
    )
    document = json.loads(dump_text(repository))
    assert opened_pipeline(document, 0) == "default"  # "shadow" sorts first
    assert opened_pipeline(document, 1) == Pipeline.default().to_dict()
    reloaded = load_document(document)
    assert reloaded.get("stock").pipeline == Pipeline.default()
    assert reloaded.get("shadow").pipeline == shadow


def test_an_opened_naming_an_unreadable_pipeline_points_at_it() -> None:
    """A deal whose pipeline could not be read says where that pipeline is."""
    document = set_in(sample_document(), ("pipelines", 0, "stages"), [])
    message = refused(document)
    assert "@ $.pipelines[0]" in message
    assert (
        "Pipeline 'regional' could not be read (see $.pipelines[0]). "
        "@ $.opportunities[2].events[0].pipeline"
    ) in message


def test_an_unknown_pipeline_id_is_refused_at_its_path() -> None:
    """An Opened naming a pipeline the document does not hold says so, with the path."""
    document = sample_document()
    document["opportunities"][2]["events"][0]["pipeline"] = "ไม่มี"
    message = refused(document)
    assert "opportunities[2].events[0].pipeline" in message
    assert "'ไม่มี'" in message


# -- round trips -------------------------------------------------------------------------


def test_sample_round_trip_is_exact_and_the_text_is_stable() -> None:
    """load(dump(repo)) holds equal values, and dumping it again gives the same text."""
    repository = sample_repository()
    text = dump_text(repository)
    reloaded = load_text(text)
    assert contents(reloaded) == contents(repository)
    assert dump_text(reloaded) == text
    assert validator().is_valid(json.loads(text))


@st.composite
def campaigns(draw: st.DrawFn) -> Campaign:
    start, end = draw(optional(dates())), draw(optional(dates()))
    if start is not None and end is not None and end < start:
        start, end = end, start
    code = draw(currencies())
    return Campaign(
        draw(nonblank_texts()),
        draw(nonblank_texts()),
        type=draw(optional(nonblank_texts())),
        start=start,
        end=end,
        budgeted_cost=draw(optional(money(code, non_negative=True))),
        actual_cost=draw(optional(money(code, non_negative=True))),
    )


LEADS = st.builds(
    Lead,
    id=nonblank_texts(),
    name=nonblank_texts(),
    company=optional(nonblank_texts()),
    source=optional(nonblank_texts()),
    campaign_id=optional(nonblank_texts()),
    created_at=optional(aware_datetimes()),
)


@st.composite
def repository_contents(draw: st.DrawFn) -> list[Any]:
    """Pipelines, campaigns, leads and deals, some deals opened in the saved pipelines."""
    saved = draw(st.lists(pipelines(), max_size=2, unique_by=lambda p: p.id))
    if draw(st.booleans()) and saved:  # a saved pipeline that shadows a stock id
        saved[0] = attrs.evolve(saved[0], id=draw(st.sampled_from(["default", "salesforce"])))
        saved = [p for i, p in enumerate(saved) if i == 0 or p.id != saved[0].id]
    in_use = st.one_of(any_pipelines(), *map(st.just, saved))
    deals = draw(
        st.lists(
            opportunities(pipeline_strategy=in_use, max_commands=6).filter(
                lambda opp: not opp.id.startswith(RESERVED_PREFIXES)
            ),
            max_size=3,
            unique_by=lambda opp: opp.id,
        )
    )
    leads = draw(st.lists(LEADS, max_size=2, unique_by=lambda lead: lead.id))
    found = draw(st.lists(campaigns(), max_size=2, unique_by=lambda c: c.id))
    return [*saved, *found, *leads, *deals]


@settings(max_examples=60)
@given(values=repository_contents())
def test_generated_repositories_round_trip_exactly(values: list[Any]) -> None:
    """For any repository: equal values after the trip, identical text, a schema-valid document."""
    repository = open_repository(None, clock=FixedClock(T0))
    repository.save_all(values)
    text = dump_text(repository)
    document = json.loads(text)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(document)]
    assert not errors, errors[:3]
    reloaded = load_text(text)
    assert contents(reloaded) == contents(repository)
    assert dump_text(reloaded) == text


@pytest.fixture(params=["memory", "journal.jsonl", "store.db"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str | None]:
    """Names a fresh store of one kind: None (memory), a JSON Lines journal or SQLite."""
    kind: str = request.param

    def target(name: str) -> str | None:
        return None if kind == "memory" else str(tmp_path / f"{name}-{kind}")

    return target


def test_round_trip_through_every_store(
    store_target: Callable[[str], str | None], tmp_path: Path
) -> None:
    """Dump from one store kind and load into a new one of the same kind: equal values."""
    path = tmp_path / "export.json"
    with sample_repository(store_target("source")) as source:
        dump_json(source, path)
        expected = contents(source)
    with open_repository(store_target("target")) as target:
        assert load_json(path, into=target) is target
        assert contents(target) == expected
    reopened_target = store_target("target")
    if reopened_target is not None:  # it was written for good
        with open_repository(reopened_target) as again:
            assert contents(again) == expected
            assert dump_text(again) == path.read_text(encoding="utf-8")


def test_paths_may_be_text_or_pathlib(tmp_path: Path) -> None:
    """dump_json and load_json take str and Path alike."""
    repository = sample_repository()
    dump_json(repository, str(tmp_path / "a.json"))
    dump_json(repository, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert contents(load_json(str(tmp_path / "a.json"))) == contents(repository)
    assert contents(load_json(tmp_path / "b.json")) == contents(repository)


def test_dump_to_a_path_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    """An existing file is replaced; no temporary file is left beside it."""
    path = tmp_path / "export.json"
    path.write_text("old content", encoding="utf-8")
    dump_json(sample_repository(), path)
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == "oppcore-document"
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk error while writing is a StorageError; the file there before is untouched."""
    path = tmp_path / "export.json"
    path.write_text("the previous export", encoding="utf-8")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("oppcore.io.documents.os.fsync", failing_fsync)
    with pytest.raises(StorageError, match="No space left"):
        dump_json(sample_repository(), path)
    assert path.read_text(encoding="utf-8") == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_a_document_with_a_byte_order_mark_or_as_bytes_loads(tmp_path: Path) -> None:
    """Editors on Windows add a BOM; a binary file gives bytes: both read as UTF-8."""
    text = dump_text(sample_repository())
    path = tmp_path / "bom.json"
    path.write_text("\ufeff" + text, encoding="utf-8")
    expected = contents(sample_repository())
    assert contents(load_json(path)) == expected
    assert contents(load_json(io.BytesIO(text.encode("utf-8")))) == expected


class CountingWriter:
    """A text sink that records each write."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def write(self, text: str) -> int:
        self.pieces.append(text)
        return len(text)


def test_a_big_repository_is_written_in_pieces_and_reads_back() -> None:
    """The text is streamed in many writes, never built whole first, and loads back equal."""
    repository = open_repository(None)
    clock = FixedClock(T0)
    deals = []
    for number in range(400):
        deal = Opportunity.open(
            name=f"ลูกค้า {number}",
            id=f"deal-{number:04d}",
            amount=Money(f"{number}.25", "THB"),
            clock=clock,
        )
        deals.append(deal.win(clock=clock) if number % 3 == 0 else deal)
    repository.save_all(deals)
    writer = CountingWriter()
    dump_json(repository, writer)
    text = "".join(writer.pieces)
    assert len(writer.pieces) > 2
    assert max(len(piece) for piece in writer.pieces) < len(text) / 2
    assert text == dump_text(repository)
    assert contents(load_text(text)) == contents(repository)


# -- loading into a repository -----------------------------------------------------------


def test_load_into_none_makes_a_new_memory_repository() -> None:
    """Without into=, a new in-memory repository holds the document."""
    repository = load_text(dump_text(sample_repository()))
    assert isinstance(repository, Repository)
    assert [opp.id for opp in contents(repository)[3]] == ["opp-a", "opp-b", "opp-c"]


def test_loading_the_same_document_twice_changes_nothing() -> None:
    """Deals already held with the same events are left as they are."""
    text = dump_text(sample_repository())
    repository = load_text(text)
    before = list(repository.store.read_all())
    assert load_text(text, into=repository) is repository
    assert list(repository.store.read_all()) == before


def test_a_deal_held_with_its_first_events_gets_the_rest() -> None:
    """A repository holding an older copy of a deal's history is brought up to date."""
    full = sample_deals()[0]
    repository = open_repository(None)
    repository.save(Opportunity.replay(full.events[:2]))
    load_text(dump_text(sample_repository()), into=repository)
    assert repository.get("opp-a") == full


def conflicting_repository(target: str | None) -> Repository:
    """A repository holding opp-a with a different second event, and nothing else."""
    first = Opportunity.replay(sample_deals()[0].events[:1])
    clock = FixedClock(T0 + timedelta(days=1))
    repository = open_repository(target, clock=clock)
    repository.save(first.move_to("closed_lost", clock=clock))
    return repository


def test_a_deal_held_with_a_different_history_refuses_the_whole_load(
    store_target: Callable[[str], str | None],
) -> None:
    """ConcurrencyError naming the deal, and nothing from the document is saved."""
    text = dump_text(sample_repository())
    with conflicting_repository(store_target("into")) as repository:
        before = list(repository.store.read_all())
        with pytest.raises(ConcurrencyError) as caught:
            load_text(text, into=repository)
        assert caught.value.stream_id == "opp-a"
        assert "'opp-a'" in str(caught.value)
        assert "Nothing was loaded" in str(caught.value)
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        assert list(repository.store.read_all()) == before
        assert repository.leads() == []


def test_a_document_older_than_the_repository_is_a_conflict() -> None:
    """A deal held with more events than the document has is not rolled back."""
    repository = sample_repository()
    newer = repository.get("opp-c").update(
        description="โทรนัดแล้ว", clock=FixedClock(T0 + timedelta(days=40))
    )
    stale = dump_text(repository)
    repository.save(newer)
    with pytest.raises(ConcurrencyError) as caught:
        load_text(stale, into=repository)
    assert caught.value.stream_id == "opp-c"
    assert repository.get("opp-c") == newer


def test_leads_campaigns_and_pipelines_from_the_document_replace_those_held() -> None:
    """The document's lead, campaign and pipeline of an id win over the repository's."""
    repository = open_repository(None)
    repository.save_all(
        [Lead("lead-1", "old"), Campaign("cmp-1", "old"), attrs.evolve(REGIONAL, name="old")]
    )
    load_text(dump_text(sample_repository()), into=repository)
    assert repository.get_lead("lead-1") == LEAD
    assert repository.get_campaign("cmp-1") == CAMPAIGN
    assert repository.get_pipeline("regional") == REGIONAL


# -- bad input ---------------------------------------------------------------------------


def test_text_that_is_not_json_is_a_deserialization_error() -> None:
    """Not JSON: a DeserializationError saying so, with json's line and column."""
    with pytest.raises(DeserializationError, match=r"not valid JSON.*line 1 column"):
        load_text("{format: oppcore}")


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([1, 2], "Expected a JSON object, not [1, 2]. @ $"),
        ({"version": 1}, "Expected 'oppcore-document', not None. @ $.format"),
        ({"format": "oppcore-journal", "version": 1}, "not 'oppcore-journal'"),
        ({"format": "oppcore-document", "version": 2}, "version 1 documents, not 2"),
        ({"format": "oppcore-document", "version": "1"}, "not '1'"),
        ({"format": "oppcore-document", "version": True}, "not True"),
        ({"format": "oppcore-document", "version": 1, "deals": []}, "Unknown key 'deals'"),
        (
            {"format": "oppcore-document", "version": 1, "leads": {}},
            "Expected a list, not {}. @ $.leads",
        ),
    ],
)
def test_wrong_shape_format_or_version_is_refused(document: Any, words: str) -> None:
    """The top of the document is checked first, and the message names what is wrong."""
    assert words in refused(document)


def set_in(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (
            ("opportunities", 0, "events", 2, "at"),
            "2026-01-08T14:00:00",
            ["opportunities[0].events[2].at", "'2026-01-08T14:00:00'", "naive"],
        ),
        (
            ("opportunities", 1, "events", 0, "amount"),
            {"amount": "12,50", "currency": "USD"},
            ["opportunities[1].events[0].amount", "'12,50'"],
        ),
        (
            ("opportunities", 1, "events", 0, "amount"),
            {"amount": 12.5, "currency": "USD"},
            ["opportunities[1].events[0].amount", "must be a string"],
        ),
        (
            ("opportunities", 1, "events", 0, "currency"),
            "XXY",
            ["opportunities[1].events[0].currency", "'XXY'"],
        ),
        (
            ("opportunities", 0, "events", 1, "event"),
            "Promoted",
            ["opportunities[0].events[1]", "'Promoted'", "not one of"],
        ),
        (
            ("opportunities", 0, "events", 0, "line_items", 0, "quantity"),
            "-1",
            ["opportunities[0].events[0].line_items[0].quantity", "'-1'"],
        ),
        (
            ("opportunities", 2, "events", 1, "opportunity_id"),
            "opp-z",
            ["opportunities[2].events[1].opportunity_id", "'opp-z'"],
        ),
        (
            ("opportunities", 0, "events", 3, "version"),
            7,
            ["opportunities[0].events[3]", "Event version 7"],
        ),
        (("opportunities", 0, "id"), "  ", ["opportunities[0].id", "'  '"]),
        (("opportunities", 0, "id"), "lead:opp-a", ["opportunities[0].id", "'lead:opp-a'"]),
        (("opportunities", 0, "events"), [], ["opportunities[0].events", "list of events"]),
        (("leads", 0, "created_at"), "yesterday", ["leads[0].created_at", "'yesterday'"]),
        (("campaigns", 0, "end"), "2025-12-01", ["campaigns[0]", "ends 2025-12-01"]),
        (("pipelines", 0, "stages", 2, "probability"), "90", ["pipelines[0]", "100"]),
        (
            ("opportunities", 1, "id"),
            "opp-a",
            ["opportunities[1].id", "appears twice", "opportunities[0]"],
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_path_and_value(
    path: tuple[Any, ...], value: Any, words: list[str]
) -> None:
    """Each structural problem is an ``errors`` line with the path and the bad value."""
    document = set_in(sample_document(), path, value)
    if path[-1] == "id" and value == "opp-a":
        document["opportunities"][1]["events"] = document["opportunities"][0]["events"]
    message = refused(document)
    for word in words:
        assert word in message


def test_a_missing_field_and_an_extra_field_are_both_reported() -> None:
    """Every problem in a deal is listed, each at its own path."""
    document = sample_document()
    opened = document["opportunities"][0]["events"][0]
    del opened["name"]
    opened["colour"] = "red"
    message = refused(document)
    lines = [line.strip() for line in message.splitlines()]
    assert "This required field is missing. @ $.opportunities[0].events[0].name" in lines
    assert "Unknown field(s) 'colour'. @ $.opportunities[0].events[0]" in lines


def test_a_history_that_does_not_replay_names_the_event_that_breaks_it() -> None:
    """A move from a stage the deal is not in is refused at that event."""
    document = set_in(sample_document(), ("opportunities", 0, "events", 3, "from_stage"), "wait")
    message = refused(document)
    assert message.splitlines()[1].endswith("@ $.opportunities[0].events[3]")
    assert "'wait'" in message


def test_the_report_stops_after_twenty_problems() -> None:
    """A thoroughly broken document gives a bounded message, not one line per problem."""
    document = sample_document()
    deal = document["opportunities"][2]
    document["opportunities"] = [
        {**deal, "id": f"opp-{i}", "events": [{**deal["events"][0], "at": "x"}]} for i in range(500)
    ]
    message = refused(document)
    assert "20 problem(s) (reading stopped there)" in message
    assert len(message.splitlines()) == 21


def test_nothing_is_saved_when_any_part_of_the_document_is_bad() -> None:
    """A bad last deal means no pipeline, lead or deal from the document is saved."""
    document = set_in(sample_document(), ("opportunities", 2, "events", 1, "at"), "bad")
    repository = open_repository(None)
    with pytest.raises(DeserializationError):
        load_json(io.StringIO(json.dumps(document)), into=repository)
    assert list(repository.store.read_all()) == []


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.sampled_from(["", "2026-01-05T09:00:00", "Won", "default", "1.5", "THB"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    )


def places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path in a JSON value, the root's children first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from places(item, (*path, index))


SAMPLE_TEXT = dump_text(sample_repository())
SAMPLE_PLACES = list(places(json.loads(SAMPLE_TEXT)))


@settings(max_examples=150)
@given(
    where=st.sampled_from(SAMPLE_PLACES),
    value=json_values(),
    delete=st.booleans(),
)
def test_any_damaged_document_loads_or_is_a_deserialization_error(
    where: tuple[Any, ...], value: Any, delete: bool
) -> None:
    """Replace or delete any part of a valid document: a repository or a DeserializationError."""
    document = json.loads(SAMPLE_TEXT)
    if delete:
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        del parent[where[-1]]
    else:
        set_in(document, where, value)
    result: Repository | DeserializationError
    try:
        result = load_document(document)
    except DeserializationError as exc:
        result = exc
    except OppcoreError as exc:  # pragma: no cover - the message explains
        pytest.fail(f"{type(exc).__name__}, not DeserializationError: {exc}")
    assert isinstance(result, Repository) or str(result).strip()


PREFIX = '{"format":"oppcore-document","version":1,'


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000 + "]" * 200_000,
        PREFIX + '"leads":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"format":"oppcore-document","version":' + "9" * 1_000_000 + "}",
        PREFIX + '"leads":[{"id":"x","name":"' + "ก" * 2_000_000 + '"}]}',
        PREFIX + '"campaigns":[{"id":"c","name":"c","budgeted_cost":'
        '{"amount":"1e999999999","currency":"THB"}}]}',
        PREFIX + '"pipelines":[{"id":"p","name":"p","stages":[{"key":"k","label":"k",'
        '"probability":1e999999999}]}]}',
        PREFIX + '"leads":[{"id":"x","name":NaN}]}',
        PREFIX + '"leads":[{"id":"x","name":' + "[" * 900 + "]" * 900 + "}]}",
    ],
    ids=[
        "deep",
        "deep-inside",
        "huge-int",
        "huge-text",
        "huge-exponent",
        "huge-float",
        "nan",
        "deep-field",
    ],
)
def test_hostile_documents_are_refused_quickly(text: str) -> None:
    """Deep nesting, huge numbers and huge strings are DeserializationErrors within seconds."""
    started = time.perf_counter()
    with pytest.raises(DeserializationError):
        load_text(text)
    assert time.perf_counter() - started < 10


def test_a_file_that_is_not_utf8_is_a_deserialization_error(tmp_path: Path) -> None:
    """Latin-1 bytes are refused as text that is not UTF-8, not a UnicodeDecodeError."""
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"format":"oppcore-document","version":1,"leads":[{"id":"\xe9"}]}')
    with pytest.raises(DeserializationError, match="not UTF-8"):
        load_json(path)


def test_a_missing_file_is_a_storage_error(tmp_path: Path) -> None:
    """Reading a path that does not exist raises StorageError (an OSError), naming it."""
    with pytest.raises(StorageError, match=r"nothing\.json"):
        load_json(tmp_path / "nothing.json")


def test_writing_into_a_missing_folder_is_a_storage_error(tmp_path: Path) -> None:
    """dump_json to a path in a folder that does not exist raises StorageError."""
    with pytest.raises(StorageError):
        dump_json(sample_repository(), tmp_path / "absent" / "export.json")
    assert list(tmp_path.iterdir()) == []


def test_a_binary_file_for_writing_is_a_validation_error() -> None:
    """dump_json writes text; a bytes sink gets a message saying to open it in text mode."""
    with pytest.raises(ValidationError, match="text mode"):
        dump_json(sample_repository(), io.BytesIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 42, b"{}", object()])
def test_dump_and_load_refuse_what_is_not_a_file(bad: Any) -> None:
    """Neither a path nor a file: ValidationError."""
    with pytest.raises(ValidationError):
        dump_json(sample_repository(), bad)
    with pytest.raises(ValidationError):
        load_json(bad)


def test_dump_takes_a_repository_and_load_into_takes_one() -> None:
    """Anything else is a ValidationError naming it."""
    with pytest.raises(ValidationError, match="Repository"):
        dump_json([], io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Repository"):
        load_text(SAMPLE_TEXT, into="memory")  # type: ignore[arg-type]


# -- the schema --------------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The published schema is itself valid, and says which draft it follows."""
    schema: Any = validator().schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "pipeline" in schema["$defs"]["Opened"]["description"]


def test_the_schema_accepts_the_sample_and_documents_with_inline_pipelines() -> None:
    """What dump_json writes validates, pipelines by id or whole."""
    document = sample_document()
    assert validator().is_valid(document)
    document["opportunities"][0]["events"][0]["pipeline"] = Pipeline.default().to_dict()
    assert validator().is_valid(document)
    assert validator().is_valid({"format": "oppcore-document", "version": 1})


def without(key: str) -> Callable[[dict[str, Any]], Any]:
    def remove(target: dict[str, Any]) -> None:
        del target[key]

    return remove


BROKEN: dict[str, Callable[[dict[str, Any]], Any]] = {
    "no format": without("format"),
    "version 2": lambda d: d.update(version=2),
    "an extra top-level key": lambda d: d.update(deals=[]),
    "an amount as a number": lambda d: d["opportunities"][1]["events"][0].update(
        amount={"amount": 4821, "currency": "USD"}
    ),
    "a naive time": lambda d: d["opportunities"][0]["events"][1].update(at="2026-01-08T09:00:00"),
    "a date for a time": lambda d: d["leads"][0].update(created_at="2026-01-08"),
    "an unknown event": lambda d: d["opportunities"][0]["events"][1].update(event="Promoted"),
    "a Won with a probability": lambda d: d["opportunities"][0]["events"][3].update(
        probability="100"
    ),
    "an Opened without a pipeline": lambda d: without("pipeline")(
        d["opportunities"][0]["events"][0]
    ),
    "history not starting with Opened": lambda d: d["opportunities"][0]["events"].pop(0),
    "no events": lambda d: d["opportunities"][0].update(events=[]),
    "a blank lead id": lambda d: d["leads"][0].update(id=" "),
    "a stage outcome of maybe": lambda d: d["pipelines"][0]["stages"][0].update(outcome="maybe"),
    "a line kind of gift": lambda d: d["opportunities"][0]["events"][0]["line_items"][0].update(
        kind="gift"
    ),
    "a version of zero": lambda d: d["opportunities"][0]["events"][0].update(version=0),
    "a change of an unknown field": lambda d: d["opportunities"][0]["events"][2].update(
        fields=["colour"]
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_schema_refuses_broken_documents(name: str) -> None:
    """Each broken document fails schema validation (and load_json refuses it too)."""
    document = sample_document()
    BROKEN[name](document)
    assert not validator().is_valid(document)
    with pytest.raises(DeserializationError):
        load_document(document)


def test_the_schema_asks_for_the_canonical_forms_dump_json_writes() -> None:
    """The loader also takes a lower-case currency or a whole-number quantity; the schema,
    which describes what dump_json writes, asks for the canonical form."""
    document = sample_document()
    line = document["opportunities"][0]["events"][0]["line_items"][0]
    line["quantity"] = 3
    line["unit_price"]["currency"] = "thb"
    assert not validator().is_valid(document)
    assert load_document(document).get("opp-a") == sample_deals()[0]
