"""The error hierarchy of DESIGN section 3, the public names, and what error messages say."""

from __future__ import annotations

import importlib.metadata
import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import oppcore
from oppcore import (
    ConcurrencyError,
    CorruptStoreError,
    CurrencyMismatchError,
    DeserializationError,
    FixedClock,
    LineItem,
    MissingRateError,
    Money,
    NotFoundError,
    OppcoreError,
    Opportunity,
    OpportunityNotFound,
    Outcome,
    Pipeline,
    Stage,
    StorageError,
    StoreUnavailableError,
    TransitionError,
    ValidationError,
)
from oppcore import exceptions as exceptions_module

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=30)

#: Each public error and the classes DESIGN section 3 says it inherits.
HIERARCHY: list[tuple[type[BaseException], tuple[type[BaseException], ...]]] = [
    (OppcoreError, (Exception,)),
    (ValidationError, (OppcoreError, ValueError)),
    (TransitionError, (ValidationError, OppcoreError, ValueError)),
    (CurrencyMismatchError, (OppcoreError, TypeError)),
    (MissingRateError, (OppcoreError, LookupError)),
    (NotFoundError, (OppcoreError, LookupError)),
    (OpportunityNotFound, (NotFoundError, OppcoreError, LookupError)),
    (ConcurrencyError, (OppcoreError, RuntimeError)),
    (StorageError, (OppcoreError, OSError)),
    (CorruptStoreError, (StorageError, OppcoreError, OSError)),
    (StoreUnavailableError, (StorageError, OppcoreError, OSError)),
    (DeserializationError, (OppcoreError, ValueError)),
]

#: Pipeline with transitions and a stage that requires fields, for TransitionError tests.
GATED = Pipeline(
    id="gated",
    name="Gated",
    stages=(
        Stage("lead", "Lead", 5),
        Stage("qualified", "Qualified", 25),
        Stage("proposal", "Proposal", 60, required=("amount", "expected_close")),
        Stage("won", "Won", 100, Outcome.WON),
        Stage("lost", "Lost", 0, Outcome.LOST),
    ),
    transitions={
        "lead": ("qualified", "lost"),
        "qualified": ("proposal", "lost"),
        "proposal": ("won", "lost"),
    },
)


def _clock() -> FixedClock:
    return FixedClock(NOW)


def _gated(stage: str = "lead") -> Opportunity:
    return Opportunity.open(
        name="Gated deal", id="opp-1", pipeline=GATED, stage=stage, at=T0, clock=_clock()
    )


def _assert_sentence_naming(error: BaseException, *fragments: str) -> None:
    message = str(error)
    assert message[:1].isupper(), f"message does not start a sentence: {message!r}"
    assert message.rstrip().endswith("."), f"message does not end with a period: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not named in {message!r}"


# -- the hierarchy ---------------------------------------------------------------------


@pytest.mark.parametrize(("error", "bases"), HIERARCHY, ids=[cls.__name__ for cls, _ in HIERARCHY])
def test_each_error_inherits_the_classes_the_design_names(
    error: type[BaseException], bases: tuple[type[BaseException], ...]
) -> None:
    """Every public error is an OppcoreError and also the builtin exception it is."""
    for base in bases:
        assert issubclass(error, base), f"{error.__name__} is not a {base.__name__}"
    assert issubclass(error, OppcoreError)


@pytest.mark.parametrize(("error", "bases"), HIERARCHY, ids=[cls.__name__ for cls, _ in HIERARCHY])
def test_each_error_is_exported_from_oppcore_and_oppcore_exceptions(
    error: type[BaseException], bases: tuple[type[BaseException], ...]
) -> None:
    """Every error is reachable as oppcore.<Name> and oppcore.exceptions.<Name>."""
    assert getattr(oppcore, error.__name__) is error
    assert getattr(exceptions_module, error.__name__) is error
    assert error.__name__ in oppcore.__all__
    assert error.__name__ in exceptions_module.__all__
    assert bases  # the table names at least one base for each error


def test_a_validation_error_is_caught_by_except_value_error() -> None:
    """Code that knows nothing of oppcore still catches its refusals as ValueError."""
    with pytest.raises(ValueError, match="XYZ"):
        Money("1", "XYZ")


def test_a_currency_mismatch_is_caught_by_except_type_error() -> None:
    """Adding money in two currencies raises CurrencyMismatchError, a TypeError."""
    with pytest.raises(TypeError) as caught:
        _ = Money("1", "USD") + Money("1", "THB")
    assert isinstance(caught.value, CurrencyMismatchError)


def test_concurrency_error_carries_the_stream_and_both_versions() -> None:
    """ConcurrencyError keeps stream_id, expected and actual, and is a RuntimeError."""
    error = ConcurrencyError(
        "Stream 'opp-1' is at version 4, not 3.", stream_id="opp-1", expected=3, actual=4
    )

    assert isinstance(error, RuntimeError)
    assert (error.stream_id, error.expected, error.actual) == ("opp-1", 3, 4)
    assert str(error) == "Stream 'opp-1' is at version 4, not 3."


