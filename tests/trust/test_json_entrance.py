"""One JSON entrance (issue 11: duplicate keys, one entrance, 8's import part, 12's load_json part).

``serialization.loads`` and ``io.load_json`` read JSON through one function with one set of
limits: the same hostile text is the same ``DeserializationError``, with the same lines, by
either way in.  A key twice, a lone surrogate, NaN or a number past the limits is refused at
its path before anything is saved, and a history with one bad event is refused in one fold.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oppcore import (
    DeserializationError,
    FixedClock,
    Money,
    Opportunity,
    dumps,
    loads,
    open_repository,
)
from oppcore.io import dump_json, load_json
from oppcore.serialization import MAX_DEPTH, parse_json
from tests.test_cli import oppcore

UTC = timezone.utc
CLOCK = FixedClock(datetime(2026, 1, 5, 9, tzinfo=UTC))


def a_document(deals: int = 1) -> str:
    """A valid oppcore document of ``deals`` small deals, each opened then renamed."""
    repository = open_repository(None)
    repository.save_all(
        [
            Opportunity.open(name=f"Deal {i}", id=f"opp-{i}", clock=CLOCK).update(
                name=f"Deal {i} (renamed)", clock=CLOCK
            )
            for i in range(deals)
        ]
    )
    out = io.StringIO()
    dump_json(repository, out)
    return out.getvalue()


DOCUMENT = a_document(4)
NAME = '"name":"Deal 0"'
assert NAME in DOCUMENT

#: Hostile texts, each with a piece of the one line both entrances must give.
HOSTILE: dict[str, tuple[str | bytes, str]] = {
    "duplicate-key": (
        DOCUMENT.replace('{"id":"opp-3",', '{"id":"opp-3","id":"opp-9",'),
        "key 'id' appears twice in one object @ $.opportunities[3].id",
    ),
    "nan": (DOCUMENT.replace('"version":1', '"version":NaN', 1), "NaN is not a number"),
    "infinity": (
        DOCUMENT.replace('"version":2', '"version":-Infinity', 1),
        "-Infinity is not a number JSON allows @ $.opportunities[0].events[1].version",
    ),
    "huge-exponent": (
        DOCUMENT.replace('"version":1', '"version":1e999999', 1),
        "the number '1e999999' is out of range",
    ),
    "5000-digit-int": (
        DOCUMENT.replace('"version":1', '"version":' + "7" * 5000, 1),
        "is 5,000 characters long; the limit is 100 @ $.version",
    ),
    "depth-100000": ("[" * 100_000 + "]" * 100_000, f"nest deeper than {MAX_DEPTH} levels @ $"),
    "depth-65-in-a-field": (
        DOCUMENT.replace(NAME, '"name":' + "[" * 64 + "]" * 64),
        f"nest deeper than {MAX_DEPTH} levels @ $.opportunities[0].events[0].name[0]",
    ),
    "invalid-utf8": (
        DOCUMENT.replace(NAME, '"name":"caf\udce9"').encode("utf-8", "surrogateescape"),
        "not UTF-8 (byte 0xe9 at offset",
    ),
    "lone-surrogate": (
        DOCUMENT.replace(NAME, r'"name":"Deal \ud83d"'),
        "(U+D83D at position 5), which is not Unicode @ $.opportunities[0].events[0].name",
    ),
    "lone-surrogate-key": (
        DOCUMENT.replace('"format"', r'"\udc00format"'),
        "key '\\udc00format' holds a lone surrogate",
    ),
    "two-byte-order-marks": ("\ufeff\ufeff" + DOCUMENT, "Unexpected UTF-8 BOM"),
    "empty": ("", "invalid JSON: the text is empty @ $"),
    "only-whitespace": (" \n\t ", "invalid JSON: the text is empty @ $"),
    "trailing-garbage": (DOCUMENT + "garbage", "Extra data"),
}


def through_loads(text: str | bytes) -> DeserializationError:
    """The error ``serialization.loads`` raises for ``text``."""
    with pytest.raises(DeserializationError) as caught:
        loads(text, Opportunity)
    return caught.value


def through_load_json(text: str | bytes) -> DeserializationError:
    """The error ``io.load_json`` of an open file raises for ``text``."""
    stream = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    with pytest.raises(DeserializationError) as caught:
        load_json(stream)
    return caught.value


def through_a_file(tmp_path: Path, text: str | bytes) -> DeserializationError:
    """The error ``io.load_json`` of a path raises for ``text`` written there."""
    path = tmp_path / "document.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(DeserializationError) as caught:
        load_json(path)
    return caught.value


@pytest.mark.parametrize("case", HOSTILE)
def test_both_entrances_refuse_hostile_json_with_the_same_error(tmp_path: Path, case: str) -> None:
    """loads, load_json of a stream and of a file: one class, one message, one line each."""
    text, expected = HOSTILE[case]
    started = time.perf_counter()
    errors = [through_loads(text), through_load_json(text), through_a_file(tmp_path, text)]
    assert time.perf_counter() - started < 10

    first = errors[0]
    for error in errors[1:]:
        assert type(error) is type(first)
        assert error.errors == first.errors
        assert str(error) == str(first)
    assert len(first.errors) == 1
    assert expected in first.errors[0]
    assert first.errors[0].startswith("invalid JSON: ")
    assert str(first).startswith("The document is not valid JSON: ")
    assert "\n" not in str(first)  # one problem is one line after "oppcore:"


def test_one_leading_byte_order_mark_is_skipped_by_both_entrances(tmp_path: Path) -> None:
    """A BOM at the start, as Windows tools write one, is allowed by JSON and read by both."""
    price = Money("1250000.50", "THB")
    assert loads("\ufeff" + dumps(price), Money) == price
    assert loads(b"\xef\xbb\xbf" + dumps(price).encode(), Money) == price
    expected = load_json(io.StringIO(DOCUMENT)).opportunities()
    assert load_json(io.StringIO("\ufeff" + DOCUMENT)).opportunities() == expected
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + DOCUMENT.encode())
    assert load_json(path).opportunities() == expected


def test_a_duplicate_amount_no_longer_wins_silently() -> None:
    """{"amount": "1.00", "amount": "9.00"} was read as 9.00; now the key and path are named."""
    with pytest.raises(DeserializationError) as caught:
        loads('{"amount": "1.00", "currency": "USD", "amount": "9.00"}', Money)
    assert caught.value.errors == (
        "invalid JSON: key 'amount' appears twice in one object @ $.amount",
    )


def test_every_problem_the_entrance_finds_is_listed_with_its_path() -> None:
    """Two duplicate keys and a NaN in one text: three lines, in document order."""
    with pytest.raises(DeserializationError) as caught:
        parse_json('{"o": [{"a": 1, "a": 2}, {"b": NaN, "c d": [1, {"x": 0, "x": 0}]}]}')
    assert caught.value.errors == (
        "invalid JSON: key 'a' appears twice in one object @ $.o[0].a",
        "invalid JSON: NaN is not a number JSON allows @ $.o[1].b",
        "invalid JSON: key 'x' appears twice in one object @ $.o[1]['c d'][1].x",
    )
    assert str(caught.value).startswith("The document is not valid JSON: 3 problems.\n")


def test_the_limits_are_where_the_documentation_puts_them() -> None:
    """64 levels, 100-character numbers and powers of ten to 100 are read; one more is not."""
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert parse_json("9" * 100) == int("9" * 100)
    assert str(parse_json("1e100")) == "1E+100"
    assert str(parse_json("-1.5e-100")) == "-1.5E-100"
    for text in ("[" * 65 + "]" * 65, "9" * 101, "1e101", "1e-101", "0e999999"):
        with pytest.raises(DeserializationError):
            parse_json(text)


# -- properties --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**50), max_value=10**50)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=200)
@given(value=json_values, ascii_only=st.booleans())
def test_any_json_value_within_the_limits_reads_back_equal(value: Any, ascii_only: bool) -> None:
    """parse_json(json.dumps(v)) == v, escaped or not, as text and as UTF-8 bytes."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert parse_json(text) == value
    assert parse_json(text.encode("utf-8")) == value


