"""A seeded generator of realistic sample pipelines: for the demo, the docs, benchmarks and tests.

``generate(seed=0)`` makes a year in the life of a Thai seller of fleet-tracking, cold-chain,
warehouse and dashcam solutions: two pipelines (the default one and a B2B pipeline with its
own transitions), six campaigns, leads from web, referral, trade show, cold call, partner,
email and paid-search channels (some converted into deals, most not), customers with Thai
and English names, five sales reps, and deals that open through the year and are worked
with oppcore's own commands: line items with add-ons and services (or a budget typed by
hand), stage moves forward and sometimes back, discounts and scope changes, expected close
dates pushed out, wins, losses with reasons, and a few reopens.  By the end of the year
about two deals in three are closed, a third of those won; the rest are open with expected
closes in the following quarters.

All money is in THB, so reports need no exchange rates.  Nothing reads the wall clock, a
global random generator or ``uuid``: the same ``seed`` and ``start`` give equal samples,
with ids such as ``opp-0001`` (in the order the deals opened), ``lead-0001`` (in the order
the leads came in) and ``cmp-2026-expo``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, TypeAlias

import attrs
from dateutil.relativedelta import relativedelta

from oppcore._repr import short
from oppcore.clock import FixedClock
from oppcore.domain import (
    Campaign,
    ForecastCategory,
    Lead,
    LineItem,
    LineKind,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
)
from oppcore.exceptions import ValidationError

#: Thailand's time zone (no daylight saving): the sample's office hours are Bangkok's.
BANGKOK: Final = timezone(timedelta(hours=7), "ICT")
#: Where the default year of history begins: Monday 5 January 2026, 09:00 in Bangkok.
DEFAULT_START: Final = datetime(2026, 1, 5, 2, 0, tzinfo=timezone.utc)
#: The most deals one call makes.
MAX_OPPORTUNITIES: Final = 100_000
#: The one currency of the sample.
CURRENCY: Final = "THB"

#: The sample's own pipeline for larger B2B deals: four open stages with Thai labels and
#: stale limits, proposals and beyond need an amount, and the moves allowed are given.
B2B_PIPELINE: Final = Pipeline(
    id="b2b",
    name="B2B solutions",
    stages=(
        Stage(
            "qualify",
            "Qualify",
            10,
            labels={"en": "Qualify", "th": "คัดกรองลูกค้า"},
            stale_after_days=14,
        ),
        Stage(
            "demo",
            "Demo",
            25,
            labels={"en": "Demo", "th": "สาธิตสินค้า"},
            stale_after_days=21,
        ),
        Stage(
            "proposal",
            "Proposal",
            50,
            forecast_category=ForecastCategory.BEST_CASE,
            labels={"en": "Proposal", "th": "เสนอราคา"},
            required=("amount",),
            stale_after_days=30,
        ),
        Stage(
            "negotiation",
            "Negotiation",
            75,
            forecast_category=ForecastCategory.COMMIT,
            labels={"en": "Negotiation", "th": "เจรจาต่อรอง"},
            required=("amount", "expected_close"),
            stale_after_days=21,
        ),
        Stage(
            "won",
            "Won",
            100,
            Outcome.WON,
            labels={"en": "Won", "th": "ปิดการขายได้"},
            required=("amount",),
        ),
        Stage("lost", "Lost", 0, Outcome.LOST, labels={"en": "Lost", "th": "ปิดการขายไม่ได้"}),
    ),
    transitions={
        "qualify": ("demo", "lost"),
        "demo": ("proposal", "qualify", "lost"),
        "proposal": ("negotiation", "demo", "won", "lost"),
        "negotiation": ("proposal", "won", "lost"),
    },
)


@attrs.frozen(repr=False)
class Sample:
    """A generated book of business: pipelines, campaigns, leads and opportunities.

    Each is a tuple: leads in the order they came in, opportunities in the order they
    opened.  ``values()`` lists everything for ``Repository.save_all``.
    """

    pipelines: tuple[Pipeline, ...]
    campaigns: tuple[Campaign, ...]
    leads: tuple[Lead, ...]
    opportunities: tuple[Opportunity, ...]

    def __repr__(self) -> str:
        # Not the attrs repr: that would print every deal's.
        return (
            f"<Sample pipelines={len(self.pipelines)} campaigns={len(self.campaigns)} "
            f"leads={len(self.leads)} opportunities={len(self.opportunities)}>"
        )

    def values(self) -> tuple[Pipeline | Campaign | Lead | Opportunity, ...]:
        """Pipelines, campaigns, leads, then opportunities: ready for ``repository.save_all``."""
        return (*self.pipelines, *self.campaigns, *self.leads, *self.opportunities)


def history_span(start: datetime | date | None = None) -> tuple[datetime, datetime]:
    """When the year of history ``generate(start=start)`` makes begins and ends (UTC).

    Every event of the sample happens in ``[begin, end)``; ``end`` is a year after
    ``begin``, the natural ``now`` for reports on the sample.
    """
    begin = _start(start)
    return begin, begin + relativedelta(years=1)


def generate(
    *, seed: int = 0, opportunities: int = 300, start: datetime | date | None = None
) -> Sample:
    """A realistic sample pipeline with a year of history, the same for the same arguments.

    ``seed`` picks the sample; ``opportunities`` is how many deals (0 to 100,000);
    ``start`` (an aware datetime, or a date meaning 09:00 in Bangkok that day) is where the
    year of history begins, by default ``DEFAULT_START``; all events fall in the year
    ``history_span(start)`` gives.  Every new-customer deal was opened from its lead with
    ``Lead.convert``; twice as many leads again were never converted, so there are three
    leads for each deal with a ``lead_id``.  Upsells and renewals go to existing customers
    (lead source ``"existing_customer"``) without a lead.  ``ValidationError`` names a bad
    argument.

    >>> sample = generate(seed=7, opportunities=20)
    >>> len(sample.opportunities), len(sample.pipelines), len(sample.campaigns)
    (20, 2, 6)
    >>> sample.opportunities[0].id, sample.opportunities[0].currency
    ('opp-0001', 'THB')
    >>> generate(seed=7, opportunities=20) == sample
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError(f"seed must be a whole number, not {short(seed)}.")
    if isinstance(opportunities, bool) or not isinstance(opportunities, int):
        raise ValidationError(
            f"opportunities must be a whole number from 0 to {MAX_OPPORTUNITIES:,}, "
            f"not {short(opportunities)}."
        )
    if not 0 <= opportunities <= MAX_OPPORTUNITIES:
        raise ValidationError(
            f"opportunities {opportunities!r} is out of range: give 0 to {MAX_OPPORTUNITIES:,}."
        )
    begin, end = history_span(start)
    return _Generator(random.Random(seed), begin, end).run(opportunities)


