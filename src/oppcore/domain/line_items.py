"""Line items: the products, add-ons and services a deal would sell."""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal

import attrs

from oppcore.domain import _checks
from oppcore.domain.money import EXACT, Money, as_money
from oppcore.exceptions import ValidationError


class LineKind(str, enum.Enum):
    """What a line sells."""

    PRODUCT = "product"
    ADD_ON = "add_on"
    SERVICE = "service"


def _kind(value: object) -> LineKind:
    try:
        if not isinstance(value, str):
            raise TypeError  # the enum's own message would repr hostile input
        return LineKind(value)
    except (ValueError, TypeError):
        raise ValidationError(
            f"Line kind {_checks.short(value)} is not one of 'product', 'add_on', 'service'."
        ) from None


def _quantity(value: object) -> Decimal:
    quantity = _checks.decimal(value, "Quantity")
    if quantity <= 0:
        raise ValidationError(f"Quantity {_checks.short(value)} must be more than zero.")
    return quantity


def _product(value: object) -> str:
    return _checks.text(value, "Product", allow_empty=False)


def _unit_price(value: object) -> Money:
    return as_money(value, "Unit price")


def _discount(value: object) -> Decimal:
    return _checks.percentage(value, "Discount")


def _description(value: object) -> str:
    return _checks.text(value, "Description")


def _parent_id(value: object) -> str | None:
    return _checks.optional_text(value, "Parent line id")


def _new_id(value: object) -> str:
    if value is None:
        return str(uuid.uuid4())
    return _checks.text(value, "Line item id", allow_empty=False)


@attrs.frozen
class LineItem:
    """One line of a deal: ``quantity x unit_price``, less ``discount`` percent.

    ``LineItem("GTX Pro", Money("4821.00", "USD"), quantity=2, discount=10)``.  An add-on
    may name the line it belongs to in ``parent_id``.
    """

    product: str = attrs.field(converter=_product)
    unit_price: Money = attrs.field(converter=_unit_price)
    quantity: Decimal = attrs.field(default=Decimal(1), converter=_quantity)
    discount: Decimal = attrs.field(default=Decimal(0), converter=_discount)
    kind: LineKind = attrs.field(default=LineKind.PRODUCT, converter=_kind)
    description: str = attrs.field(default="", converter=_description)
    parent_id: str | None = attrs.field(default=None, converter=_parent_id)
    id: str = attrs.field(default=None, converter=_new_id)

    def __attrs_post_init__(self) -> None:
        if self.unit_price.amount < 0:
            raise ValidationError(
                f"Unit price {self.unit_price!r} of {self.product!r} is negative."
            )
        if self.parent_id is not None and self.parent_id == self.id:
            raise ValidationError(f"Line item {self.id!r} names itself as its parent.")

    @property
    def currency(self) -> str:
        return self.unit_price.currency

    @property
    def total(self) -> Money:
        """``quantity x unit_price x (1 - discount / 100)``, exact."""
        gross = EXACT.multiply(self.quantity, self.unit_price.amount)
        if self.discount:
            kept = EXACT.subtract(Decimal(1), EXACT.divide(self.discount, Decimal(100)))
            gross = EXACT.multiply(gross, kept)
        return Money._exact(gross, self.unit_price.currency)
