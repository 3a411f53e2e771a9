"""Cases from real CRM systems (Odoo, SuiteCRM, open-mercato, Maven CRM) the analytics must reproduce."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from oppcore import (
    Campaign,
    FixedClock,
    ForecastCategory,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
)
from oppcore.analytics import campaign_effectiveness, effectiveness, forecast, sales_cycle

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _usd(amount: str) -> Money:
    return Money(amount, "USD")


# -- 1. Odoo PR 32011 ---------------------------------------------------------------------


def test_odoo_pr_32011_weighted_pipeline_is_the_sum_of_each_deals_expected_revenue() -> None:
    """Deals of 100 at 99 % and 200 at 0 % weigh 99 in all, not 300 x the mean probability (148.5)."""
    clock = FixedClock(START)
    opps = [
        Opportunity.open(
            name="Odoo lead 1",
            amount=_usd("100"),
            probability=99,
            expected_close=date(2026, 3, 10),
            clock=clock,
        ),
        Opportunity.open(
            name="Odoo lead 2",
            amount=_usd("200"),
            probability=0,
            expected_close=date(2026, 3, 20),
            clock=clock,
        ),
    ]

    [row] = forecast(opps)
    [group] = effectiveness(opps, by=lambda opp: "all")

    assert row.weighted == _usd("99")
    assert row.pipeline == _usd("300")
    assert group.weighted == _usd("99")


# -- 2. SuiteCRM's ROI --------------------------------------------------------------------


def test_suitecrm_roi_counts_the_campaign_cost_once_not_once_per_won_deal() -> None:
    """A campaign that cost 50 and won two deals of 100 has ROI 3 (300 %), not 1 (100 %)."""
    clock = FixedClock(START)
    campaign = Campaign("fair-2026", "Trade fair", actual_cost=_usd("50"))
    opps = [
        Opportunity.open(
            name=f"Fair deal {n}", amount=_usd("100"), campaign_id="fair-2026", clock=clock
        ).win(clock=clock)
        for n in (1, 2)
    ]

    [row] = campaign_effectiveness(opps, [campaign])

    assert row.won_revenue == _usd("200")
    assert row.cost == _usd("50")
    assert row.roi == Decimal(3)
    assert row.cost_per_won == _usd("25")


# -- 3. open-mercato: closed deals in the open pipeline -------------------------------------


def _commit_pipeline() -> Pipeline:
    return Pipeline(
        id="with-commit",
        name="With a commit stage",
        stages=(
            Stage("qualify", "Qualify", 20),
            Stage("proposal", "Proposal", 60, forecast_category=ForecastCategory.BEST_CASE),
            Stage("commit", "Commit", 90, forecast_category=ForecastCategory.COMMIT),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("lost", "Lost", 0, Outcome.LOST),
        ),
    )


def test_a_closed_deal_never_counts_in_the_open_pipeline_of_its_expected_close_period() -> None:
    """Won and lost deals expected to close in March add nothing to March's open columns (41.0M, not 90.5M)."""
    clock = FixedClock(START)
    pipeline = _commit_pipeline()
    march = date(2026, 3, 15)

    def deal(name: str, millions: str, stage: str) -> Opportunity:
        return Opportunity.open(
            name=name,
            pipeline=pipeline,
            stage=stage,
            amount=_usd(str(Decimal(millions) * 1_000_000)),
            expected_close=march,
            clock=clock,
        )

    open_deals = [deal("Qualify", "11.0", "qualify"), deal("Proposal", "20.0", "proposal")]
    open_deals.append(deal("Commit", "10.0", "commit"))
    clock.advance(timedelta(days=60))  # the closed ones close in March too: 2026-03-06
    closed = [
        deal("Won in March", "30.0", "commit").win(clock=clock),
        deal("Lost in March", "19.5", "proposal").lose(clock=clock),
    ]

    [row] = forecast(open_deals + closed)

    assert row.period is not None
    assert row.period.label == "2026-03"
    assert row.open_count == 3
    assert row.pipeline == _usd("41000000")
    assert row.best_case == _usd("20000000")
    assert row.commit == _usd("10000000")
    assert row.weighted == _usd("23200000")  # 11M x 20 % + 20M x 60 % + 10M x 90 %
    assert (row.won_count, row.won, row.lost_count) == (1, _usd("30000000"), 1)


def test_a_closed_deal_never_counts_in_a_groups_open_pipeline() -> None:
    """Effectiveness counts a won deal's amount as won revenue only, and a lost deal's nowhere."""
    clock = FixedClock(START)
    opps = [
        Opportunity.open(name="Open", type="new", amount=_usd("41"), clock=clock),
        Opportunity.open(name="Won", type="new", amount=_usd("30"), clock=clock).win(clock=clock),
        Opportunity.open(name="Lost", type="new", amount=_usd("19.5"), clock=clock).lose(
            clock=clock
        ),
    ]

    [row] = effectiveness(opps, by="type")

    assert row.pipeline == _usd("41")
    assert row.weighted == _usd("4.1")  # the default pipeline's first stage: 10 %
    assert row.won_revenue == _usd("30")


