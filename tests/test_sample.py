"""The sample generator: deterministic, realistic, and something every report can run on."""

from __future__ import annotations

import doctest
import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import oppcore.sample
from oppcore import (
    LineKind,
    Money,
    Opportunity,
    Pipeline,
    Reopened,
    ValidationError,
    open_repository,
)
from oppcore.analytics import (
    Period,
    campaign_effectiveness,
    effectiveness,
    forecast,
    funnel,
    lead_source_effectiveness,
    pipeline_movement,
    slippage,
    slippage_summary,
    stale,
    time_in_stage,
)
from oppcore.sample import (
    B2B_PIPELINE,
    DEFAULT_START,
    MAX_OPPORTUNITIES,
    Sample,
    generate,
    history_span,
)

THAI = re.compile("[\u0e00-\u0e7f]")
BEGIN, END = history_span()


@pytest.fixture(scope="module")
def sample() -> Sample:
    """The default sample: 300 deals from seed 0 (made once: it is a value)."""
    return generate()


# -- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_an_equal_sample(sample: Sample) -> None:
    """Two calls with the same arguments make equal samples, down to every event."""
    assert generate() == sample
    assert generate(seed=3, opportunities=40) == generate(seed=3, opportunities=40)


def test_different_seeds_give_different_samples(sample: Sample) -> None:
    """Another seed draws other deals."""
    other = generate(seed=1)
    assert other != sample
    assert [o.name for o in other.opportunities] != [o.name for o in sample.opportunities]


def test_the_default_start_is_fixed_not_today() -> None:
    """The history begins on 5 January 2026 at 09:00 in Bangkok, whatever the date today."""
    nine_in_bangkok = datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=7)))
    assert history_span() == (nine_in_bangkok, datetime(2027, 1, 5, 2, 0, tzinfo=timezone.utc))
    assert history_span()[0] == DEFAULT_START
    assert generate(opportunities=20) == generate(opportunities=20, start=DEFAULT_START)


def test_a_start_date_means_nine_in_the_morning_in_bangkok() -> None:
    """``start=date`` is 09:00 Bangkok time that day; the same instant in any zone is equal."""
    bangkok = datetime(2025, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=7)))
    by_date = generate(seed=5, opportunities=30, start=date(2025, 7, 1))
    assert by_date == generate(seed=5, opportunities=30, start=bangkok)
    begin, end = history_span(date(2025, 7, 1))
    assert begin == bangkok
    assert end == bangkok.replace(year=2026)
    assert all(begin <= o.created_at < end for o in by_date.opportunities)
    assert {c.id for c in by_date.campaigns} >= {"cmp-2025-expo", "cmp-2025-partner"}


# -- counts and ids ------------------------------------------------------------------------


def test_counts_are_as_documented(sample: Sample) -> None:
    """300 deals, the two pipelines, six campaigns, and three leads per converted deal."""
    opps = sample.opportunities
    assert len(opps) == 300
    assert sample.pipelines == (Pipeline.default(), B2B_PIPELINE)
    assert len(sample.campaigns) == 6
    converted = [o for o in opps if o.lead_id is not None]
    assert len(sample.leads) == 3 * len(converted)
    parts = (sample.pipelines, sample.campaigns, sample.leads, sample.opportunities)
    assert all(isinstance(part, tuple) for part in parts)


def test_ids_are_explicit_and_in_order(sample: Sample) -> None:
    """Deals are opp-0001... in the order they opened, leads lead-0001... as they came in."""
    opps = sample.opportunities
    assert [o.id for o in opps] == [f"opp-{n:04d}" for n in range(1, 301)]
    assert [o.created_at for o in opps] == sorted(o.created_at for o in opps)
    assert [lead.id for lead in sample.leads] == [
        f"lead-{n:04d}" for n in range(1, len(sample.leads) + 1)
    ]
    created = [lead.created_at for lead in sample.leads if lead.created_at is not None]
    assert len(created) == len(sample.leads)
    assert created == sorted(created)
    assert all(c.id.startswith("cmp-2026-") for c in sample.campaigns)
    assert all(o.line_items == () or o.line_items[0].id == "line-1" for o in opps)


def test_converted_deals_carry_their_lead(sample: Sample) -> None:
    """Each new-customer deal came from its own lead, with its source and campaign; no lead
    converted twice; upsells and renewals come from existing customers."""
    leads = {lead.id: lead for lead in sample.leads}
    campaign_ids = {c.id for c in sample.campaigns}
    used = [o.lead_id for o in sample.opportunities if o.lead_id is not None]
    assert len(used) == len(set(used))
    for opp in sample.opportunities:
        if opp.type == "new_customer":
            assert opp.lead_id is not None
            lead = leads[opp.lead_id]
            assert (opp.lead_source, opp.campaign_id, opp.account) == (
                lead.source,
                lead.campaign_id,
                lead.company,
            )
            assert lead.created_at is not None
            assert lead.created_at <= opp.created_at
        else:
            assert (opp.lead_id, opp.lead_source) == (None, "existing_customer")
        assert opp.campaign_id is None or opp.campaign_id in campaign_ids


