"""CSV files oppcore cannot be tricked by: large cells, hostile files, formula injection.

Issue 11, cases 10 (large cells, the csv module's field limit) and 14 (CSV formula injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oppcore import FixedClock, LineItem, Money, Opportunity, Pipeline, ValidationError
from oppcore.analytics import effectiveness
from oppcore.analytics.table import FORMULA_QUOTE, FORMULA_STARTS, plain_text
from oppcore.io import OPPCORE_CSV, SALESFORCE, read_csv, write_csv
from oppcore.io.csvfiles import (
    HISTORY_COLUMNS,
    MAX_ROW_CHARS,
    OPPCORE_COLUMNS,
    exported_pipelines,
    read_rates,
)

UTC = timezone.utc
CLOCK_START = datetime(2026, 1, 5, 9, tzinfo=UTC)
#: The import's time: after every deal the tests make.
LATER = FixedClock(datetime(2026, 6, 1, tzinfo=UTC))
#: What OWASP's CSV Injection page and the issue name as cells a spreadsheet runs.
PAYLOADS = ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\n=1+1")
#: Columns of write_csv that hold numbers, written as they are.
NUMBER_COLUMNS = {"amount", "probability"}
HISTORY_NUMBER_COLUMNS = {"version", "amount", "probability", "expected_revenue"}


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """The csv module's process-wide field limit set to ``limit``, then put back."""
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _write_and_read(deals: list[Opportunity], folder: Path) -> tuple[list[list[str]], Path]:
    """The rows of the file write_csv wrote (parsed by the csv module alone), and its path."""
    path = folder / "deals.csv"
    write_csv(deals, path)
    with _field_limit(MAX_ROW_CHARS), open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle)), path


def _starts_a_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_STARTS)


# -- case 10: large cells ------------------------------------------------------------------


def _deal_with_lines(count: int) -> Opportunity:
    clock = FixedClock(CLOCK_START)
    items = [
        LineItem(
            f"Product {n:04d}",
            Money(f"{n}.25", "THB"),
            quantity=str(n % 7 + 1),
            discount="2.5",
            description=f"ส่วนประกอบ {n}",
        )
        for n in range(count)
    ]
    return Opportunity.open(name="A big quote", line_items=items, clock=clock)


def test_a_deal_with_1000_line_items_round_trips_through_write_csv_and_read_csv(
    tmp_path: Path,
) -> None:
    """Its line items cell is over 200,000 characters, past the csv module's 131,072, and reads
    back to the same items and the same exact amount."""
    deal = _deal_with_lines(1000)

    rows, path = _write_and_read([deal], tmp_path)
    result = read_csv(path, mapping=OPPCORE_CSV, clock=LATER)

    assert len(rows[1][OPPCORE_COLUMNS.index("line_items")]) > 200_000
    assert result.rejected == ()
    [back] = result.opportunities
    assert back.line_items == deal.line_items
    assert back.amount == deal.amount


def test_large_cells_read_whatever_field_limit_the_program_set() -> None:
    """A program that lowered the csv module's limit still reads a 200,000-character cell;
    one that raised it keeps its larger limit."""
    deal = _deal_with_lines(1000)
    buffer = io.StringIO(newline="")
    write_csv([deal], buffer)

    for limit in (1_000, MAX_ROW_CHARS * 2):
        with _field_limit(limit):
            buffer.seek(0)
            [back] = read_csv(buffer, mapping=OPPCORE_CSV, clock=LATER).opportunities
            assert back.line_items == deal.line_items
            assert csv.field_size_limit() == max(limit, MAX_ROW_CHARS)