# -- 4. Maven CRM -------------------------------------------------------------------------

MAVEN_PIPELINE = Pipeline(
    id="maven",
    name="Maven CRM",
    stages=(
        Stage("prospecting", "Prospecting", 10),
        Stage("engaging", "Engaging", 50),
        Stage("won", "Won", 100, Outcome.WON),
        Stage("lost", "Lost", 0, Outcome.LOST),
    ),
    transitions={"prospecting": ["engaging"], "engaging": ["won", "lost"]},
)

#: When the deals with no engage date (all of them Prospecting) are opened.
MAVEN_UNDATED = datetime(2017, 1, 1, tzinfo=timezone.utc)


def _midnight_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _maven_deal(row: dict[str, str]) -> Opportunity:
    engaged = row["engage_date"]
    clock = FixedClock(_midnight_utc(engaged) if engaged else MAVEN_UNDATED)
    opp = Opportunity.open(
        id=row["opportunity_id"],
        name=f"{row['account'] or 'Unknown account'} {row['product']}",
        pipeline=MAVEN_PIPELINE,
        stage="engaging" if engaged else "prospecting",
        type=row["product"],
        owner=row["sales_agent"],
        account=row["account"] or None,
        clock=clock,
    )
    if row["close_date"]:
        clock.set(_midnight_utc(row["close_date"]))
        if row["close_value"]:
            opp = opp.update(amount=_usd(row["close_value"]), clock=clock)
        opp = opp.win(clock=clock) if row["deal_stage"] == "Won" else opp.lose(clock=clock)
    return opp


def _read_maven(folder: Path) -> list[Opportunity]:
    with (folder / "maven_crm" / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        return [_maven_deal(row) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def _maven_cache() -> dict[Path, list[Opportunity]]:
    """The Maven deals of this module, built once (the folder comes from ``shared_data``)."""
    return {}


@pytest.fixture
def maven(shared_data: Path, _maven_cache: dict[Path, list[Opportunity]]) -> list[Opportunity]:
    """The 8,800 Maven CRM deals; skips when the shared data folder is absent."""
    if shared_data not in _maven_cache:
        _maven_cache[shared_data] = _read_maven(shared_data)
    return _maven_cache[shared_data]


def _percent(fraction: Decimal | None) -> Decimal:
    assert fraction is not None
    return round(fraction * 100, 2)


def test_maven_loads_all_8800_deals_as_open_won_and_lost(maven: list[Opportunity]) -> None:
    """The data set opens as 2,089 open (Prospecting and Engaging), 4,238 won and 2,473 lost deals."""
    [row] = effectiveness(maven, by=lambda opp: "all")

    assert len(maven) == 8800
    assert (row.opportunities, row.open, row.won, row.lost) == (8800, 2089, 4238, 2473)


def test_maven_win_rate_is_63_15_percent_of_closed_and_48_16_percent_of_all(
    maven: list[Opportunity],
) -> None:
    """Both published win-rate definitions: won / (won + lost) and won / all opportunities."""
    [row] = effectiveness(maven, by=lambda opp: "all")

    assert _percent(row.win_rate) == Decimal("63.15")
    assert _percent(row.win_rate_all) == Decimal("48.16")


def test_maven_won_revenue_is_10_005_534_with_an_average_won_deal_of_2_360_91(
    maven: list[Opportunity],
) -> None:
    """Won revenue and the average won deal, by effectiveness and by the forecast's won column."""
    [row] = effectiveness(maven, by=lambda opp: "all")
    by_quarter = forecast(maven, period="quarter")

    assert row.won_revenue == _usd("10005534")
    assert row.avg_won_deal is not None
    assert row.avg_won_deal.rounded() == _usd("2360.91")
    assert sum(r.won for r in by_quarter if r.won is not None) == _usd("10005534")
    assert sum(r.won_count for r in by_quarter) == 4238


def test_maven_mean_sales_cycle_is_51_78_days_over_won_and_47_99_over_closed(
    maven: list[Opportunity],
) -> None:
    """Both published sales-cycle definitions, engage date to close date."""
    won = sales_cycle(maven, basis="won")
    closed = sales_cycle(maven, basis="closed")
    [row] = effectiveness(maven, by=lambda opp: "all")

    assert (won.count, closed.count) == (4238, 6711)
    assert won.mean_days is not None
    assert closed.mean_days is not None
    assert round(won.mean_days, 2) == Decimal("51.78")
    assert round(closed.mean_days, 2) == Decimal("47.99")
    assert row.avg_cycle_days == won.mean_days