def test_no_opportunities_is_an_empty_book() -> None:
    """``opportunities=0`` still gives the pipelines and campaigns, and no deals or leads."""
    empty = generate(opportunities=0)
    assert (len(empty.pipelines), len(empty.campaigns)) == (2, 6)
    assert empty.leads == ()
    assert empty.opportunities == ()


# -- the history ---------------------------------------------------------------------------


def test_every_opportunity_replays(sample: Sample) -> None:
    """Each deal is exactly the fold of its own events."""
    for opp in sample.opportunities:
        assert Opportunity.replay(opp.events) == opp


def test_events_fall_in_the_year_and_never_go_back(sample: Sample) -> None:
    """Within a deal time only moves forward; everything happens, and is recorded, in the year."""
    for opp in sample.opportunities:
        times = [event.at for event in opp.events]
        assert times == sorted(times)
        for event in opp.events:
            assert BEGIN <= event.at <= event.recorded_at < END
    for campaign in sample.campaigns:
        assert campaign.start is not None
        assert campaign.end is not None
        assert BEGIN.date() <= campaign.start <= campaign.end < END.date()


def test_everything_is_in_thai_baht(sample: Sample) -> None:
    """One currency, so the reports need no exchange rates."""
    assert {o.currency for o in sample.opportunities} == {"THB"}
    for campaign in sample.campaigns:
        assert campaign.budgeted_cost is not None
        assert campaign.actual_cost is not None
        assert campaign.budgeted_cost.currency == campaign.actual_cost.currency == "THB"


def test_the_mix_is_realistic(sample: Sample) -> None:
    """Won, lost and open deals; about two in three closed and a third of those won."""
    opps = sample.opportunities
    won = sum(o.is_won for o in opps)
    lost = sum(o.is_lost for o in opps)
    still_open = sum(o.is_open for o in opps)
    assert won > 0
    assert lost > 0
    assert still_open > 0
    assert 0.55 <= (won + lost) / len(opps) <= 0.8
    assert 0.25 <= won / (won + lost) <= 0.45
    assert all(o.lost_reason for o in opps if o.is_lost)
    assert all(o.closed_at is not None for o in opps if o.is_closed)
    assert sum(any(isinstance(e, Reopened) for e in o.events) for o in opps) >= 2
    assert {o.pipeline.id for o in opps} == {"default", "b2b"}
    assert {o.type for o in opps} == {"new_customer", "upsell", "renewal"}
    assert len({o.lead_source for o in opps}) >= 6
    assert len({o.owner for o in opps}) == 5


def test_open_deals_look_ahead(sample: Sample) -> None:
    """At the end of the year nearly every open deal expects to close in a later quarter."""
    closes = [o.expected_close for o in sample.opportunities if o.is_open]
    ahead = [d for d in closes if d is not None and d >= END.date()]
    assert len(ahead) >= 0.8 * len(closes)
    assert max(ahead) > END.date() + timedelta(days=90)


def test_some_deals_slip(sample: Sample) -> None:
    """Expected close dates get pushed out, some more than once."""
    rows = slippage(sample.opportunities)
    pushes = [row.pushes for row in rows]
    assert sum(1 for p in pushes if p) >= 30
    assert max(pushes) >= 2


def test_line_items_have_add_ons_and_services(sample: Sample) -> None:
    """Deals sell products with add-ons on them and services; some have a budget instead."""
    items = [(o, item) for o in sample.opportunities for item in o.line_items]
    kinds = Counter(item.kind for _, item in items)
    assert set(kinds) == set(LineKind)
    for opp, item in items:
        assert item.unit_price.currency == "THB"
        if item.kind is LineKind.ADD_ON:
            assert item.parent_id is not None
            assert opp.line_item(item.parent_id).kind is LineKind.PRODUCT
    assert any(item.discount for _, item in items)
    assert any(o.amount_is_manual for o in sample.opportunities)
    assert any(o.amount is None for o in sample.opportunities)
    assert all(
        o.amount is not None and o.amount > Money(0, "THB")
        for o in sample.opportunities
        if o.is_won
    )


def test_names_are_thai_and_english(sample: Sample) -> None:
    """Customers, deals, leads and campaigns are named in both languages."""
    accounts = {o.account for o in sample.opportunities if o.account}
    thai = {a for a in accounts if THAI.search(a)}
    assert thai
    assert accounts - thai
    assert any(a.startswith("บริษัท ") and a.endswith(" จำกัด") for a in thai)
    assert any(THAI.search(o.name) for o in sample.opportunities)
    assert any(THAI.search(lead.name) for lead in sample.leads)
    assert any(THAI.search(c.name) for c in sample.campaigns)
    assert not all(THAI.search(c.name) for c in sample.campaigns)
    assert all(stage.label_for("th") != stage.label for stage in B2B_PIPELINE.stages)


