"""Stages and pipelines: the state machine a deal moves through, as data checked when built."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs

from oppcore.domain import _checks
from oppcore.exceptions import ValidationError

if TYPE_CHECKING:
    from oppcore.domain.opportunity import Opportunity

K = TypeVar("K")
V = TypeVar("V")


class Outcome(str, enum.Enum):
    """Whether a stage is still open, or closes the deal as won or lost."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ForecastCategory(str, enum.Enum):
    """Salesforce's forecast categories: how sure the seller is of a deal in the stage."""

    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    CLOSED = "closed"
    OMITTED = "omitted"


_DEFAULT_CATEGORY = {
    Outcome.OPEN: ForecastCategory.PIPELINE,
    Outcome.WON: ForecastCategory.CLOSED,
    Outcome.LOST: ForecastCategory.OMITTED,
}

#: Fields a stage may require before a deal enters it.
REQUIRABLE_FIELDS = frozenset(
    {
        "account",
        "amount",
        "campaign_id",
        "currency",
        "description",
        "expected_close",
        "lead_id",
        "lead_source",
        "line_items",
        "owner",
        "type",
    }
)


class ReadOnlyDict(dict[K, V]):
    """A dict that refuses changes: what a frozen value holds stays as it was built.

    Unlike ``MappingProxyType`` it pickles and deep-copies, so values can go to worker
    processes.
    """

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be changed.")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[ReadOnlyDict[K, V]], tuple[dict[K, V]]]:
        return (type(self), (dict(self),))

    def __copy__(self) -> ReadOnlyDict[K, V]:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> ReadOnlyDict[K, V]:
        return self


def _enum(kind: type[enum.Enum], value: object, what: str) -> Any:
    try:
        if not isinstance(value, (str, kind)):
            raise TypeError  # the enum's own message would repr hostile input
        return kind(value)
    except (ValueError, TypeError):
        options = ", ".join(repr(member.value) for member in kind)
        raise ValidationError(f"{what} {_checks.short(value)} is not one of {options}.") from None


def _outcome(value: object) -> Outcome:
    result: Outcome = _enum(Outcome, value, "Stage outcome")
    return result


def _category(value: object) -> ForecastCategory | None:
    if value is None:
        return None
    result: ForecastCategory = _enum(ForecastCategory, value, "Forecast category")
    return result


def _labels(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"Stage labels must map a locale to a label, not {_checks.short(value)}."
        )
    labels = {
        _checks.text(locale, "Label locale", allow_empty=False): _checks.text(label, "Stage label")
        for locale, label in value.items()
    }
    # Read-only: the stock pipelines are shared by every deal in the process.
    return ReadOnlyDict(labels)