class EndlessCell(io.RawIOBase):
    """A hostile file: a header, then a row whose quoted cell never ends.  It counts what is
    read from it, so a test can tell that the reader stopped."""

    def __init__(self, header: bytes, filler: bytes) -> None:
        self.head = header
        self.filler = filler
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.given > 6 * MAX_ROW_CHARS:
            # A reader that has not stopped by now never will: fail the test, not the machine.
            raise OSError("the reader went on reading a row that never ends")
        view = memoryview(buffer).cast("B")
        data = self.head[: len(view)]
        self.head = self.head[len(data) :]
        need = len(view) - len(data)
        data += (self.filler * (need // len(self.filler) + 1))[:need]
        view[: len(data)] = data
        self.given += len(data)
        return len(data)


@pytest.mark.parametrize(
    ("filler", "text"),
    [(b"x", False), (b"x", True), (b"y" * 999 + b"\n", False)],
    ids=["one-line-binary", "one-line-text", "many-lines-binary"],
)
def test_a_row_without_end_is_refused_naming_its_line_after_reading_a_bounded_amount(
    filler: bytes, text: bool
) -> None:
    """A cell that never ends (a 1 GB cell, or an endless one) raises ValidationError naming
    line 2 once a row holds MAX_ROW_CHARS characters, instead of filling the memory or hanging."""
    hostile = EndlessCell(b"id,name,stage,created_at\n" + b'd1,"', filler)
    binary = io.BufferedReader(hostile, buffer_size=2**20)
    handle: IO[bytes] | IO[str] = (
        io.TextIOWrapper(binary, encoding="utf-8", newline="") if text else binary
    )

    with pytest.raises(ValidationError, match=r"at line 2; oppcore reads rows of up to 16,777,216"):
        read_csv(handle, mapping=OPPCORE_CSV, clock=LATER)

    assert hostile.given <= 4 * MAX_ROW_CHARS + 2**20


def test_a_row_longer_than_the_limit_in_a_file_is_refused_naming_its_line(tmp_path: Path) -> None:
    """A file on disk whose third line holds a cell over MAX_ROW_CHARS raises, naming line 3."""
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("id,name,stage,created_at\r\nd1,Deal,wait,2026-01-05T00:00:00+00:00\r\n")
        handle.write(f'd2,"{"x" * (MAX_ROW_CHARS + 1)}",wait,2026-01-05T00:00:00+00:00\r\n')

    with pytest.raises(ValidationError, match=r"'.*big\.csv' has a row of more than .* at line 3"):
        read_csv(path, mapping=OPPCORE_CSV, clock=LATER)


def test_exported_pipelines_reads_an_export_with_large_cells_and_quoted_ids(
    tmp_path: Path,
) -> None:
    """The pipeline ids of an export (what `oppcore import` picks the pipeline by) come back as
    the deals name them, past a 200,000-character cell and the quote before "-quoted"."""
    clock = FixedClock(CLOCK_START)
    quoted = Pipeline.from_dict({**Pipeline.default().to_dict(), "id": "-quoted"})
    deals = [
        _deal_with_lines(1000),
        Opportunity.open(name="Other", pipeline=quoted, clock=clock),
    ]
    path = tmp_path / "export.csv"
    write_csv(deals, path)

    assert exported_pipelines(path) == {"default", "-quoted"}


RATES = "base,quote,date,rate,source\r\nUSD,THB,2026-01-01,35.5,{note}\r\nEUR,THB,2026-01-01,38,bank\r\n"


def test_a_rates_file_with_a_200000_character_cell_reads(tmp_path: Path) -> None:
    """read_rates (what `--rates` reads) takes a note column of 200,000 characters."""
    path = tmp_path / "rates.csv"
    path.write_text(RATES.format(note="x" * 200_000), encoding="utf-8")

    rates = read_rates(path)

    assert rates.rate("USD", "THB", on=date(2026, 3, 1)) == Decimal("35.5")
    assert rates.rate("EUR", "THB", on=date(2026, 3, 1)) == Decimal("38")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("base,quote,date,rate\nUSD,THB,soon,35\n", ["line 2", "'soon'"]),
        ("base,quote,date,rate\nUSD,THB,2026-01-01," + "9" * 200_000 + "\n", ["line 2", "Rate"]),
        ("base,quote,date,rate\nUSD,THB,2026-01-01,-1\n", ["line 2", "positive"]),
        ("base,quote,date,rate\nUSD,THB,2026-01-01\n", ["line 2", "3 cells"]),
        ("base,quote,when,rate\nUSD,THB,2026-01-01,35\n", ["no column 'date'"]),
        ("base,quote,date,rate\nUSD,THB,2026-01-01,35\nUSD,THB,2026-01-01,36\n", ["twice"]),
    ],
    ids=["bad-date", "huge-rate", "negative", "short-row", "no-date-column", "twice"],
)
def test_a_bad_rates_file_is_a_validation_error_naming_the_file_and_line(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    """Every fault of a rates file is one ValidationError naming the file (and the line)."""
    path = tmp_path / "rates.csv"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ValidationError) as caught:
        read_rates(path)

    message = str(caught.value)
    assert "rates.csv'" in message
    for needle in needles:
        assert needle in message
    assert len(message) < 600


# -- case 14: formula injection ------------------------------------------------------------