def test_corrupt_store_error_carries_the_line_number_where_it_applies() -> None:
    """CorruptStoreError.line is the physical line, or None when no line applies."""
    with_line = CorruptStoreError("Line 7 of the journal fails its checksum.", line=7)
    without_line = CorruptStoreError("The database schema is unknown.")

    assert with_line.line == 7
    assert without_line.line is None
    assert isinstance(with_line, StorageError)
    assert isinstance(with_line, OSError)


def test_store_unavailable_error_is_a_storage_error_and_an_os_error() -> None:
    """StoreUnavailableError can be caught as StorageError or OSError."""
    error = StoreUnavailableError("The server at db.example is not answering.")

    assert isinstance(error, StorageError)
    assert isinstance(error, OSError)


def test_deserialization_error_lists_its_errors_in_the_attribute_and_the_message() -> None:
    """DeserializationError.errors is a tuple of lines, each also shown in the message."""
    lines = ["invalid value @ $.line_items[2].quantity", "required field missing @ $.product"]
    error = DeserializationError("Could not read LineItem: 2 problem(s).", errors=lines)

    assert isinstance(error, ValueError)
    assert error.errors == tuple(lines)
    for line in lines:
        assert line in str(error)


def test_deserialization_error_without_errors_has_an_empty_tuple() -> None:
    """errors defaults to an empty tuple and the message is left as given."""
    error = DeserializationError("The document is empty.")

    assert error.errors == ()
    assert str(error) == "The document is empty."


def test_transition_error_defaults_its_attributes_to_none_and_nothing_missing() -> None:
    """A TransitionError built with only a message has None ids and an empty missing tuple."""
    error = TransitionError("That move is not allowed.")

    assert (error.opportunity_id, error.from_stage, error.to_stage) == (None, None, None)
    assert error.missing == ()


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("Bad value 'x'."),
        TransitionError(
            "Bad move.", opportunity_id="o", from_stage="a", to_stage="b", missing=["amount"]
        ),
        ConcurrencyError("Stream 's' moved on.", stream_id="s", expected=1, actual=2),
        CorruptStoreError("Line 3 is damaged.", line=3),
        DeserializationError("Could not read Money: 1 problem(s).", errors=["invalid value @ $"]),
        OpportunityNotFound("No opportunity 'x' is stored."),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling_with_their_attributes(error: OppcoreError) -> None:
    """An error raised in a worker process arrives whole: same class, message and attributes."""
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


# -- the public names ------------------------------------------------------------------


def test_every_name_in_oppcore_all_exists() -> None:
    """Each name __all__ promises can be imported from oppcore."""
    missing = [name for name in oppcore.__all__ if not hasattr(oppcore, name)]
    assert missing == []


def test_oppcore_all_is_sorted_without_duplicates() -> None:
    """__all__ is sorted and names each export once."""
    assert list(oppcore.__all__) == sorted(oppcore.__all__)
    assert len(set(oppcore.__all__)) == len(oppcore.__all__)


def test_every_public_error_of_oppcore_exceptions_is_in_oppcore_all() -> None:
    """The errors module exports nothing that oppcore itself does not re-export."""
    assert set(exceptions_module.__all__) <= set(oppcore.__all__)


def test_oppcore_version_is_the_installed_distribution_version_string() -> None:
    """__version__ is a non-empty string, the version the package was installed as."""
    assert isinstance(oppcore.__version__, str)
    assert oppcore.__version__
    assert oppcore.__version__ == importlib.metadata.version("oppcore")


# -- TransitionError from real moves ---------------------------------------------------


def test_a_move_the_pipeline_forbids_names_the_deal_and_both_stages() -> None:
    """Skipping a stage the transitions do not allow raises TransitionError with its context."""
    opp = _gated()

    with pytest.raises(TransitionError) as caught:
        opp.move_to("proposal", clock=_clock())

    error = caught.value
    assert (error.opportunity_id, error.from_stage, error.to_stage) == ("opp-1", "lead", "proposal")
    assert error.missing == ()
    _assert_sentence_naming(error, "'lead'", "'proposal'")


def test_a_move_into_a_stage_whose_required_fields_are_missing_names_them() -> None:
    """Entering a stage that requires amount and expected_close lists both as missing."""
    opp = _gated().move_to("qualified", clock=_clock())

    with pytest.raises(TransitionError) as caught:
        opp.move_to("proposal", clock=_clock())

    error = caught.value
    assert (error.opportunity_id, error.from_stage, error.to_stage) == (
        "opp-1",
        "qualified",
        "proposal",
    )
    assert error.missing == ("amount", "expected_close")
    _assert_sentence_naming(error, "amount", "expected_close")