def _required(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(
            f"Required fields must be a list of field names, not {_checks.short(value)}."
        )
    names = tuple(_checks.text(name, "Required field") for name in value)
    unknown = sorted(set(names) - REQUIRABLE_FIELDS)
    if unknown:
        raise ValidationError(
            f"A stage cannot require {unknown[0]!r}; requirable fields are "
            f"{', '.join(sorted(REQUIRABLE_FIELDS))}."
        )
    return names


def _stale(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 36_500:
        raise ValidationError(
            f"stale_after_days {_checks.short(value)} must be a whole number of days from 1 to 36500."
        )
    return value


def _stage_key(value: object) -> str:
    return _checks.text(value, "Stage key", allow_empty=False)


def _stage_label(value: object) -> str:
    return _checks.text(value, "Stage label")


def _stage_probability(value: object) -> Decimal:
    return _checks.percentage(value, "Stage probability")


def _pipeline_id(value: object) -> str:
    return _checks.text(value, "Pipeline id", allow_empty=False)


def _pipeline_name(value: object) -> str:
    return _checks.text(value, "Pipeline name")


@attrs.frozen
class Stage:
    """One step of a pipeline, with its default probability and what it means for the deal."""

    key: str = attrs.field(converter=_stage_key)
    label: str = attrs.field(converter=_stage_label)
    probability: Decimal = attrs.field(converter=_stage_probability)
    outcome: Outcome = attrs.field(default=Outcome.OPEN, converter=_outcome)
    forecast_category: ForecastCategory = attrs.field(default=None, converter=_category)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_labels)
    required: tuple[str, ...] = attrs.field(default=(), converter=_required)
    stale_after_days: int | None = attrs.field(default=None, converter=_stale)

    def __attrs_post_init__(self) -> None:
        if self.forecast_category is None:
            object.__setattr__(self, "forecast_category", _DEFAULT_CATEGORY[self.outcome])

    @property
    def is_open(self) -> bool:
        return self.outcome is Outcome.OPEN

    @property
    def is_won(self) -> bool:
        return self.outcome is Outcome.WON

    @property
    def is_lost(self) -> bool:
        return self.outcome is Outcome.LOST

    def label_for(self, locale: str) -> str:
        """The label in ``locale`` (``"th"``), falling back to ``label``."""
        return self.labels.get(locale, self.label)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "probability": str(self.probability),
            "outcome": self.outcome.value,
            "forecast_category": self.forecast_category.value,
        }
        if self.labels:
            data["labels"] = dict(self.labels)
        if self.required:
            data["required"] = list(self.required)
        if self.stale_after_days is not None:
            data["stale_after_days"] = self.stale_after_days
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        if not isinstance(data, Mapping):
            raise ValidationError(f"A stage must be a mapping, not {_checks.short(data)}.")
        unknown = sorted(str(key) for key in set(data) - _STAGE_KEYS)
        if unknown:
            raise ValidationError(f"Stage has unknown field {unknown[0]!r}.")
        missing = [name for name in ("key", "label", "probability") if name not in data]
        if missing:
            raise ValidationError(f"Stage {_checks.short(dict(data))} lacks {missing[0]!r}.")
        return cls(**data)


_STAGE_KEYS = frozenset(attrs.fields_dict(Stage))


def _stages(value: object) -> tuple[Stage, ...]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(
            f"Pipeline stages must be a list of Stage, not {_checks.short(value)}."
        )
    stages = tuple(value)
    for stage in stages:
        if not isinstance(stage, Stage):
            raise ValidationError(f"Pipeline stage {_checks.short(stage)} is not a Stage.")
    return stages


def _transitions(value: object) -> Mapping[str, tuple[str, ...]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"Transitions must map a stage key to the keys it may move to, not {_checks.short(value)}."
        )
    result: dict[str, tuple[str, ...]] = {}
    for source, targets in value.items():
        key = _checks.text(source, "Transition source", allow_empty=False)
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise ValidationError(
                f"Transitions from {key!r} must be a list of stage keys, not {_checks.short(targets)}."
            )
        result[key] = tuple(
            _checks.text(t, "Transition target", allow_empty=False) for t in targets
        )
    return ReadOnlyDict(result)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(
            f"keep_manual_probability must be True or False, not {_checks.short(value)}."
        )
    return value