def _start(start: object) -> datetime:
    if start is None:
        return DEFAULT_START
    if isinstance(start, datetime):
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValidationError(
                f"start {start!r} is naive: give it a timezone, such as UTC or Asia/Bangkok."
            )
        begin = start.astimezone(timezone.utc)
    elif isinstance(start, date):
        begin = datetime.combine(start, time(9), BANGKOK).astimezone(timezone.utc)
    else:
        raise ValidationError(f"start must be an aware datetime or a date, not {short(start)}.")
    # Expected closes run up to two years past the start: keep well inside the calendar.
    if not 1900 <= begin.year <= 9000:
        raise ValidationError(f"start {start!r} is outside the years 1900 to 9000.")
    return begin


# -- the catalogue -------------------------------------------------------------------------


@attrs.frozen
class _Product:
    """A catalogue entry: its price, and how many a deal takes."""

    name: str
    price: Money
    kind: LineKind = LineKind.PRODUCT
    #: Quantity follows the main product's (one per vehicle, per user, ...).
    per_unit: bool = False
    low: int = 1
    high: int = 1
    description: str = ""


@attrs.frozen
class _Offering:
    """A product line: the main product, its add-ons and its services."""

    title_en: str
    title_th: str
    main: _Product
    add_ons: tuple[_Product, ...]
    services: tuple[_Product, ...]


def _thb(amount: str) -> Money:
    return Money(amount, CURRENCY)


_FLEET = _Offering(
    "fleet tracking",
    "ระบบติดตามรถ",
    _Product("GPS tracker T4", _thb("4850.00"), low=10, high=150),
    (
        _Product("Fuel level sensor FS-2", _thb("2900.00"), LineKind.ADD_ON, per_unit=True),
        _Product("Driver ID card reader", _thb("1250.00"), LineKind.ADD_ON, per_unit=True),
    ),
    (
        _Product(
            "Installation",
            _thb("350.00"),
            LineKind.SERVICE,
            per_unit=True,
            description="ติดตั้งหน้างาน",
        ),
        _Product(
            "Driver training (half day)",
            _thb("12000.00"),
            LineKind.SERVICE,
            high=3,
            description="อบรมพนักงานขับรถ",
        ),
    ),
)
_COLD_CHAIN = _Offering(
    "cold chain monitoring",
    "ระบบตรวจวัดอุณหภูมิห้องเย็น",
    _Product("Temperature logger TL-8", _thb("6900.00"), low=5, high=80),
    (
        _Product("Door open sensor", _thb("890.00"), LineKind.ADD_ON, per_unit=True),
        _Product("Spare temperature probe", _thb("650.00"), LineKind.ADD_ON, per_unit=True),
    ),
    (
        _Product(
            "Calibration certificate",
            _thb("1200.00"),
            LineKind.SERVICE,
            per_unit=True,
            description="ใบรับรองการสอบเทียบ",
        ),
        _Product("On-site commissioning", _thb("15000.00"), LineKind.SERVICE),
    ),
)
_WAREHOUSE = _Offering(
    "warehouse management",
    "ระบบบริหารคลังสินค้า",
    _Product("WMS licence, per user, 12 months", _thb("9600.00"), low=5, high=60),
    (
        _Product("Handheld scanner kit", _thb("18500.00"), LineKind.ADD_ON, low=2, high=20),
        _Product("Label printer ZT-4", _thb("32000.00"), LineKind.ADD_ON, low=1, high=4),
    ),
    (
        _Product(
            "Implementation project",
            _thb("180000.00"),
            LineKind.SERVICE,
            description="ติดตั้งและวางระบบ",
        ),
        _Product("Training day", _thb("25000.00"), LineKind.SERVICE, high=3),
    ),
)
_DASHCAM = _Offering(
    "AI dashcams",
    "กล้องติดรถยนต์ AI",
    _Product("AI dashcam DC-3", _thb("7400.00"), low=10, high=120),
    (_Product("Cloud video storage, 12 months", _thb("2400.00"), LineKind.ADD_ON, per_unit=True),),
    (
        _Product(
            "Installation",
            _thb("500.00"),
            LineKind.SERVICE,
            per_unit=True,
            description="ติดตั้งหน้างาน",
        ),
    ),
)
_RENEWAL = _Offering(
    "platform renewal",
    "ต่ออายุบริการแพลตฟอร์ม",
    _Product("Fleet platform subscription, 12 months", _thb("1800.00"), low=20, high=300),
    (),
    (
        _Product(
            "Premium support, 12 months",
            _thb("36000.00"),
            LineKind.SERVICE,
            description="บริการดูแลหลังการขาย",
        ),
    ),
)
# New business and upsells, by share: fleet tracking sells most.
_OFFERINGS: Final = (_FLEET, _COLD_CHAIN, _WAREHOUSE, _DASHCAM)
_OFFERING_WEIGHTS: Final = (40, 25, 15, 20)

