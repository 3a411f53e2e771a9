"""Text that no store can write is refused where it enters, naming the field (issue 11, case 8)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oppcore import (
    Campaign,
    FixedClock,
    Lead,
    LineItem,
    Money,
    Opportunity,
    Pipeline,
    Repository,
    Stage,
    ValidationError,
)
from oppcore.domain.events import FieldsChanged, Lost, Opened
from oppcore.domain.stages import Outcome
from oppcore.storage import JsonEventStore, SqliteEventStore

AT = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _deal(**fields: object) -> Opportunity:
    values: dict[str, object] = {"name": "Deal", "id": "d-1"}
    values.update(fields)
    return Opportunity.open(at=AT, clock=FixedClock(AT), **values)  # type: ignore[arg-type]


def _pipeline(**stage: object) -> Pipeline:
    fields: dict[str, object] = {"key": "wait", "label": "Wait", "probability": 10}
    fields.update(stage)
    return Pipeline(
        id="p",
        name="P",
        stages=(
            Stage(**fields),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("lost", "Lost", 0, Outcome.LOST),
        ),
    )


def _event(cls: type, **fields: object) -> object:
    common: dict[str, object] = {"opportunity_id": "d-1", "version": 2, "at": AT, "recorded_at": AT}
    common.update(fields)
    return cls(**common)


#: Every text field of every domain value: the label its message names, and a way to pass text there.
FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "Opportunity.open name": ("Opportunity name", lambda t: _deal(name=t)),
    "Opportunity.open id": ("Opportunity id", lambda t: _deal(id=t)),
    "Opportunity.open type": ("Type", lambda t: _deal(type=t)),
    "Opportunity.open campaign_id": ("Campaign id", lambda t: _deal(campaign_id=t)),
    "Opportunity.open lead_id": ("Lead id", lambda t: _deal(lead_id=t)),
    "Opportunity.open lead_source": ("Lead source", lambda t: _deal(lead_source=t)),
    "Opportunity.open owner": ("Owner", lambda t: _deal(owner=t)),
    "Opportunity.open account": ("Account", lambda t: _deal(account=t)),
    "Opportunity.open description": ("Description", lambda t: _deal(description=t)),
    "Opportunity.open by": ("by", lambda t: _deal(by=t)),
    "update name": ("Opportunity name", lambda t: _deal().update(name=t, clock=FixedClock(AT))),
    "update owner": ("Owner", lambda t: _deal().update(owner=t, clock=FixedClock(AT))),
    "update description": (
        "Description",
        lambda t: _deal().update(description=t, clock=FixedClock(AT)),
    ),
    "update by": ("by", lambda t: _deal().update(owner="o", by=t, clock=FixedClock(AT))),
    "move_to by": ("by", lambda t: _deal().move_to("in_progress", by=t, clock=FixedClock(AT))),
    "lose reason": ("Lost reason", lambda t: _deal().lose(reason=t, clock=FixedClock(AT))),
    "LineItem product": ("Product", lambda t: LineItem(t, Money("1", "USD"))),
    "LineItem description": (
        "Description",
        lambda t: LineItem("p", Money("1", "USD"), description=t),
    ),
    "LineItem id": ("Line item id", lambda t: LineItem("p", Money("1", "USD"), id=t)),
    "LineItem parent_id": (
        "Parent line id",
        lambda t: LineItem("p", Money("1", "USD"), parent_id=t),
    ),
    "Lead id": ("Lead id", lambda t: Lead(id=t, name="n")),
    "Lead name": ("Lead name", lambda t: Lead(id="l", name=t)),
    "Lead company": ("Company", lambda t: Lead(id="l", name="n", company=t)),
    "Lead source": ("Lead source", lambda t: Lead(id="l", name="n", source=t)),
    "Lead campaign_id": ("Campaign id", lambda t: Lead(id="l", name="n", campaign_id=t)),
    "Campaign id": ("Campaign id", lambda t: Campaign(id=t, name="n")),
    "Campaign name": ("Campaign name", lambda t: Campaign(id="c", name=t)),
    "Campaign type": ("Campaign type", lambda t: Campaign(id="c", name="n", type=t)),
    "Stage key": ("Stage key", lambda t: Stage(t, "Label", 10)),
    "Stage label": ("Stage label", lambda t: Stage("k", t, 10)),
    "Stage labels locale": ("Label locale", lambda t: Stage("k", "L", 10, labels={t: "x"})),
    "Stage labels label": ("Stage label", lambda t: Stage("k", "L", 10, labels={"th": t})),
    "Stage required": ("Required field", lambda t: Stage("k", "L", 10, required=(t,))),
    "Pipeline id": ("Pipeline id", lambda t: Pipeline(t, "P", _pipeline().stages)),
    "Pipeline name": ("Pipeline name", lambda t: Pipeline("p", t, _pipeline().stages)),
    "Opened owner": (
        "Owner",
        lambda t: Opened(
            opportunity_id="d-1",
            version=1,
            at=AT,
            recorded_at=AT,
            name="n",
            pipeline=Pipeline.default(),
            stage="wait",
            probability=10,
            owner=t,
        ),
    ),
    "FieldsChanged account": (
        "Account",
        lambda t: _event(FieldsChanged, fields=("account",), account=t),
    ),
    "FieldsChanged name": (
        "Opportunity name",
        lambda t: _event(FieldsChanged, fields=("name",), name=t),
    ),
    "Lost reason": (
        "Lost reason",
        lambda t: _event(Lost, from_stage="wait", to_stage="closed_lost", reason=t),
    ),
    "event by": ("by", lambda t: _event(Lost, from_stage="wait", to_stage="closed_lost", by=t)),
}

surrogates = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
valid_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(str.strip)


def test_a_lone_surrogate_from_json_is_refused_as_a_deal_name() -> None:
    """``json.loads('"Deal \\\\ud83d"')`` as a name is a ValidationError naming the name, not a crash at save."""
    name = json.loads('"Deal \\ud83d"')
    with pytest.raises(ValidationError) as caught:
        Opportunity.open(name=name)
    message = str(caught.value)
    assert message.startswith("Opportunity name 'Deal \\ud83d' holds a lone surrogate")
    message.encode("utf-8")  # the message itself is writable anywhere


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), valid_text, surrogates, st.data())
def test_text_holding_a_surrogate_is_refused_in_every_field_naming_it(
    field: str, text: str, surrogate: str, data: st.DataObject
) -> None:
    """A surrogate anywhere in any text field is a ValidationError naming that field."""
    label, build = FIELDS[field]
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    with pytest.raises(ValidationError) as caught:
        build(text[:at] + surrogate + text[at:])
    message = str(caught.value)
    assert message.startswith(label + " ")
    assert "lone surrogate" in message
    message.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), valid_text)
def test_valid_text_is_accepted_in_every_field(field: str, text: str) -> None:
    """Any other text is accepted in the same fields (ids and keys need no particular form)."""
    _, build = FIELDS[field]
    message = ""
    try:
        build(text)
    except ValidationError as error:  # a rule of the field other than its text, never the text
        message = str(error)
    assert "surrogate" not in message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_text, valid_text, valid_text)
def test_any_other_text_round_trips_through_every_file_store(
    name: str, owner: str, description: str
) -> None:
    """A deal whose text is valid Unicode saves to JSON Lines and SQLite and reads back equal."""
    item = LineItem(description or "p", Money("2.50", "THB"), description=owner)
    opp = _deal(name=name, owner=owner, description=description, line_items=(item,))
    opp = opp.lose(reason=description, by=owner, clock=FixedClock(AT))
    with tempfile.TemporaryDirectory() as folder:
        for store in (
            JsonEventStore(os.path.join(folder, "deals.jsonl")),
            SqliteEventStore(os.path.join(folder, "deals.db")),
        ):
            with Repository(store) as repo:
                repo.save(opp)
                assert repo.get(opp.id) == opp