@settings(max_examples=300)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        st.lists(st.sampled_from(list('{}[]:,"\\ 1e-9.NaInfitybu"d83fa')), max_size=40).map(
            "".join
        ),
    )
)
def test_any_text_is_read_or_refused_alike_by_both_entrances(text: str | bytes) -> None:
    """Whatever the text, parse_json returns or refuses it; when it refuses, so do both."""
    refused: DeserializationError | None = None
    try:
        parse_json(text)
    except DeserializationError as exc:
        refused = exc
    if refused is not None:
        for entrance in (through_loads, through_load_json):
            error = entrance(text)
            assert (error.errors, str(error)) == (refused.errors, str(refused))


# -- 8: a lone surrogate in an imported document ------------------------------------------


SURROGATE_DOCUMENT = DOCUMENT.replace(NAME, r'"name":"Deal \ud83d"')
SURROGATE_PATH = "$.opportunities[0].events[0].name"


@pytest.mark.parametrize("store", ["deals.jsonl", "deals.db"])
def test_load_json_refuses_a_lone_surrogate_before_anything_is_saved(
    tmp_path: Path, store: str
) -> None:
    """A real store is left as it was: the name's path is in the error, no deal is saved."""
    repository = open_repository(tmp_path / store)
    repository.save(Opportunity.open(name="Kept", id="kept", clock=CLOCK))
    with pytest.raises(DeserializationError) as caught:
        load_json(io.StringIO(SURROGATE_DOCUMENT), into=repository)
    assert caught.value.errors[0].endswith(f"@ {SURROGATE_PATH}")
    assert [opp.id for opp in open_repository(tmp_path / store).opportunities()] == ["kept"]