def _pipeline_version(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValidationError(
            f"A stored version must be a whole number 0 or more, not {_checks.short(value)}."
        )
    return value


@attrs.frozen
class Pipeline:
    """An ordered set of stages and, optionally, the moves allowed between them.

    Checked when built: unique keys; an open first stage; at least one open, one won and one
    lost stage; won stages at probability 100 and lost at 0; with ``transitions``, every
    stage reachable and every open stage able to reach a closed one.
    """

    id: str = attrs.field(converter=_pipeline_id)
    name: str = attrs.field(converter=_pipeline_name)
    stages: tuple[Stage, ...] = attrs.field(converter=_stages)
    transitions: Mapping[str, tuple[str, ...]] | None = attrs.field(
        default=None, converter=_transitions
    )
    keep_manual_probability: bool = attrs.field(default=False, converter=_bool)
    #: The version of the stored pipeline this value was read at (0: not read from a store);
    #: set and checked by the repository, so a stale copy cannot replace a newer one.  Not part
    #: of the definition: it takes no part in ``==``, ``to_dict()`` or the deals' events.
    version: int = attrs.field(default=0, kw_only=True, eq=False, converter=_pipeline_version)
    _by_key: dict[str, Stage] = attrs.field(init=False, repr=False, eq=False)
    _document: dict[str, Any] | None = attrs.field(init=False, repr=False, eq=False, default=None)

    def __attrs_post_init__(self) -> None:
        by_key: dict[str, Stage] = {}
        for stage in self.stages:
            if stage.key in by_key:
                raise ValidationError(f"Pipeline {self.id!r} has two stages keyed {stage.key!r}.")
            by_key[stage.key] = stage
        object.__setattr__(self, "_by_key", by_key)
        if not self.stages:
            raise ValidationError(f"Pipeline {self.id!r} has no stages.")
        if not self.stages[0].is_open:
            raise ValidationError(
                f"Pipeline {self.id!r} starts with {self.stages[0].key!r}, which is not an open stage."
            )
        for outcome in Outcome:
            if not any(stage.outcome is outcome for stage in self.stages):
                raise ValidationError(f"Pipeline {self.id!r} has no {outcome.value} stage.")
        for stage in self.stages:
            if stage.is_won and stage.probability != 100:
                raise ValidationError(
                    f"Won stage {stage.key!r} has probability {stage.probability}; won stages have 100."
                )
            if stage.is_lost and stage.probability != 0:
                raise ValidationError(
                    f"Lost stage {stage.key!r} has probability {stage.probability}; lost stages have 0."
                )
        if self.transitions is not None:
            self._check_transitions(self.transitions)

    def _check_transitions(self, transitions: Mapping[str, tuple[str, ...]]) -> None:
        for source, targets in transitions.items():
            if source not in self._by_key:
                raise ValidationError(f"Transitions name unknown stage {source!r}.")
            if not self._by_key[source].is_open:
                raise ValidationError(
                    f"Transitions start from closed stage {source!r}; closed stages leave by reopen."
                )
            for target in targets:
                if target not in self._by_key:
                    raise ValidationError(
                        f"Transitions from {source!r} name unknown stage {target!r}."
                    )
        reached = {self.stages[0].key}
        frontier = [self.stages[0].key]
        while frontier:
            for target in transitions.get(frontier.pop(), ()):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        unreachable = [stage.key for stage in self.stages if stage.key not in reached]
        if unreachable:
            raise ValidationError(
                f"Pipeline {self.id!r}: stage {unreachable[0]!r} cannot be reached from {self.stages[0].key!r}."
            )
        # One search backwards from the closed stages finds every stage that can close
        # (linear, so a pipeline read from a hostile file cannot stall validation).
        sources: dict[str, list[str]] = {}
        for source, targets in transitions.items():
            for target in targets:
                sources.setdefault(target, []).append(source)
        closes = {stage.key for stage in self.stages if not stage.is_open}
        frontier = list(closes)
        while frontier:
            for source in sources.get(frontier.pop(), ()):
                if source not in closes:
                    closes.add(source)
                    frontier.append(source)
        for stage in self.stages:
            if stage.is_open and stage.key not in closes:
                raise ValidationError(
                    f"Pipeline {self.id!r}: open stage {stage.key!r} cannot reach a closed stage."
                )

    # -- reading -------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def stage(self, key: str) -> Stage:
        """The stage keyed ``key``, or ``ValidationError`` naming the keys there are."""
        stage = self._by_key.get(key) if isinstance(key, str) else None
        if stage is None:
            raise ValidationError(
                f"Pipeline {self.id!r} has no stage {_checks.short(key)}; its stages are "
                f"{', '.join(repr(s.key) for s in self.stages)}."
            )
        return stage

    @property
    def first_stage(self) -> Stage:
        return self.stages[0]

    @property
    def open_stages(self) -> tuple[Stage, ...]:
        return tuple(stage for stage in self.stages if stage.is_open)

    @property
    def won_stages(self) -> tuple[Stage, ...]:
        return tuple(stage for stage in self.stages if stage.is_won)

    @property
    def lost_stages(self) -> tuple[Stage, ...]:
        return tuple(stage for stage in self.stages if stage.is_lost)

    def index(self, key: str) -> int:
        """The position of stage ``key`` in pipeline order."""
        return self.stages.index(self.stage(key))

    def may_move(self, from_key: str, to_key: str) -> bool:
        """Whether the graph lets a deal go from ``from_key`` to ``to_key`` with ``move_to``.

        Says nothing of required fields; ``allowed_moves`` checks those too.
        """
        source, target = self.stage(from_key), self.stage(to_key)
        if source.key == target.key:
            return False
        if not source.is_open:
            return target.outcome is source.outcome
        if self.transitions is None:
            return True
        return target.key in self.transitions.get(source.key, ())

    def allowed_moves(self, opp: Opportunity) -> tuple[str, ...]:
        """The stage keys ``opp.move_to`` would accept now, in pipeline order; never raises."""
        try:
            current = opp.stage.key
            if opp.pipeline != self or current not in self._by_key:
                return ()
            return tuple(
                stage.key
                for stage in self.stages
                if self.may_move(current, stage.key) and not opp.missing_for(stage)
            )
        except Exception:  # a guard answers; it never raises
            return ()

    # -- the stock pipelines -------------------------------------------------------------

    @classmethod
    def default(cls) -> Pipeline:
        """Wait (10), In progress (50), Closed Won (100), Closed Lost (0), labelled in en and th."""
        return _DEFAULT

    @classmethod
    def salesforce(cls) -> Pipeline:
        """Salesforce's ten standard opportunity stages with their default probabilities."""
        return _SALESFORCE

    # -- config files --------------------------------------------------------------------

    def _shared_dict(self) -> dict[str, Any]:
        """``to_dict()`` made once and shared: for oppcore's own writers, which never change
        it (every opened deal carries its pipeline, so this is on the hot path of saving)."""
        document = self._document
        if document is None:
            document = self.to_dict()
            object.__setattr__(self, "_document", document)
        return document

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict; ``Pipeline.from_dict`` reads it back."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "stages": [stage.to_dict() for stage in self.stages],
        }
        if self.transitions is not None:
            data["transitions"] = {key: list(targets) for key, targets in self.transitions.items()}
        if self.keep_manual_probability:
            data["keep_manual_probability"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pipeline:
        """A pipeline from a dict such as a config file holds; ``ValidationError`` says what is wrong."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"A pipeline must be a mapping, not {_checks.short(data)}.")
        known = {"id", "name", "stages", "transitions", "keep_manual_probability"}
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise ValidationError(f"Pipeline has unknown field {unknown[0]!r}.")
        for name in ("id", "name", "stages"):
            if name not in data:
                raise ValidationError(f"Pipeline lacks {name!r}.")
        raw_stages = data["stages"]
        if isinstance(raw_stages, (str, Mapping)) or not isinstance(raw_stages, Iterable):
            raise ValidationError(
                f"Pipeline stages must be a list, not {_checks.short(raw_stages)}."
            )
        return cls(
            id=data["id"],
            name=data["name"],
            stages=tuple(Stage.from_dict(stage) for stage in raw_stages),
            transitions=data.get("transitions"),
            keep_manual_probability=data.get("keep_manual_probability", False),
        )


_DEFAULT = Pipeline(
    id="default",
    name="Default",
    stages=(
        Stage("wait", "Wait", 10, labels={"en": "Wait", "th": "รอดำเนินการ"}),
        Stage(
            "in_progress",
            "In progress",
            50,
            forecast_category=ForecastCategory.BEST_CASE,
            labels={"en": "In progress", "th": "ระหว่างดำเนินการ"},
        ),
        Stage(
            "closed_won",
            "Closed Won",
            100,
            Outcome.WON,
            labels={"en": "Closed Won", "th": "ปิดการขายได้"},
        ),
        Stage(
            "closed_lost",
            "Closed Lost",
            0,
            Outcome.LOST,
            labels={"en": "Closed Lost", "th": "ปิดการขายไม่ได้"},
        ),
    ),
)

_SALESFORCE = Pipeline(
    id="salesforce",
    name="Salesforce standard",
    stages=(
        Stage("prospecting", "Prospecting", 10),
        Stage("qualification", "Qualification", 10),
        Stage("needs_analysis", "Needs Analysis", 20),
        Stage("value_proposition", "Value Proposition", 50),
        Stage("id_decision_makers", "Id. Decision Makers", 60),
        Stage("perception_analysis", "Perception Analysis", 70),
        Stage("proposal_price_quote", "Proposal/Price Quote", 75),
        Stage("negotiation_review", "Negotiation/Review", 90),
        Stage("closed_won", "Closed Won", 100, Outcome.WON),
        Stage("closed_lost", "Closed Lost", 0, Outcome.LOST),
    ),
)
