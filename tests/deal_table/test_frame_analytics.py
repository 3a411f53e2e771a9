"""The deal-frame route of the analytics gives exactly the object analytics' rows, on every engine.

The public functions do not take frames yet (issue 12); these tests hold the frame route
(``oppcore.analytics._frames``) to the object results it must equal once they do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import sample
from oppcore.analytics import _frames, effectiveness, forecast, sales_cycle
from oppcore.analytics._common import mean, quantile
from oppcore.frame import deal_frame

pl = pytest.importorskip("polars")
pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")

SAMPLE = sample.generate(opportunities=120)
FRAME = deal_frame(SAMPLE.opportunities)
ENGINES: dict[str, Callable[[], Any]] = {
    "polars": lambda: FRAME,
    "pyarrow": lambda: FRAME.to_arrow(),
    "pandas": lambda: FRAME.to_pandas(use_pyarrow_extension_array=True),
    "duckdb": lambda: duckdb.connect().from_arrow(FRAME.to_arrow()),
}
MOMENTS = [None, datetime(2026, 6, 1, tzinfo=timezone.utc)]


def _valued_on(as_of: datetime | None) -> date:
    return (as_of or datetime(2027, 1, 1, tzinfo=timezone.utc)).date()


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("as_of", MOMENTS)
@pytest.mark.parametrize("grain", ["month", "quarter"])
def test_the_forecast_of_a_frame_is_the_forecast_of_the_deals(
    engine: str, as_of: datetime | None, grain: str
) -> None:
    """Every row, every exact sum, on each engine, now and as of a past day."""
    got = _frames.forecast(
        ENGINES[engine](),
        grain=grain,
        fiscal=None,
        as_of=as_of,
        currency=None,
        rates=None,
        chances={},
        zone=timezone.utc,
        valued_on=_valued_on(as_of),
    )
    want = forecast(SAMPLE.opportunities, period=grain, as_of=as_of)  # type: ignore[arg-type]
    assert got == list(want.rows)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("as_of", MOMENTS)
@pytest.mark.parametrize("by", ["campaign", "owner", "lead_source"])
def test_effectiveness_of_a_frame_is_the_effectiveness_of_the_deals(
    engine: str, as_of: datetime | None, by: str
) -> None:
    """Counts, both win rates, revenue, cycle days and campaign costs agree exactly."""
    campaigns = SAMPLE.campaigns if by == "campaign" else None
    got = _frames.effectiveness(
        ENGINES[engine](),
        by=by,
        known={c.id: c for c in campaigns or ()},
        as_of=as_of,
        currency=None,
        rates=None,
        zone=timezone.utc,
        valued_on=_valued_on(as_of),
    )
    want = effectiveness(SAMPLE.opportunities, by=by, campaigns=campaigns, as_of=as_of)  # type: ignore[arg-type]
    assert got == list(want.rows)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("basis", ["won", "closed"])
def test_the_sales_cycle_of_a_frame_is_the_cycle_of_the_deals(engine: str, basis: str) -> None:
    """Mean, median and p90 from the frame's cycle lengths equal sales_cycle's."""
    lengths = _frames.sales_cycle_lengths(ENGINES[engine](), basis)
    want = sales_cycle(SAMPLE.opportunities, basis=basis)  # type: ignore[arg-type]
    assert len(lengths) == want.count
    assert mean(lengths) == want.mean_days
    assert quantile(lengths, Decimal("0.5")) == want.median_days
    assert quantile(lengths, Decimal("0.9")) == want.p90_days