@pytest.mark.parametrize("store", ["new.db", "new.jsonl"])
def test_oppcore_import_of_a_lone_surrogate_is_one_line_naming_the_field(
    tmp_path: Path, store: str
) -> None:
    """The command prints one line with the path, no traceback, and saves no deal."""
    (tmp_path / "deals.json").write_text(SURROGATE_DOCUMENT, encoding="utf-8")

    result = oppcore("import", "deals.json", "--store", store, cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("oppcore: The document is not valid JSON: ")
    assert SURROGATE_PATH in result.stderr
    assert len(result.stderr.splitlines()) == 1
    if (tmp_path / store).exists():  # another case removes a store a failed import created
        assert open_repository(tmp_path / store).opportunities() == []


# -- 12: a long history with one bad event ------------------------------------------------


def a_history(events: int) -> str:
    """A document of one deal with ``events`` events, the last of them out of sequence."""
    document = json.loads(a_document(1))
    opened, renamed = document["opportunities"][0]["events"]
    history = [opened]
    history += [dict(renamed, version=v, name=f"Deal {v}") for v in range(2, events + 1)]
    history[-1]["version"] = events + 7
    document["opportunities"][0]["events"] = history
    return json.dumps(document)


def refusal_time(text: str, check: Callable[[DeserializationError], None]) -> float:
    """The best of three times load_json takes to refuse ``text``."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with pytest.raises(DeserializationError) as caught:
            load_json(io.StringIO(text))
        times.append(time.perf_counter() - started)
        check(caught.value)
    return min(times)


def test_a_long_history_with_a_bad_last_event_is_refused_in_linear_time() -> None:
    """5,000 events take about four times as long as 1,250, not sixteen, and name the event."""

    def at(index: int) -> Callable[[DeserializationError], None]:
        def check(error: DeserializationError) -> None:
            assert error.errors[-1].endswith(f"@ $.opportunities[0].events[{index}]")
            assert "does not follow" in error.errors[-1]

        return check

    short = refusal_time(a_history(1_250), at(1_249))
    long = refusal_time(a_history(5_000), at(4_999))
    assert long < 5
    assert long < 8 * short + 0.05  # linear is 4x; replaying every prefix is 16x
