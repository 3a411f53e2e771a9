"""``oppcore.frame.deal_frame``: the deal table as a dataframe, money exact on every backend."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import FixedClock, LineItem, Money, Opportunity, ValidationError, open_repository
from oppcore.domain.money import EXACT
from oppcore.domain.versions import COLUMNS, versions
from oppcore.frame import deal_frame, deal_rows
from tests.strategies import opportunities

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _deal() -> Opportunity:
    clock = FixedClock(T)
    opp = Opportunity.open(name="Chiang Mai Foods", id="opp-1", clock=clock)
    opp = opp.add_line_item(LineItem("POS", Money("12500.05", "THB"), quantity=3), clock=clock)
    return opp.move_to("in_progress", probability="33.333333", clock=clock)


def test_a_deal_frame_has_the_columns_in_table_order_and_exact_money() -> None:
    """Columns follow DealVersion; amount and expected revenue are exact decimals."""
    frame = deal_frame([_deal()])
    assert frame.columns == list(COLUMNS)
    assert frame.schema["amount"] == pl.Decimal(38, 18)
    last = frame.row(-1, named=True)
    assert last["amount"] == Decimal("37500.15")
    assert last["expected_revenue"] == _deal().expected_revenue.amount  # type: ignore[union-attr]
    assert last["valid_from"] == T


@pytest.mark.parametrize("backend", ["polars", "pandas", "pyarrow"])
def test_every_backend_holds_the_same_rows(backend: str) -> None:
    """pandas and pyarrow frames hold exactly the polars frame's values."""
    frame = deal_frame([_deal()], backend=backend)
    as_polars = pl.from_pandas(frame) if backend == "pandas" else pl.from_arrow(frame)
    if backend == "polars":
        as_polars = frame
    assert as_polars.to_dicts() == deal_frame([_deal()]).to_dicts()


@given(opps=st.lists(opportunities(max_commands=6), max_size=4))
def test_a_frame_row_is_each_deal_version_field_for_field(opps: list[Opportunity]) -> None:
    """Reading a frame back gives every DealVersion of every deal, field for field."""
    rows = [row for opp in opps for row in versions(opp)]
    if not all(_fits(row.amount) and _fits(row.expected_revenue) for row in rows):
        with pytest.raises(ValidationError, match="does not fit a deal frame"):
            deal_frame(opps)
        return
    frame = deal_frame(opps)
    assert len(frame) == len(rows)
    for got, row in zip(frame.iter_rows(named=True), rows, strict=True):
        for name in COLUMNS:
            want = getattr(row, name)
            assert got[name] == want, name


def _fits(value: Decimal | None) -> bool:
    if value is None:
        return True
    return value == value.quantize(Decimal("1E-18"), context=EXACT) and abs(value) < 10**20


def test_a_value_beyond_eighteen_places_is_refused_naming_the_deal() -> None:
    """Nothing rounds silently: an expected revenue with 19 places names its deal."""
    clock = FixedClock(T)
    line = LineItem(
        "Screw", Money("0.000001", "THB"), quantity=Decimal("0.000001"), discount="1.000001"
    )
    opp = Opportunity.open(name="Tiny", id="opp-tiny", line_items=[line], clock=clock)
    with pytest.raises(ValidationError, match="'opp-tiny' has amount"):
        deal_frame([opp])


def test_a_repository_gives_the_frame_of_its_deals() -> None:
    """deal_frame(repo) is the frame of repo.opportunities()."""
    repo = open_repository()
    repo.save(_deal())
    assert deal_frame(repo).to_dicts() == deal_frame(repo.opportunities()).to_dicts()
    assert len(deal_rows(repo)) == 3


@pytest.mark.parametrize("bad", ["deals", 42, [object()]])
def test_a_frame_of_something_else_is_refused_naming_it(bad: object) -> None:
    """Text, numbers and foreign items are refused with ValidationError."""
    with pytest.raises(ValidationError, match="deal_frame"):
        deal_frame(bad)  # type: ignore[arg-type]


def test_an_unknown_backend_is_refused_naming_it() -> None:
    """backend takes polars, pandas or pyarrow."""
    with pytest.raises(ValidationError, match="'spark'"):
        deal_frame([_deal()], backend="spark")