# -- the campaigns -------------------------------------------------------------------------


@attrs.frozen
class _CampaignPlan:
    """A campaign of the sample year: its name (Thai ones by the Buddhist Era year), type,
    the lead source its leads carry, its share of campaign leads, when it starts (months
    and days after the year's start), how many days it runs, and its budget in THB."""

    key: str
    name: str
    type: str
    source: str
    weight: int
    months: int
    days: int
    length: int
    budget: int


_CAMPAIGNS: Final = (
    _CampaignPlan(
        key="expo",
        name="LogiAsia Expo Bangkok {year}",
        type="trade_show",
        source="trade_show",
        weight=25,
        months=2,
        days=10,
        length=3,
        budget=650_000,
    ),
    _CampaignPlan(
        key="email",
        name="อีเมลแนะนำสินค้าใหม่ {buddhist_year}",
        type="email",
        source="email",
        weight=15,
        months=3,
        days=0,
        length=45,
        budget=120_000,
    ),
    _CampaignPlan(
        key="webinar",
        name="Fleet Visibility Webinar Series",
        type="webinar",
        source="web",
        weight=15,
        months=1,
        days=0,
        length=240,
        budget=90_000,
    ),
    _CampaignPlan(
        key="partner",
        name="โครงการพันธมิตรตัวแทนจำหน่าย {buddhist_year}",
        type="partner",
        source="partner",
        weight=20,
        months=0,
        days=0,
        length=330,
        budget=400_000,
    ),
    _CampaignPlan(
        key="search",
        name="Google Ads - GPS tracking",
        type="paid_search",
        source="paid_search",
        weight=20,
        months=0,
        days=0,
        length=364,
        budget=360_000,
    ),
    _CampaignPlan(
        key="roadshow",
        name="โรดโชว์ระบบห้องเย็น เชียงใหม่",
        type="roadshow",
        source="trade_show",
        weight=10,
        months=7,
        days=14,
        length=5,
        budget=250_000,
    ),
)

# -- the people ----------------------------------------------------------------------------

# Sales reps, and how much better or worse than the average each closes.
_OWNERS: Final = (
    ("Naree", 1.1),
    ("Somchai", 1.0),
    ("Ploy", 1.2),
    ("Kittipong", 0.8),
    ("Sarah", 0.95),
)
_MANAGER: Final = "wichai"

_THAI_PLACES: Final = (
    "สยาม",
    "กรุงเทพ",
    "เชียงใหม่",
    "ภูเก็ต",
    "ขอนแก่น",
    "ชลบุรี",
    "อยุธยา",
    "โคราช",
    "หาดใหญ่",
    "อุดร",
    "ลานนา",
    "อันดามัน",
)
_THAI_TRADES: Final = (
    "โลจิสติกส์",
    "ฟู้ดส์",
    "คอนสตรัคชั่น",
    "เมดิคอล",
    "พลาสติก",
    "ออโต้พาร์ท",
    "รีเทล",
    "เกษตรภัณฑ์",
    "ขนส่ง",
    "ห้องเย็น",
    "ฟาร์มาซี",
    "เทรดดิ้ง",
)
_ENGLISH_PLACES: Final = (
    "Siam",
    "Bangkok",
    "Chiang Mai",
    "Phuket",
    "Eastern Seaboard",
    "Chao Phraya",
    "Mekong",
    "Andaman",
    "Korat",
    "Lanna",
)
_ENGLISH_TRADES: Final = (
    "Logistics",
    "Foods",
    "Cold Chain",
    "Freight",
    "Retail",
    "Pharma",
    "Steel",
    "Packaging",
    "Auto Parts",
    "Beverages",
)
_THAI_FIRST: Final = ("สมศักดิ์", "มาลี", "ปิยะ", "วรรณา", "ธนพล", "สุภาพร", "ชัยวัฒน์", "อรุณี")
_THAI_LAST: Final = ("ใจดี", "สุขสวัสดิ์", "ศรีสุข", "วงศ์ไทย", "ทองดี", "บุญมา")
_ENGLISH_CONTACTS: Final = (
    "Somsak Wongthai",
    "Malee Srisuk",
    "Piya Boonma",
    "Jennifer Tan",
    "David Miller",
    "Anong Chaiyaporn",
    "Kenji Sato",
    "Priya Nair",
)

