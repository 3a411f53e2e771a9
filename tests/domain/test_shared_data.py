"""The domain against real Salesforce-shaped seed data (Fivetran's dbt_salesforce seeds).

The seeds live beside the project in ``../shared/data`` (or ``$OPPCORE_SHARED_DATA``); the
tests skip with a reason when the folder is absent.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

from oppcore import FixedClock, LineItem, Money, Opportunity, Pipeline, ValidationError


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / "fivetran_salesforce_seeds" / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _open(row: dict[str, str]) -> Opportunity:
    created = datetime.fromisoformat(row["created_date"]).replace(tzinfo=timezone.utc)
    if row["is_won"] == "true":
        stage = "closed_won"
    elif row["is_closed"] == "true":
        stage = "closed_lost"
    else:
        stage = "prospecting"
    return Opportunity.open(
        id=row["id"],
        name=row["name"],
        pipeline=Pipeline.salesforce(),
        stage=stage,
        amount=Money(row["amount"], "USD") if row["amount"] else None,
        probability=row["probability"],
        expected_close=datetime.fromisoformat(row["close_date"]).date(),
        clock=FixedClock(created),
    )


def test_salesforce_seed_opportunities_open_except_the_probability_of_1000(
    shared_data: Path,
) -> None:
    """Nine seed deals open as they are; the one with probability 1000 is refused, naming it."""
    opened, refused = [], []
    for row in _rows(shared_data, "sf_opportunity_data.csv"):
        try:
            opened.append(_open(row))
        except ValidationError as exc:
            refused.append((row["probability"], str(exc)))

    assert len(opened) == 9
    assert refused == [("1000", "Probability '1000' is outside 0 to 100.")]
    blank = [opp for opp in opened if opp.amount is None]
    assert len(blank) == 6  # blank amounts import as unknown, not zero
    assert all(opp.expected_revenue is None for opp in blank)
    open_deal = next(opp for opp in opened if opp.is_open)
    assert open_deal.expected_revenue == Money("136500", "USD")  # 210,000 at 65 %
    lost = [opp for opp in opened if opp.is_lost and opp.amount is not None]
    assert lost
    assert all(opp.expected_revenue == Money("0", "USD") for opp in lost)


def test_salesforce_seed_line_totals_are_quantity_times_unit_price(shared_data: Path) -> None:
    """For every seed line with numbers, oppcore's line total equals Salesforce's total_price."""
    checked = 0
    for row in _rows(shared_data, "sf_opportunity_line_item_data.csv"):
        if not (row["quantity"] and row["unit_price"] and row["total_price"]):
            continue
        item = LineItem(
            row["name"] or "line", Money(row["unit_price"], "USD"), quantity=row["quantity"]
        )
        assert item.total == Money(row["total_price"], "USD"), row["id"]
        checked += 1

    assert checked >= 5