def test_write_csv_quotes_formula_text_and_leaves_negative_amounts_numbers(tmp_path: Path) -> None:
    """=cmd, +1+1, -2+3 and @SUM in text fields get a leading quote; an amount of -2 stays -2;
    read_csv with OPPCORE_CSV gives every value back exactly."""
    clock = FixedClock(CLOCK_START)
    deals = [
        Opportunity.open(
            name=payload,
            id=f"d{n}-{payload}" if n % 2 else payload,
            owner=payload,
            account=payload,
            type=payload,
            description=payload,
            amount=Money("-2", "THB"),
            clock=clock,
        ).lose(reason=payload, clock=clock)
        for n, payload in enumerate(PAYLOADS)
    ]

    rows, path = _write_and_read(deals, tmp_path)
    result = read_csv(path, mapping=OPPCORE_CSV, clock=LATER)

    header, body = rows[0], rows[1:]
    for row in body:
        cells = dict(zip(header, row, strict=True))
        assert cells["amount"] == "-2"
        for column in ("name", "owner", "account", "type", "description", "lost_reason"):
            assert cells[column].startswith(FORMULA_QUOTE)
            assert cells[column][1:] in PAYLOADS
    assert result.rejected == ()
    for back, deal in zip(result.opportunities, deals, strict=True):
        fields = ("id", "name", "owner", "account", "type", "description", "lost_reason")
        assert [getattr(back, f) for f in fields] == [getattr(deal, f) for f in fields]
        assert back.amount == Money("-2", "THB")


def test_history_rows_quote_formula_text_too() -> None:
    """write_csv(history=True) quotes the deal's id and who changed it; numbers stay bare."""
    clock = FixedClock(CLOCK_START)
    deal = Opportunity.open(
        name="Deal", id="=1+1", amount=Money("-2", "THB"), by="@ploy", clock=clock
    )
    buffer = io.StringIO(newline="")

    write_csv([deal], buffer, history=True)

    header, row = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    cells = dict(zip(header, row, strict=True))
    assert header == list(HISTORY_COLUMNS)
    assert (cells["opportunity_id"], cells["by"], cells["amount"]) == ("'=1+1", "'@ploy", "-2")
    assert not any(
        _starts_a_formula(cell)
        for column, cell in cells.items()
        if column not in HISTORY_NUMBER_COLUMNS
    )


def test_only_the_quote_oppcore_added_is_removed() -> None:
    """A quote before ordinary text is a value's own, and a file another tool wrote keeps its
    quotes: SALESFORCE does not remove them."""
    text = (
        "id,name,stage,created_at\r\n"
        "d1,'Quoted,wait,2026-01-05T00:00:00+00:00\r\n"
        "d2,''=1,wait,2026-01-05T00:00:00+00:00\r\n"
    )
    first, second = read_csv(
        io.StringIO(text, newline=""), mapping=OPPCORE_CSV, clock=LATER
    ).opportunities
    assert (first.name, second.name) == ("'Quoted", "'=1")

    salesforce = (
        "Id,Name,StageName,CloseDate,CreatedDate\r\n"
        "006A,'=1+1,Prospecting,2026-06-30,2026-01-05T00:00:00Z\r\n"
    )
    [deal] = read_csv(
        io.StringIO(salesforce, newline=""), mapping=SALESFORCE, clock=LATER
    ).opportunities
    assert deal.name == "'=1+1"


#: Text with what a spreadsheet reacts to at the start: formula characters, quotes, tabs and
#: line breaks, then anything (Thai, separators, more quotes).
_ANY_CHAR = st.one_of(
    st.sampled_from((*FORMULA_STARTS, FORMULA_QUOTE, '"', ",", ";", " ", "ก")),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
)
TEXTS = st.builds(
    lambda start, rest: start + rest,
    st.sampled_from(("", *FORMULA_STARTS, FORMULA_QUOTE, FORMULA_QUOTE * 2, "'=", "-2", " ")),
    st.text(_ANY_CHAR, max_size=12),
)
NONBLANK = TEXTS.filter(lambda text: bool(text.strip()))


