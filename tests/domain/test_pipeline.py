"""Pipelines are data checked when built; stock pipelines match their published definitions."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import (
    FixedClock,
    ForecastCategory,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    TransitionError,
    ValidationError,
)

CLOCK_START = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)

OPEN_A = Stage("a", "A", 10)
OPEN_B = Stage("b", "B", 40)
WON = Stage("won", "Won", 100, Outcome.WON)
LOST = Stage("lost", "Lost", 0, Outcome.LOST)


def test_default_pipeline_has_four_stages_with_english_and_thai_labels() -> None:
    """Pipeline.default(): Wait 10, In progress 50, Closed Won 100, Closed Lost 0, labelled en and th."""
    pipeline = Pipeline.default()

    assert pipeline.id == "default"
    assert [(s.key, s.probability, s.forecast_category) for s in pipeline.stages] == [
        ("wait", Decimal(10), ForecastCategory.PIPELINE),
        ("in_progress", Decimal(50), ForecastCategory.BEST_CASE),
        ("closed_won", Decimal(100), ForecastCategory.CLOSED),
        ("closed_lost", Decimal(0), ForecastCategory.OMITTED),
    ]
    assert [s.label_for("th") for s in pipeline.stages] == [
        "รอดำเนินการ",
        "ระหว่างดำเนินการ",
        "ปิดการขายได้",
        "ปิดการขายไม่ได้",
    ]
    assert [s.label_for("en") for s in pipeline.stages] == [
        "Wait",
        "In progress",
        "Closed Won",
        "Closed Lost",
    ]


def test_salesforce_pipeline_has_the_ten_standard_stages() -> None:
    """Pipeline.salesforce(): the ten standard stages with Salesforce's default probabilities."""
    pipeline = Pipeline.salesforce()

    assert pipeline.id == "salesforce"
    assert [(s.label, int(s.probability), s.forecast_category) for s in pipeline.stages] == [
        ("Prospecting", 10, ForecastCategory.PIPELINE),
        ("Qualification", 10, ForecastCategory.PIPELINE),
        ("Needs Analysis", 20, ForecastCategory.PIPELINE),
        ("Value Proposition", 50, ForecastCategory.PIPELINE),
        ("Id. Decision Makers", 60, ForecastCategory.PIPELINE),
        ("Perception Analysis", 70, ForecastCategory.PIPELINE),
        ("Proposal/Price Quote", 75, ForecastCategory.PIPELINE),
        ("Negotiation/Review", 90, ForecastCategory.PIPELINE),
        ("Closed Won", 100, ForecastCategory.CLOSED),
        ("Closed Lost", 0, ForecastCategory.OMITTED),
    ]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ((OPEN_A, OPEN_A, WON, LOST), "two stages keyed 'a'"),
        ((WON, OPEN_A, LOST), "starts with 'won'"),
        ((OPEN_A, LOST), "no won stage"),
        ((OPEN_A, WON), "no lost stage"),
        ((OPEN_A, Stage("won", "Won", 90, Outcome.WON), LOST), "won stages have 100"),
        ((OPEN_A, WON, Stage("lost", "Lost", 5, Outcome.LOST)), "lost stages have 0"),
        ((), "no stages"),
    ],
)
def test_a_malformed_pipeline_is_refused_when_built(
    stages: tuple[Stage, ...], message: str
) -> None:
    """Pipeline checks its stages in the constructor and says what is wrong."""
    with pytest.raises(ValidationError, match=message):
        Pipeline(id="bad", name="Bad", stages=stages)


def test_transitions_must_reach_every_stage_and_let_every_open_stage_close() -> None:
    """With transitions, an unreachable stage or an open dead end is refused."""
    stages = (OPEN_A, OPEN_B, WON, LOST)
    with pytest.raises(ValidationError, match="'b' cannot be reached"):
        Pipeline(id="p", name="P", stages=stages, transitions={"a": ["won", "lost"]})
    with pytest.raises(ValidationError, match="'b' cannot reach a closed stage"):
        Pipeline(id="p", name="P", stages=stages, transitions={"a": ["b", "won", "lost"]})
    with pytest.raises(ValidationError, match="unknown stage 'nowhere'"):
        Pipeline(id="p", name="P", stages=stages, transitions={"a": ["nowhere"]})
    with pytest.raises(ValidationError, match="closed stage 'won'"):
        Pipeline(id="p", name="P", stages=stages, transitions={"won": ["a"]})