def test_the_b2b_pipeline_flags_stale_open_stages() -> None:
    """Every open stage of the B2B pipeline has a stale limit; moves between them are given."""
    assert all(s.stale_after_days for s in B2B_PIPELINE.open_stages)
    assert B2B_PIPELINE.transitions is not None
    assert Pipeline.from_dict(B2B_PIPELINE.to_dict()) == B2B_PIPELINE


# -- reports and storage -------------------------------------------------------------------


def test_the_reports_run_on_it(sample: Sample) -> None:
    """Forecast, effectiveness, funnel and movement reports all have something to say."""
    opps = sample.opportunities
    assert len(forecast(opps)) > 6
    by_campaign = campaign_effectiveness(opps, sample.campaigns)
    assert {row.key for row in by_campaign} >= {c.id for c in sample.campaigns}
    assert all(row.cost is not None for row in by_campaign if row.key is not None)
    assert sum(row.won for row in by_campaign if row.key is not None) > 0
    assert len(lead_source_effectiveness(opps)) >= 6
    assert len(effectiveness(opps, by="owner")) == 5
    for pipeline in sample.pipelines:
        rows = funnel(opps, pipeline=pipeline).rows
        assert [row.stage for row in rows] == [s.key for s in pipeline.open_stages]
        assert rows[0].reached > rows[-1].reached > 0
    assert len(time_in_stage(opps, now=END)) >= 6
    assert len(stale(opps, now=END)) > 0
    assert len(slippage_summary(opps)) == 5


def test_pipeline_movement_reconciles_on_it(sample: Sample) -> None:
    """Over the second half of the year every bucket adds up, with deals won, lost and new."""
    middle = BEGIN + timedelta(days=182)
    windows = [None, Period(date(2026, 10, 1), date(2027, 3, 31), "Q4-Q1")]
    for window in windows:
        move = pipeline_movement(sample.opportunities, start=middle, end=END, window=window)
        assert _thb(move.closing) == (
            _thb(move.opening)
            + _thb(move.new)
            + _thb(move.increased)
            - _thb(move.decreased)
            - _thb(move.won)
            - _thb(move.lost)
            + _thb(move.reopened)
            - _thb(move.pushed_out)
            + _thb(move.pulled_in)
        )
        assert min(move.counts["won"], move.counts["lost"], move.counts["new"]) > 0
    assert move.counts["pushed_out"]


def _thb(amount: Money | None) -> Money:
    assert amount is not None
    assert amount.currency == "THB"
    return amount


def test_it_saves_into_a_repository_and_loads_back_equal(sample: Sample, tmp_path: Path) -> None:
    """Everything round-trips through an SQLite store, custom pipeline included."""
    path = tmp_path / "x.db"
    with open_repository(path) as repository:
        repository.save_all(sample.values())
    with open_repository(path) as repository:
        opps = sorted(repository.opportunities(), key=lambda o: o.id)
        leads = sorted(repository.leads(), key=lambda lead: lead.id)
        campaigns = {c.id: c for c in repository.campaigns()}
        pipelines = {p.id: p for p in repository.pipelines()}
        assert repository.get("opp-0042") == sample.opportunities[41]
    assert tuple(opps) == sample.opportunities
    assert tuple(leads) == sample.leads
    assert campaigns == {c.id: c for c in sample.campaigns}
    assert pipelines == {p.id: p for p in sample.pipelines}


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"seed": "7"}, "'7'"),
        ({"seed": 1.5}, "1.5"),
        ({"seed": True}, "True"),
        ({"opportunities": -1}, "-1"),
        ({"opportunities": MAX_OPPORTUNITIES + 1}, "100001"),
        ({"opportunities": "300"}, "'300'"),
        ({"opportunities": 3.0}, "3.0"),
        ({"start": datetime(2026, 1, 5, 9, 0)}, "datetime.datetime(2026, 1, 5, 9, 0)"),
        ({"start": "2026-01-05"}, "'2026-01-05'"),
        ({"start": 2026}, "2026"),
        ({"start": date(1, 1, 1)}, "datetime.date(1, 1, 1)"),
        ({"start": date(9999, 1, 1)}, "datetime.date(9999, 1, 1)"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(kwargs: dict[str, object], shown: str) -> None:
    """A wrong seed, count or start raises ValidationError that shows what was given."""
    with pytest.raises(ValidationError) as caught:
        generate(**kwargs)  # type: ignore[arg-type]
    assert shown in str(caught.value)
    assert str(caught.value).endswith(".")


def test_the_repr_is_short(sample: Sample) -> None:
    """A sample prints its counts, not three hundred deals."""
    assert repr(sample) == (
        f"<Sample pipelines=2 campaigns=6 leads={len(sample.leads)} opportunities=300>"
    )


def test_the_module_examples_run() -> None:
    """The docstring examples of oppcore.sample are true."""
    failed, attempted = doctest.testmod(oppcore.sample)
    assert attempted > 0
    assert failed == 0
