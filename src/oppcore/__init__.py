"""oppcore: the pipeline core for sales opportunities.

An event-sourced opportunity model with pipelines as checked state machines, exact money,
and every value before and after each change kept.
"""

from importlib.metadata import PackageNotFoundError, version

from oppcore.clock import Clock, FixedClock, SystemClock, get_clock, set_clock, using
from oppcore.domain import (
    Campaign,
    DealVersion,
    Event,
    ExchangeRates,
    FieldsChanged,
    ForecastCategory,
    HistoryEntry,
    Lead,
    LineItem,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    LineKind,
    Lost,
    Money,
    Opened,
    Opportunity,
    Outcome,
    Pipeline,
    Reopened,
    Stage,
    StageChanged,
    StageInterval,
    Won,
)
from oppcore.exceptions import (
    ConcurrencyError,
    CorruptStoreError,
    CurrencyMismatchError,
    DeserializationError,
    MissingRateError,
    NotFoundError,
    OppcoreError,
    OpportunityNotFound,
    StorageError,
    StoreUnavailableError,
    TransitionError,
    ValidationError,
)
from oppcore.serialization import dumps, loads
from oppcore.storage import Repository, open_repository

try:
    __version__ = version("oppcore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Campaign",
    "Clock",
    "ConcurrencyError",
    "CorruptStoreError",
    "CurrencyMismatchError",
    "DealVersion",
    "DeserializationError",
    "Event",
    "ExchangeRates",
    "FieldsChanged",
    "FixedClock",
    "ForecastCategory",
    "HistoryEntry",
    "Lead",
    "LineItem",
    "LineItemAdded",
    "LineItemChanged",
    "LineItemRemoved",
    "LineKind",
    "Lost",
    "MissingRateError",
    "Money",
    "NotFoundError",
    "Opened",
    "OppcoreError",
    "Opportunity",
    "OpportunityNotFound",
    "Outcome",
    "Pipeline",
    "Reopened",
    "Repository",
    "Stage",
    "StageChanged",
    "StageInterval",
    "StorageError",
    "StoreUnavailableError",
    "SystemClock",
    "TransitionError",
    "ValidationError",
    "Won",
    "__version__",
    "dumps",
    "get_clock",
    "loads",
    "open_repository",
    "set_clock",
    "using",
]