_LOST_REASONS: Final = (
    ("Price too high", 25),
    ("Chose a competitor", 25),
    ("No budget this year", 15),
    ("Project postponed", 15),
    ("No decision, went silent", 10),
    ("ลูกค้าเลือกใช้ระบบของคู่แข่ง", 5),
    ("งบประมาณไม่เพียงพอ", 5),
)

# Lead sources without a campaign, with their weights; and how each source's deals close
# compared with the average (so the effectiveness reports have something to show).
_PLAIN_SOURCES: Final = (("referral", 35), ("web", 30), ("cold_call", 25), ("partner", 10))
_SOURCE_WIN: Final = {
    "referral": 1.5,
    "partner": 1.2,
    "trade_show": 1.1,
    "existing_customer": 1.0,
    "web": 0.9,
    "email": 0.8,
    "paid_search": 0.7,
    "cold_call": 0.6,
}
_TYPE_WIN: Final = {"new_customer": 0.27, "upsell": 0.45, "renewal": 0.7}

_FORWARD: Final = {
    "default": ("wait", "in_progress"),
    "b2b": ("qualify", "demo", "proposal", "negotiation"),
}
# Median days a deal spends in each open stage.
_DWELL: Final = {
    "wait": 24.0,
    "in_progress": 60.0,
    "qualify": 20.0,
    "demo": 36.0,
    "proposal": 42.0,
    "negotiation": 32.0,
}
# How much likelier a deal opens late in the year than early (1: evenly).
_GROWTH: Final = 0.8
# Where lost deals drop out, by open stage.
_LOSS_WEIGHTS: Final = {"default": (45, 55), "b2b": (30, 25, 25, 20)}
_DISCOUNTS: Final = tuple(Decimal(d) for d in ("5", "7.5", "10", "12", "15"))

# One step of a deal's plan: a kind ("move", "win", ...) and its argument.
_Action: TypeAlias = tuple[str, str]


@attrs.frozen
class _Account:
    full: str
    short: str
    thai: bool


@attrs.frozen
class _Channel:
    """A campaign, the lead source its leads carry, its share of leads, and its days."""

    campaign: Campaign
    source: str
    weight: int
    first: date
    last: date


@attrs.define
class _Spec:
    """A deal before it is worked: drawn first, so ids follow the order deals open."""

    order: int
    opened_at: datetime
    type: str
    account: _Account
    source: str
    campaign: Campaign | None
    lead_at: datetime | None
    id: str = ""
    lead: Lead | None = None


@attrs.define
class _LeadSpec:
    created_at: datetime
    order: int
    source: str
    campaign: Campaign | None
    account: _Account
    deal: _Spec | None


def _index(rng: random.Random, weights: Sequence[int]) -> int:
    """A position in ``weights``, drawn in proportion to them."""
    pick = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        pick -= weight
        if pick < 0:
            return index
    return len(weights) - 1


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return choices[_index(rng, [weight for _, weight in choices])][0]


class _Stop(Exception):
    """The next step of a deal would fall after the year of history: stop working it."""


def _working(t: datetime) -> datetime:
    """``t``, or the next moment after it in Bangkok office hours (weekdays, 09:00 to 18:00).

    Only ever moves forward, so a deal's events stay in order.
    """
    local = t.astimezone(BANGKOK)
    if local.hour < 9:
        local = local.replace(hour=9)
    elif local.hour >= 18:
        local = (local + timedelta(days=1)).replace(hour=9)
    weekday = local.weekday()
    if weekday >= 5:
        local += timedelta(days=7 - weekday)
    return local.astimezone(timezone.utc)


def _day(t: datetime) -> date:
    """The date in Bangkok at ``t``: expected closes are Thai calendar days."""
    return t.astimezone(BANGKOK).date()


def _days(days: float) -> timedelta:
    return timedelta(minutes=round(days * 1440))