def test_opening_in_a_stage_whose_required_fields_are_missing_names_them() -> None:
    """Opening straight into a gated stage raises TransitionError with no from_stage."""
    with pytest.raises(TransitionError) as caught:
        _gated(stage="proposal")

    error = caught.value
    assert error.to_stage == "proposal"
    assert error.from_stage is None
    assert error.missing == ("amount", "expected_close")


def test_moving_a_won_deal_back_to_an_open_stage_says_to_reopen_it() -> None:
    """From a closed stage only a stage of the same outcome is reachable without reopen."""
    clock = _clock()
    opp = _gated().update(amount=Money("100", "THB"), expected_close=T0.date(), clock=clock)
    opp = opp.move_to("qualified", clock=clock).move_to("proposal", clock=clock).win(clock=clock)

    with pytest.raises(TransitionError) as caught:
        opp.move_to("lead", clock=clock)

    error = caught.value
    assert (error.opportunity_id, error.from_stage, error.to_stage) == ("opp-1", "won", "lead")
    _assert_sentence_naming(error, "reopen")


def test_reopening_an_open_deal_is_a_transition_error_naming_its_stage() -> None:
    """reopen() on an open deal says only a closed deal reopens."""
    with pytest.raises(TransitionError) as caught:
        _gated().reopen(clock=_clock())

    assert caught.value.from_stage == "lead"
    assert caught.value.opportunity_id == "opp-1"
    _assert_sentence_naming(caught.value, "'lead'")


# -- messages --------------------------------------------------------------------------


def test_a_probability_of_1000_is_refused_with_a_sentence_naming_it() -> None:
    """Stage(probability=1000) says 1000 is outside 0 to 100."""
    with pytest.raises(ValidationError) as caught:
        Stage("s", "S", 1000)

    _assert_sentence_naming(caught.value, "1000", "0 to 100")


def test_a_probability_update_of_1000_is_refused_with_a_sentence_naming_it() -> None:
    """update(probability=1000) names the value."""
    with pytest.raises(ValidationError) as caught:
        _gated().update(probability=1000, clock=_clock())

    _assert_sentence_naming(caught.value, "1000")


def test_an_unknown_currency_is_refused_with_a_sentence_naming_it() -> None:
    """Money('1', 'XYZ') names 'XYZ' as not an ISO 4217 code."""
    with pytest.raises(ValidationError) as caught:
        Money("1", "XYZ")

    _assert_sentence_naming(caught.value, "'XYZ'", "ISO 4217")


def test_a_float_amount_is_refused_with_a_message_that_says_to_pass_a_string() -> None:
    """Money(5.1, 'USD') names 5.1 and says to pass a string."""
    with pytest.raises(ValidationError) as caught:
        Money(5.1, "USD")  # type: ignore[arg-type]

    _assert_sentence_naming(caught.value, "5.1", "string")


def test_a_float_unit_quantity_is_refused_with_a_message_that_says_to_pass_a_string() -> None:
    """LineItem(quantity=2.5) names 2.5 and says to pass a string."""
    with pytest.raises(ValidationError) as caught:
        LineItem("Widget", Money("1", "USD"), quantity=2.5)

    _assert_sentence_naming(caught.value, "2.5", "string")


def test_a_naive_event_time_is_refused_with_a_sentence_naming_it() -> None:
    """Opening with a naive at= names the time and says to give it a timezone."""
    with pytest.raises(ValidationError) as caught:
        Opportunity.open(name="Deal", at=datetime(2026, 1, 5, 9, 0), clock=_clock())

    _assert_sentence_naming(caught.value, "2026-01-05T09:00:00", "naive")


def test_a_naive_clock_time_is_refused_with_a_sentence_naming_it() -> None:
    """FixedClock(naive) says the time is naive."""
    with pytest.raises(ValidationError) as caught:
        FixedClock(datetime(2026, 1, 5, 9, 0))

    _assert_sentence_naming(caught.value, "2026, 1, 5, 9, 0", "naive")


def test_an_unknown_stage_key_is_refused_with_a_sentence_naming_it_and_the_known_keys() -> None:
    """move_to('negotiation') in the default pipeline names the key and lists the real ones."""
    opp = Opportunity.open(name="Deal", at=T0, clock=_clock())

    with pytest.raises(ValidationError) as caught:
        opp.move_to("negotiation", clock=_clock())

    _assert_sentence_naming(caught.value, "'negotiation'", "'wait'", "'closed_won'")


def test_a_negative_quantity_is_refused_with_a_sentence_naming_it() -> None:
    """LineItem(quantity='-1') names -1."""
    with pytest.raises(ValidationError) as caught:
        LineItem("Widget", Money("1", "USD"), quantity="-1")

    _assert_sentence_naming(caught.value, "-1")


def test_an_absurd_amount_is_refused_with_a_sentence_naming_the_limit() -> None:
    """An amount with more than 15 integer digits is refused and the limit is named."""
    with pytest.raises(ValidationError) as caught:
        Money(Decimal("1e20"), "USD")

    _assert_sentence_naming(caught.value, "15 integer digits")