def _strict_pipeline() -> Pipeline:
    return Pipeline(
        id="strict",
        name="Strict",
        stages=(
            OPEN_A,
            Stage("b", "B", 40, required=("amount", "expected_close")),
            WON,
            LOST,
        ),
        transitions={"a": ["b", "lost"], "b": ["won", "lost"]},
    )


def test_explicit_transitions_govern_moves_and_allowed_moves_answers_without_raising() -> None:
    """A move the transitions do not list raises TransitionError; allowed_moves lists the legal ones."""
    clock = FixedClock(CLOCK_START)
    pipeline = _strict_pipeline()
    opp = Opportunity.open(name="By the book", pipeline=pipeline, clock=clock)

    with pytest.raises(TransitionError, match="does not allow a move from 'a' to 'won'"):
        opp.win(clock=clock)
    assert pipeline.allowed_moves(opp) == ("lost",)

    ready = opp.update(amount=Money("100", "USD"), expected_close=CLOCK_START.date(), clock=clock)
    assert pipeline.allowed_moves(ready) == ("b", "lost")
    assert ready.move_to("b", clock=clock).win(clock=clock).is_won


def test_entering_a_stage_without_its_required_fields_names_them() -> None:
    """A move into a stage whose required fields the deal lacks raises TransitionError naming them."""
    clock = FixedClock(CLOCK_START)
    opp = Opportunity.open(name="Not ready", pipeline=_strict_pipeline(), clock=clock)

    with pytest.raises(TransitionError, match="amount, expected_close") as caught:
        opp.move_to("b", clock=clock)

    assert caught.value.missing == ("amount", "expected_close")
    assert caught.value.to_stage == "b"


def test_allowed_moves_from_a_closed_deal_stay_within_its_outcome() -> None:
    """From a won stage only other won stages are moves; reopen is the way back."""
    clock = FixedClock(CLOCK_START)
    pipeline = Pipeline(
        id="p",
        name="P",
        stages=(OPEN_A, WON, Stage("paid", "Paid", 100, Outcome.WON), LOST),
    )
    won = Opportunity.open(name="Done", pipeline=pipeline, clock=clock).win(clock=clock)

    assert pipeline.allowed_moves(won) == ("paid",)
    assert Pipeline.default().allowed_moves(won) == ()  # another pipeline's deal


def test_pipeline_round_trips_through_a_json_config_file() -> None:
    """to_dict gives JSON-compatible data and from_dict reads it back to an equal pipeline."""
    pipeline = Pipeline(
        id="th-sales",
        name="ฝ่ายขาย",
        stages=(
            Stage("lead", "Lead", "12.5", labels={"th": "ลูกค้าเป้าหมาย"}, stale_after_days=30),
            Stage("quote", "Quote", 60, forecast_category="commit", required=("amount",)),
            Stage("won", "Won", 100, "won"),
            Stage("lost", "Lost", 0, "lost"),
        ),
        transitions={"lead": ["quote", "lost"], "quote": ["won", "lost", "lead"]},
        keep_manual_probability=True,
    )

    text = json.dumps(pipeline.to_dict(), ensure_ascii=False)
    again = Pipeline.from_dict(json.loads(text))

    assert again == pipeline
    assert again.stage("quote").forecast_category is ForecastCategory.COMMIT
    assert again.stage("lead").probability == Decimal("12.5")
    assert "ลูกค้าเป้าหมาย" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "p", "name": "P"}, "lacks 'stages'"),
        ({"id": "p", "name": "P", "stages": "abc"}, "must be a list"),
        ({"id": "p", "name": "P", "stages": [{"key": "a"}]}, "lacks 'label'"),
        ({"id": "p", "name": "P", "stages": [], "colour": "red"}, "unknown field 'colour'"),
        (
            {"id": "p", "name": "P", "stages": [{"key": "a", "label": "A", "probability": "x"}]},
            "'x' is not a number",
        ),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_from_dict_says_what_is_wrong(data: Any, message: str) -> None:
    """A bad pipeline config raises ValidationError naming the problem."""
    with pytest.raises(ValidationError, match=message):
        Pipeline.from_dict(data)


def test_stage_probability_accepts_int_str_and_decimal_and_keeps_decimal() -> None:
    """Stage probability may be given as int, str or Decimal and is kept as Decimal."""
    for given in (25, "25", Decimal(25)):
        assert Stage("s", "S", given).probability == Decimal(25)
    with pytest.raises(ValidationError, match="float"):
        Stage("s", "S", 25.0)


def test_stage_cannot_require_an_unknown_field() -> None:
    """required names only fields a deal has."""
    with pytest.raises(ValidationError, match="'colour'"):
        Stage("s", "S", 10, required=("colour",))