class _Generator:
    """Draws the sample: the campaigns and accounts, then a spec per deal, then the leads
    (numbered in the order they came in), then each deal worked in the order it opened."""

    def __init__(self, rng: random.Random, begin: datetime, end: datetime) -> None:
        self.rng = rng
        self.begin = begin
        self.end = end
        self.clock = FixedClock(begin)
        self.campaigns, self.channels = self._campaigns()
        self.channel_weights = [channel.weight for channel in self.channels]
        accounts = self._accounts()
        # A third of the accounts are existing customers: upsells and renewals go to them.
        cut = len(accounts) // 3
        self.customers, self.prospects = accounts[:cut], accounts[cut:]

    def run(self, count: int) -> Sample:
        specs = [self._spec(order) for order in range(count)]
        specs.sort(key=lambda spec: (spec.opened_at, spec.order))
        width = max(4, len(str(count)))
        lead_specs: list[_LeadSpec] = []
        for number, spec in enumerate(specs, 1):
            spec.id = f"opp-{number:0{width}d}"
            if spec.lead_at is not None:
                lead_specs.append(
                    _LeadSpec(
                        spec.lead_at,
                        len(lead_specs),
                        spec.source,
                        spec.campaign,
                        spec.account,
                        spec,
                    )
                )
        for _ in range(2 * len(lead_specs)):
            lead_specs.append(self._unconverted(len(lead_specs)))
        lead_specs.sort(key=lambda lead: (lead.created_at, lead.order))
        lead_width = max(4, len(str(len(lead_specs))))
        leads = []
        for number, item in enumerate(lead_specs, 1):
            lead = Lead(
                id=f"lead-{number:0{lead_width}d}",
                name=self._contact(item.account),
                company=item.account.full,
                source=item.source,
                campaign_id=None if item.campaign is None else item.campaign.id,
                created_at=item.created_at,
            )
            leads.append(lead)
            if item.deal is not None:
                item.deal.lead = lead
        deals = tuple(_Deal(self, spec).work() for spec in specs)
        return Sample(
            pipelines=(Pipeline.default(), B2B_PIPELINE),
            campaigns=self.campaigns,
            leads=tuple(leads),
            opportunities=deals,
        )

    # -- the setting -----------------------------------------------------------------------

    def _campaigns(self) -> tuple[tuple[Campaign, ...], tuple[_Channel, ...]]:
        first = _day(self.begin)
        year = first.year
        campaigns = []
        channels = []
        for plan in _CAMPAIGNS:
            begins = first + relativedelta(months=plan.months, days=plan.days)
            ends = begins + timedelta(days=plan.length - 1)
            spent = round(plan.budget * self.rng.uniform(0.8, 1.2) / 1000) * 1000
            campaign = Campaign(
                id=f"cmp-{year}-{plan.key}",
                name=plan.name.format(year=year, buddhist_year=year + 543),
                type=plan.type,
                start=begins,
                end=ends,
                budgeted_cost=Money(plan.budget, CURRENCY),
                actual_cost=Money(spent, CURRENCY),
            )
            campaigns.append(campaign)
            channels.append(_Channel(campaign, plan.source, plan.weight, begins, ends))
        return tuple(campaigns), tuple(channels)

    def _accounts(self) -> list[_Account]:
        accounts = []
        for place in _THAI_PLACES:
            for trade in _THAI_TRADES:
                name = place + trade  # Thai writes a company name without spaces
                form = self.rng.random()
                if form < 0.75:
                    full = f"บริษัท {name} จำกัด"
                elif form < 0.9:
                    full = f"บริษัท {name} จำกัด (มหาชน)"
                else:
                    full = f"ห้างหุ้นส่วนจำกัด {name}"
                accounts.append(_Account(full, name, True))
        for place in _ENGLISH_PLACES:
            for trade in _ENGLISH_TRADES:
                name = f"{place} {trade}"
                form = self.rng.random()
                if form < 0.6:
                    full = f"{name} Co., Ltd."
                elif form < 0.8:
                    full = f"{name} Public Company Limited"
                else:
                    full = f"{name} (Thailand) Co., Ltd."
                accounts.append(_Account(full, name, False))
        self.rng.shuffle(accounts)
        return accounts

    def _contact(self, account: _Account) -> str:
        if account.thai and self.rng.random() < 0.8:
            return f"{self.rng.choice(_THAI_FIRST)} {self.rng.choice(_THAI_LAST)}"
        return self.rng.choice(_ENGLISH_CONTACTS)

    # -- when things happen ----------------------------------------------------------------

    def _moment(self, low: datetime, high: datetime, *, skew: float = 1.0) -> datetime:
        """A moment from ``low`` to ``high``, moved into office hours; ``skew`` below 1
        makes later moments likelier."""
        span = max((high - low).total_seconds(), 0.0)
        fraction = self.rng.random() ** skew
        return _working(low + timedelta(minutes=int(fraction * span / 60)))

    def _opening_time(self) -> datetime:
        # The business grows through the year: more deals open later than earlier.  Three
        # days short of the end, as office hours move a Friday evening to Monday at most.
        return self._moment(self.begin, self.end - timedelta(days=3), skew=_GROWTH)

    def _campaign_lead_time(self, channel: _Channel) -> datetime:
        low = datetime.combine(channel.first, time(9), BANGKOK)
        high = datetime.combine(channel.last, time(18), BANGKOK)
        return self._moment(max(low, self.begin), min(high, self.end - timedelta(days=4)))

    def _channel(self) -> _Channel:
        return self.channels[_index(self.rng, self.channel_weights)]

    def _spec(self, order: int) -> _Spec:
        rng = self.rng
        kind = _weighted(rng, (("new_customer", 55), ("upsell", 30), ("renewal", 15)))
        if kind != "new_customer":
            account = rng.choice(self.customers)
            opened = self._opening_time()
            return _Spec(order, opened, kind, account, "existing_customer", None, None)
        account = rng.choice(self.prospects)
        if rng.random() < 0.55:
            channel = self._channel()
            lead_at = self._campaign_lead_time(channel)
            opened = min(
                _working(lead_at + _days(rng.uniform(1, 30))),
                _working(self.end - timedelta(days=3)),
            )
            return _Spec(order, opened, kind, account, channel.source, channel.campaign, lead_at)
        source = _weighted(rng, _PLAIN_SOURCES)
        opened = self._opening_time()
        lead_at = max(self.begin, _working(opened - _days(rng.uniform(1, 21))))
        # Office hours may move the lead past the opening; a lead never comes after its deal.
        return _Spec(order, opened, kind, account, source, None, min(lead_at, opened))

    def _unconverted(self, order: int) -> _LeadSpec:
        rng = self.rng
        account = rng.choice(self.prospects)
        if rng.random() < 0.6:
            channel = self._channel()
            created = self._campaign_lead_time(channel)
            return _LeadSpec(created, order, channel.source, channel.campaign, account, None)
        source = _weighted(rng, _PLAIN_SOURCES)
        return _LeadSpec(self._opening_time(), order, source, None, account, None)


