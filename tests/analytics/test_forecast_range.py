"""forecast_range: exact mean and spread, reproducible Monte Carlo quantiles."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import FixedClock, Money, Opportunity, ValidationError
from oppcore.analytics import forecast, forecast_range

CLOCK = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))


def _deal(amount: str, probability: int, close: date | None = date(2026, 2, 10)) -> Opportunity:
    return Opportunity.open(
        name=f"deal {amount} at {probability}",
        amount=Money(amount, "USD"),
        probability=probability,
        expected_close=close,
        clock=CLOCK,
    )


def test_mean_is_the_weighted_pipeline_and_stdev_is_exact() -> None:
    """Mean is sum(a * p); stdev is sqrt(sum(a**2 * p * (1 - p))), computed exactly."""
    deals = [_deal("100", 99), _deal("200", 0), _deal("1000", 50)]

    (row,) = forecast_range(deals, period="month", seed=7)

    assert row.mean == Money("599", "USD")
    assert row.mean == forecast(deals)[0].weighted
    variance = Decimal(100) ** 2 * Decimal("0.99") * Decimal("0.01") + Decimal(1000) ** 2 * Decimal(
        "0.25"
    )
    assert row.stdev is not None
    assert abs(row.stdev.amount**2 - variance) < Decimal("1e-20")


def test_the_same_seed_gives_the_same_quantiles() -> None:
    """Two runs with one seed agree; the quantiles are ordered and within the possible range."""
    deals = [_deal(str(100 * (i + 1)), 10 + 4 * i) for i in range(20)]

    first = forecast_range(deals, seed=42, simulations=2_000)
    second = forecast_range(deals, seed=42, simulations=2_000)

    assert first.rows == second.rows
    quantiles = first[0].quantiles
    low, mid, high = (quantiles[Decimal(q)] for q in ("0.1", "0.5", "0.9"))
    assert Money("0", "USD") <= low <= mid <= high <= Money("21000", "USD")


def test_monte_carlo_matches_the_probability_of_one_deal() -> None:
    """One deal at 30 %: about 70 % of runs bring nothing, so the 0.65 quantile is 0 and 0.75 is all."""
    (row,) = forecast_range(
        [_deal("5000.00", 30)],
        seed=3,
        simulations=10_000,
        quantiles=("0.65", "0.75"),
    )

    assert row.quantiles[Decimal("0.65")] == Money("0", "USD")
    assert row.quantiles[Decimal("0.75")] == Money("5000.00", "USD")


@given(st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 100)), min_size=1, max_size=12))
def test_the_median_of_many_runs_stays_near_the_mean(deals: list[tuple[int, int]]) -> None:
    """With 4,000 runs, the median lies within four standard deviations of the exact mean."""
    opps = [_deal(str(amount), chance) for amount, chance in deals]

    (row,) = forecast_range(opps, seed=11, simulations=4_000, quantiles=("0.5",))

    assert row.mean is not None
    assert row.stdev is not None
    spread = 4 * row.stdev.amount + Decimal(max(amount for amount, _ in deals))
    assert abs(row.quantiles[Decimal("0.5")].amount - row.mean.amount) <= spread


def test_closed_deals_and_deals_without_amount_add_nothing_and_unscheduled_come_last() -> None:
    """Only open deals with an amount are simulated; open deals with no close date make the last row."""
    won = _deal("900", 50).win(clock=CLOCK)
    unknown = Opportunity.open(name="no amount", expected_close=date(2026, 2, 1), clock=CLOCK)
    undated = _deal("300", 50, close=None)

    table = forecast_range([won, unknown, undated, _deal("100", 50)], seed=1, simulations=500)

    assert [row.period.label if row.period else None for row in table] == ["2026-Q1", None]
    assert table[0].mean == Money("50", "USD")
    assert table[1].mean == Money("150", "USD")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"simulations": 0}, "simulations"),
        ({"simulations": 2.5}, "simulations"),
        ({"quantiles": ("1.5",)}, "outside 0 to 1"),
        ({"seed": "abc"}, "seed"),
        ({"period": "fortnight"}, "fortnight"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_error(
    arguments: dict[str, object], message: str
) -> None:
    """Each bad argument raises ValidationError naming it."""
    with pytest.raises(ValidationError, match=message):
        forecast_range([_deal("100", 50)], **arguments)  # type: ignore[arg-type]


def test_two_deals_give_the_four_outcomes_in_their_proportions() -> None:
    """1,000 at 30 % and 2,500 at 50 %: P(0) .35, P(1,000) .15, P(2,500) .35, P(3,500) .15."""
    (row,) = forecast_range(
        [_deal("1000", 30), _deal("2500", 50)],
        seed=9,
        simulations=20_000,
        quantiles=("0.30", "0.42", "0.60", "0.92"),
    )

    assert [row.quantiles[Decimal(q)] for q in ("0.30", "0.42", "0.60", "0.92")] == [
        Money("0", "USD"),
        Money("1000", "USD"),
        Money("2500", "USD"),
        Money("3500", "USD"),
    ]