@st.composite
def risky_deals(draw: st.DrawFn) -> Opportunity:
    """A deal whose every text field may start like a formula."""
    clock = FixedClock(CLOCK_START)
    items = [
        LineItem(
            draw(NONBLANK),
            Money(draw(st.sampled_from(("3.50", "0", "12"))), "THB"),
            description=draw(TEXTS),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    optional = st.one_of(st.none(), NONBLANK)
    opp = Opportunity.open(
        id=draw(NONBLANK),
        name=draw(NONBLANK),
        type=draw(optional),
        campaign_id=draw(optional),
        lead_id=draw(optional),
        lead_source=draw(optional),
        owner=draw(optional),
        account=draw(optional),
        description=draw(TEXTS),
        line_items=items,
        amount=draw(st.one_of(st.none(), st.just(Money("-2", "THB")))),
        currency="THB",
        clock=clock,
    )
    clock.advance(timedelta(days=1))
    if draw(st.booleans()):
        opp = opp.lose(reason=draw(optional), clock=clock)
    return opp


TEXT_FIELDS = (
    "id", "name", "type", "campaign_id", "lead_id", "lead_source", "owner", "account",
    "description", "lost_reason", "line_items", "amount", "amount_is_manual",
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(risky_deals(), min_size=1, max_size=3, unique_by=lambda opp: opp.id))
def test_any_text_round_trips_and_no_text_cell_starts_a_formula(deals: list[Opportunity]) -> None:
    """Every text value (names, descriptions, owner, account, product names, lost reasons)
    reads back exactly through write_csv and read_csv, and no written text cell starts with a
    formula character unless the quote comes first."""
    buffer = io.StringIO(newline="")
    write_csv(deals, buffer)

    rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    header = rows[0]
    for row in rows[1:]:
        for column, cell in zip(header, row, strict=True):
            if column not in NUMBER_COLUMNS:
                assert not _starts_a_formula(cell), (column, cell)
    buffer.seek(0)
    result = read_csv(buffer, mapping=OPPCORE_CSV, clock=LATER)
    assert result.rejected == ()
    for back, deal in zip(result.opportunities, deals, strict=True):
        assert [getattr(back, f) for f in TEXT_FIELDS if f != "line_items"] == [
            getattr(deal, f) for f in TEXT_FIELDS if f != "line_items"
        ]
        assert back.line_items == deal.line_items


@settings(max_examples=100, deadline=None)
@given(st.lists(NONBLANK, min_size=1, max_size=4, unique=True))
def test_table_to_csv_quotes_formula_text_and_leaves_numbers(owners: list[str]) -> None:
    """An analytics table keyed by owners that look like formulas: each key cell is safe and
    is exactly the owner once the added quote is removed; counts and a won -2 stay numbers."""
    clock = FixedClock(CLOCK_START)
    deals = [
        Opportunity.open(name="Deal", owner=owner, amount=Money("-2", "THB"), clock=clock).win(
            clock=clock
        )
        for owner in owners
    ]
    buffer = io.StringIO(newline="")

    effectiveness(deals, by="owner", as_of=LATER.now()).to_csv(buffer)

    rows = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))
    assert sorted(plain_text(row["key"]) for row in rows) == sorted(owners)
    for row in rows:
        assert not _starts_a_formula(row["key"])
        assert row["won"] == "1"
        assert Decimal(row["won_revenue"]) == Decimal("-2")
        assert not row["won_revenue"].startswith(FORMULA_QUOTE)


def test_an_export_with_a_cell_past_the_csv_limit_imports_into_its_own_pipeline(
    tmp_path: Path,
) -> None:
    """``oppcore import`` of an export whose line-items cell is past the csv module's 131,072
    characters still finds the pipeline the file names (here Salesforce's), not a guess."""
    from oppcore import open_repository
    from tests.test_cli import ok, oppcore

    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
    items = [
        LineItem(f"Part {n:04d} " + "x" * 150, Money("10.00", "THB"), quantity=1)
        for n in range(1000)
    ]
    deal = Opportunity.open(
        name="Big", id="big-1", pipeline=Pipeline.salesforce(), line_items=items, clock=clock
    )
    with open_repository(tmp_path / "from.db") as repo:
        repo.save(deal)
    ok(oppcore("export", "--store", "from.db", "--output", "deals.csv", cwd=tmp_path))
    assert max(len(line) for line in (tmp_path / "deals.csv").read_text().splitlines()) > 131_072
    ok(oppcore("import", "deals.csv", "--mapping", "oppcore", "--store", "to.db", cwd=tmp_path))
    with open_repository(tmp_path / "to.db") as repo:
        [back] = repo.opportunities()
    assert back.pipeline.id == Pipeline.salesforce().id
    assert back.stage_key == deal.stage_key
    assert back.amount == deal.amount
