"""The projector: ``DealVersion`` rows follow the bitemporal rule of DESIGN section 8."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import attrs
from hypothesis import given
from hypothesis import strategies as st

from oppcore import DealVersion, Opportunity
from oppcore.domain.versions import COLUMNS, project, tail, versions
from tests.strategies import opportunities

_TIMES = ("valid_from", "valid_to", "recorded_from", "recorded_to")


def _versions(opp: Opportunity) -> tuple[DealVersion, ...]:
    """The public method, held to the module's function (one projector)."""
    rows = opp.versions()
    assert rows == versions(opp)
    return rows


def _fields(row: DealVersion) -> dict[str, object]:
    return {k: v for k, v in attrs.asdict(row).items() if k not in _TIMES}


def _moments(opp: Opportunity) -> list[datetime]:
    tick = timedelta(microseconds=1)
    result: set[datetime] = set()
    for event in opp.events:
        for moment in (event.at, event.recorded_at):
            result.update((moment - tick, moment, moment + tick))
    return sorted(result)


@given(opp=opportunities(max_commands=10))
def test_the_rows_standing_at_t_as_known_at_k_are_the_deal_as_known_then_as_of_t(
    opp: Opportunity,
) -> None:
    """For every k and every t <= k: one row when as_known_at(k).as_of(t) holds the deal, and
    its columns are that state's; no row otherwise."""
    rows = _versions(opp)
    moments = _moments(opp)
    for known in moments:
        recorded = opp.as_known_at(known)
        for moment in moments:
            if moment > known:
                break
            standing = [row for row in rows if row.stands_at(moment, known)]
            state = None if recorded is None else recorded.as_of(moment)
            if state is None:
                assert standing == []
                continue
            assert len(standing) == 1
            expected = project([(state.events[-1], state)])[0]
            assert _fields(standing[0]) == _fields(expected)


@given(opp=opportunities(max_commands=10))
def test_every_row_has_a_recorded_span_and_the_last_is_the_current_state(
    opp: Opportunity,
) -> None:
    """No row has an empty recorded span; exactly one row is current, and it is the deal now."""
    rows = _versions(opp)
    for row in rows:
        assert row.recorded_to is None or row.recorded_from < row.recorded_to
        assert row.valid_to is None or row.valid_from <= row.valid_to
    current = [row for row in rows if row.is_current]
    assert len(current) == 1
    assert _fields(current[0]) == _fields(project([(opp.events[-1], opp)])[0])
    assert current[0].version == opp.version
    assert [f.name for f in attrs.fields(DealVersion)] == list(COLUMNS)


@given(opp=opportunities(max_commands=10))
def test_the_rows_known_now_cover_every_event_once(opp: Opportunity) -> None:
    """The rows with recorded_to None are one per event, in version order, their valid spans
    meeting end to end."""
    now_rows = [row for row in _versions(opp) if row.recorded_to is None]
    assert [row.version for row in now_rows] == [e.version for e in opp.events]
    for before, after in itertools.pairwise(now_rows):
        assert before.valid_to == after.valid_from


@given(opp=opportunities(max_commands=6), data=st.data())
def test_a_row_never_stands_in_the_future_of_what_was_known(
    opp: Opportunity, data: st.DataObject
) -> None:
    """Before the deal was first recorded, no row is known at all."""
    first = min(e.recorded_at for e in opp.events)
    known = first - data.draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=3)))
    assert not any(row.stands_at(known, known) for row in _versions(opp))


@given(opp=opportunities(), data=st.data())
def test_the_tail_of_a_deal_is_the_projection_from_its_version_on(
    opp: Opportunity, data: st.DataObject
) -> None:
    """Projecting only the events after a prefix (what a save writes) gives exactly the
    projection's rows of the prefix's version and later, back-dated events included."""
    cut = data.draw(st.integers(1, opp.version))
    prefix = Opportunity.replay(opp.events[:cut])
    assert tail(prefix, opp.events[cut:]) == tuple(r for r in versions(opp) if r.version >= cut)
