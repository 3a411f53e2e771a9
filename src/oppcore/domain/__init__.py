"""The opportunity domain: money, pipelines, line items, events, opportunities, leads, campaigns.

Imports nothing from storage, analytics, io, plot or cli.
"""

from oppcore.domain.events import (
    Event,
    FieldsChanged,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    Lost,
    Opened,
    Reopened,
    StageChanged,
    Won,
)
from oppcore.domain.history import HistoryEntry, StageInterval
from oppcore.domain.lead import Campaign, Lead
from oppcore.domain.line_items import LineItem, LineKind
from oppcore.domain.money import ExchangeRates, Money, minor_units
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import ForecastCategory, Outcome, Pipeline, Stage
from oppcore.domain.versions import DealVersion

__all__ = [
    "Campaign",
    "DealVersion",
    "Event",
    "ExchangeRates",
    "FieldsChanged",
    "ForecastCategory",
    "HistoryEntry",
    "Lead",
    "LineItem",
    "LineItemAdded",
    "LineItemChanged",
    "LineItemRemoved",
    "LineKind",
    "Lost",
    "Money",
    "Opened",
    "Opportunity",
    "Outcome",
    "Pipeline",
    "Reopened",
    "Stage",
    "StageChanged",
    "StageInterval",
    "Won",
    "minor_units",
]