class _Deal:
    """One deal: opened from its spec, then worked through its plan with the clock moving
    forward, never past the end of the year."""

    def __init__(self, generator: _Generator, spec: _Spec) -> None:
        rng = self.rng = generator.rng
        self.end = generator.end
        self.clock = generator.clock
        self.spec = spec
        self.account = spec.account
        self.owner, self.skill = rng.choice(_OWNERS)
        self.by = self.owner.lower()
        self.lines = 0
        if spec.type == "renewal":
            self.offering = _RENEWAL
            b2b = False
        else:
            self.offering = _OFFERINGS[_index(rng, _OFFERING_WEIGHTS)]
            b2b = rng.random() < (0.75 if spec.type == "new_customer" else 0.6)
        self.pipeline = B2B_PIPELINE if b2b else Pipeline.default()
        self.forward = _FORWARD[self.pipeline.id]
        # Most renewals start already in progress.
        self.first = 1 if spec.type == "renewal" and rng.random() < 0.7 else 0
        self.opp = self._open()

    def _open(self) -> Opportunity:
        rng = self.rng
        spec = self.spec
        roll = rng.random()
        items: list[LineItem] = []
        budget: Money | None = None
        if spec.type == "renewal" or roll < 0.55:
            items = self._lines(with_extras=rng.random() < 0.6)
        elif roll < 0.75:
            budget = self._budget()
        # Reps guess the close from a typical cycle, optimistically more often than not.
        typical = sum(_DWELL[key] for key in self.forward[self.first :])
        expected = _day(spec.opened_at) + timedelta(days=round(typical * rng.uniform(0.5, 1.3)))
        title = self.offering.title_th if self.account.thai else self.offering.title_en
        self.clock.set(spec.opened_at)
        fields: dict[str, Any] = {
            "name": f"{self.account.short} - {title}",
            "pipeline": self.pipeline,
            "stage": self.forward[self.first],
            "type": spec.type,
            "currency": CURRENCY,
            "amount": budget,
            "expected_close": expected,
            "owner": self.owner,
            "line_items": items,
            "id": spec.id,
            "by": self.by,
            "clock": self.clock,
        }
        if spec.lead is not None:
            return spec.lead.convert(**fields)
        return Opportunity.open(
            account=self.account.full,
            lead_source=spec.source,
            campaign_id=None if spec.campaign is None else spec.campaign.id,
            **fields,
        )

    def work(self) -> Opportunity:
        """Run the plan until it ends or the year does, then tidy up the expected close."""
        t = self.spec.opened_at
        try:
            for gap, (kind, argument) in self._plan():
                t = _working(t + _days(max(gap, 0.02)))
                if t >= self.end:
                    break
                self._slip(t)
                self._do(kind, argument, t)
        except _Stop:
            pass
        self._year_end()
        return self.opp

    # -- the plan --------------------------------------------------------------------------

    def _plan(self) -> list[tuple[float, _Action]]:
        """The deal's steps, each with the days since the step before: each stage visited
        with its side steps spread over the time spent there, then the close (and perhaps
        a reopen and a second close)."""
        rng = self.rng
        forward = self.forward
        first = self.first
        b2b = self.pipeline is B2B_PIPELINE
        chance = _TYPE_WIN[self.spec.type] * _SOURCE_WIN[self.spec.source] * self.skill
        won = rng.random() < min(max(chance, 0.05), 0.9)
        last = len(forward) - 1
        if won:  # some B2B deals are won straight from the proposal
            stop = last if not b2b or rng.random() < 0.8 else last - 1
        else:
            stop = first + _index(rng, _LOSS_WEIGHTS[self.pipeline.id][first:])
        stall = rng.randrange(first, stop + 1) if rng.random() < 0.15 else -1
        steps: list[tuple[float, _Action]] = []
        amount_known = bool(self.opp.line_items) or self.opp.manual_amount is not None
        for index in range(first, stop + 1):
            side: list[_Action] = []
            leaving = index < stop
            late = index >= last - 1
            if not amount_known and (leaving or rng.random() < 0.5):
                side.append(("lines", ""))
                amount_known = True
            elif self.opp.manual_amount is not None and late and rng.random() < 0.3:
                side.append(("budget_to_lines", ""))
            if late and rng.random() < 0.35:
                side.append(("extra_line", ""))
            if late and rng.random() < 0.15:
                side.append(("quantity", ""))
            if index == last and rng.random() < 0.45:
                side.append(("discount", ""))
            if late and rng.random() < 0.08:
                side.append(("drop_line", ""))
            if index == last and rng.random() < 0.1:
                side.append(("pull_in", ""))
            if rng.random() < 0.04:
                side.append(("owner", ""))
            if index > first and rng.random() < 0.06:
                side.append(("probability", ""))
            dwell = rng.lognormvariate(math.log(_DWELL[forward[index]]), 0.6)
            if index == stall:
                dwell *= 4
            exit_action: _Action
            if leaving:
                exit_action = ("move", forward[index + 1])
            elif won:
                exit_action = ("win", "")
            else:
                exit_action = ("lose", _weighted(rng, _LOST_REASONS))
            cuts = sorted(rng.random() for _ in side)
            previous = 0.0
            for cut, action in zip(cuts, side, strict=True):
                steps.append((dwell * (cut - previous), action))
                previous = cut
            steps.append((dwell * (1 - previous), exit_action))
            # Now and then a negotiation goes back to a revised proposal, and forward again.
            if b2b and index == last == stop and rng.random() < 0.12:
                back = rng.lognormvariate(math.log(8), 0.5)
                steps[-1:-1] = [
                    (dwell * 0.5, ("move", "proposal")),
                    (back * 0.6, ("discount", "")),
                    (back * 0.4, ("move", "negotiation")),
                ]
        # A few lost deals come back, and a rare won one falls through.
        if not won and rng.random() < 0.08:
            steps.append((rng.uniform(10, 60), ("reopen", "")))
            for stage in forward[stop + 1 :]:
                steps.append((rng.lognormvariate(math.log(_DWELL[stage]), 0.5), ("move", stage)))
            again: _Action = (
                ("win", "") if rng.random() < 0.5 else ("lose", _weighted(rng, _LOST_REASONS))
            )
            steps.append((rng.uniform(5, 30), again))
        elif won and rng.random() < 0.015:
            steps.append((rng.uniform(5, 40), ("reopen", "")))
            steps.append((rng.uniform(2, 10), ("lose", "Customer cancelled the order")))
        return steps

    # -- working it ------------------------------------------------------------------------

    def _at(self, t: datetime) -> FixedClock:
        """The clock at ``t``, or at the deal's last event if that is later; ``_Stop`` when
        that is past the year of history."""
        t = max(t, self.opp.events[-1].at)
        if t >= self.end:
            raise _Stop
        self.clock.set(t)
        return self.clock

    def _slip(self, t: datetime) -> None:
        """Before the step at ``t``: a deal past its expected close usually gets a later
        one, set on the day it was due (or at its last event, if that came after)."""
        opp = self.opp
        close = opp.expected_close
        if not opp.is_open or close is None or close >= _day(t) or self.rng.random() < 0.25:
            return
        due = _working(datetime.combine(close, time(10, self.rng.randrange(60)), BANGKOK))
        later = _day(t) + timedelta(days=self.rng.randint(14, 75))
        self.opp = opp.update(expected_close=later, by=self.by, clock=self._at(min(due, t)))

    def _year_end(self) -> None:
        """Before the year ends reps tidy up: most open deals that are past due, or due in
        the last days of the year, get an expected close in the following quarters."""
        opp = self.opp
        close = opp.expected_close
        horizon = _day(self.end)
        if not opp.is_open or (close is not None and close > horizon) or self.rng.random() < 0.1:
            return
        last = opp.events[-1].at
        when = (last + (self.end - last) * self.rng.uniform(0.5, 0.95)).replace(
            second=0, microsecond=0
        )
        if _working(when) < self.end:
            when = _working(when)
        if when <= last:
            return
        later = horizon + timedelta(days=self.rng.randint(14, 240))
        self.opp = opp.update(expected_close=later, by=self.by, clock=self._at(when))

    def _do(self, kind: str, argument: str, t: datetime) -> None:
        opp = self.opp
        by = self.by
        rng = self.rng
        if kind == "move":
            if opp.amount is None:  # proposals need an amount: quote before moving
                opp = self._add_lines(opp, t)
            opp = opp.move_to(argument, by=by, clock=self._at(t))
        elif kind == "win":
            if opp.amount is None:
                opp = self._add_lines(opp, t)
            # A fifth of wins are logged the next working morning, back-dated to the signing.
            logged = _working(t + timedelta(hours=rng.randint(14, 20)))
            if rng.random() < 0.2 and logged < self.end:
                opp = opp.win(at=max(t, opp.events[-1].at), by=by, clock=self._at(logged))
            else:
                opp = opp.win(by=by, clock=self._at(t))
        elif kind == "lose":
            opp = opp.lose(reason=argument, by=by, clock=self._at(t))
        elif kind == "reopen":
            opp = opp.reopen(by=by, clock=self._at(t))
            later = _day(t) + timedelta(days=rng.randint(20, 60))
            opp = opp.update(expected_close=later, by=by, clock=self._at(t + timedelta(minutes=5)))
        elif kind == "lines":
            opp = self._add_lines(opp, t)
        elif kind == "budget_to_lines":  # the quote replaces the budget typed in by hand
            opp = self._add_lines(opp, t)
            opp = opp.update(amount=None, by=by, clock=self._at(t + timedelta(minutes=20)))
        elif kind == "extra_line":
            opp = self._extra_line(opp, t)
        elif kind == "quantity":
            main = self._main(opp)
            if main is not None:
                factor = Decimal(rng.choice((60, 75, 80, 120, 125, 150))) / 100
                quantity = max(int(main.quantity * factor), 1)
                opp = opp.update_line_item(main.id, quantity=quantity, by=by, clock=self._at(t))
        elif kind == "discount":
            opp = self._discount(opp, t)
        elif kind == "drop_line":
            parents = {item.parent_id for item in opp.line_items}
            loose = [
                item
                for item in opp.line_items
                if item.kind is LineKind.SERVICE and item.id not in parents
            ]
            if loose and len(opp.line_items) > 1:
                opp = opp.remove_line_item(rng.choice(loose).id, by=by, clock=self._at(t))
        elif kind == "pull_in":
            close = opp.expected_close
            sooner = _day(t) + timedelta(days=rng.randint(5, 14))
            if close is not None and sooner < close:
                opp = opp.update(expected_close=sooner, by=by, clock=self._at(t))
        elif kind == "owner":  # the manager hands the deal to another rep
            self.owner = rng.choice([name for name, _ in _OWNERS if name != opp.owner])
            self.by = self.owner.lower()
            opp = opp.update(owner=self.owner, by=_MANAGER, clock=self._at(t))
        elif kind == "probability":  # the manager's own view of the deal
            hunch = int(opp.stage.probability) + rng.choice((-20, -15, -10, 10, 15, 20))
            opp = opp.update(probability=min(max(hunch, 5), 95), by=_MANAGER, clock=self._at(t))
        self.opp = opp

    # -- line items and amounts ------------------------------------------------------------

    @staticmethod
    def _main(opp: Opportunity) -> LineItem | None:
        return next((item for item in opp.line_items if item.kind is LineKind.PRODUCT), None)

    def _item(self, product: _Product, quantity: int, parent: str | None = None) -> LineItem:
        self.lines += 1
        return LineItem(
            product.name,
            product.price,
            quantity=quantity,
            kind=product.kind,
            description=product.description,
            parent_id=parent,
            id=f"line-{self.lines}",
        )

    def _quantity(self, product: _Product, units: int) -> int:
        if product.per_unit:
            return max(1, round(units * self.rng.choice((0.5, 0.75, 1.0, 1.0, 1.0))))
        return self.rng.randint(product.low, product.high)

    def _lines(self, *, with_extras: bool) -> list[LineItem]:
        """The main product, and perhaps an add-on on it and a service."""
        rng = self.rng
        offering = self.offering
        product = offering.main
        units = rng.randint(product.low, product.high)
        if product.low >= 10:  # fleets come in round numbers
            units = max(product.low, units - units % 5)
        main = self._item(product, units)
        items = [main]
        if with_extras:
            if offering.add_ons and rng.random() < 0.7:
                add_on = rng.choice(offering.add_ons)
                items.append(self._item(add_on, self._quantity(add_on, units), main.id))
            if offering.services and rng.random() < 0.8:
                service = rng.choice(offering.services)
                items.append(self._item(service, self._quantity(service, units)))
        return items

    def _budget(self) -> Money:
        """A round budget typed in by hand, near what the lines would come to."""
        product = self.offering.main
        units = self.rng.randint(product.low, product.high)
        estimate = int(product.price.amount) * units * self.rng.uniform(1.0, 1.6)
        return Money(max(int(estimate) // 10_000, 1) * 10_000, CURRENCY)

    def _add_lines(self, opp: Opportunity, t: datetime) -> Opportunity:
        """The quote: a few lines, entered a few minutes apart."""
        for index, item in enumerate(self._lines(with_extras=self.rng.random() < 0.7)):
            moment = self._at(t + timedelta(minutes=3 * index))
            opp = opp.add_line_item(item, by=self.by, clock=moment)
            self.opp = opp
        return opp

    def _extra_line(self, opp: Opportunity, t: datetime) -> Opportunity:
        """An add-on on the main product, or a service the customer asked for."""
        main = self._main(opp)
        if main is None:
            return opp
        taken = {item.product for item in opp.line_items}
        offering = self.offering
        choices = [p for p in (*offering.add_ons, *offering.services) if p.name not in taken]
        if not choices:
            return opp
        product = self.rng.choice(choices)
        parent = main.id if product.kind is LineKind.ADD_ON else None
        item = self._item(product, self._quantity(product, int(main.quantity)), parent)
        return opp.add_line_item(item, by=self.by, clock=self._at(t))

    def _discount(self, opp: Opportunity, t: datetime) -> Opportunity:
        """A discount on the main product, or a lower budget when the amount is by hand."""
        rng = self.rng
        budget = opp.manual_amount
        if budget is not None:
            cut = rng.choice((5, 8, 10, 15))
            lower = int(budget.amount) * (100 - cut) // 100 // 1000 * 1000
            return opp.update(
                amount=Money(max(lower, 1000), CURRENCY), by=self.by, clock=self._at(t)
            )
        main = self._main(opp)
        if main is None:
            return opp
        bigger = [d for d in _DISCOUNTS if d > main.discount]
        if not bigger:
            return opp
        discount = rng.choice(bigger)
        return opp.update_line_item(main.id, discount=discount, by=self.by, clock=self._at(t))


__all__ = [
    "B2B_PIPELINE",
    "BANGKOK",
    "CURRENCY",
    "DEFAULT_START",
    "MAX_OPPORTUNITIES",
    "Sample",
    "generate",
    "history_span",
]
