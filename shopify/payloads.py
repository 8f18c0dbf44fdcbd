"""Shopify's webhook bodies, read into what the loyalty services take.

Everything a payload says is checked here, before any service runs: a body that fails raises
`Refused` with a reason a person can act on (it is recorded with the delivery and answered
200, since Shopify would otherwise retry it for 48 hours). Optional profile fields that are
unusable (a phone that isn't a number, an email that isn't one) are left out rather than
refusing the customer.

Shapes follow Shopify's REST webhook payloads (orders, refunds, customers): ids are JSON
numbers up to 2**63, money is a decimal string ("49.90") on orders and a number (49.9) on
refund line items, with the exact string in `subtotal_set.shop_money.amount`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_datetime

MAX_ID = 2**63 - 1  # Shopify ids are 64-bit
MAX_MONEY = Decimal("999999999999.99")  # what an order's subtotal column holds
MAX_TAGS = 50
CENT = Decimal("0.01")


class Refused(Exception):
    """The payload can't be applied; `reason` says why."""

    def __init__(self, reason: str, subject: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.subject = subject


def parse_body(body: bytes) -> dict:
    """The JSON object of a (verified) body. Floats become Decimals, so money stays exact."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an int of 5,000 digits, …
        raise Refused("The body is not JSON.") from None
    if not isinstance(data, dict):
        raise Refused("The body is not a JSON object.")
    return data


def shopify_id(value, what: str) -> str:
    """A Shopify id as our external id: its decimal digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise Refused(f"The {what} id is missing or not a Shopify id.")
    return str(value)


def money(value, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise Refused(f"The {what} is missing or not an amount.")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        raise Refused(f"The {what} {str(value)[:30]!r} is not an amount.") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_MONEY:
        raise Refused(f"The {what} is out of range.")
    return amount.quantize(CENT)


def timestamp(value, what: str) -> datetime:
    try:
        parsed = parse_datetime(value) if isinstance(value, str) and len(value) <= 40 else None
    except ValueError:  # well formed, but not a date (month 13)
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Refused(f"The {what} is missing or not a time with its offset.")
    return parsed


def _text(value, max_length: int) -> str | None:
    """A usable string (None when it isn't one), cut to what the column holds."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    return value.strip()[:max_length]


def _phone(value, region: str) -> str | None:
    text = _text(value, 40)
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value) -> str | None:
    text = _text(value, 254)
    if not text:
        return None
    try:
        validate_email(text)
    except ValidationError:
        return None
    return text


def _tags(value) -> list[str]:
    """Shopify keeps a customer's tags as one string, "VIP, Wholesale"."""
    text = _text(value, 10_000)
    tags: list[str] = []
    for tag in (text or "").split(","):
        tag = tag.strip()[:64]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


@dataclass(frozen=True)
class Customer:
    external_id: str
    profile: dict = field(default_factory=dict)  # only the fields Shopify gave usably
    tags: list[str] = field(default_factory=list)


def customer(data, region: str) -> Customer:
    """A customer object (a customers/* body, or an order's `customer`)."""
    if not isinstance(data, dict):
        raise Refused("The customer is not an object.")
    external_id = shopify_id(data.get("id"), "customer")
    profile = {}
    phone = _phone(data.get("phone"), region)
    if phone:
        profile["phone"] = phone
    email = _email(data.get("email"))
    if email:
        profile["email"] = email
    for name in ("first_name", "last_name"):
        text = _text(data.get(name), 100)
        if text:
            profile[name] = text
    return Customer(external_id=external_id, profile=profile, tags=_tags(data.get("tags")))


@dataclass(frozen=True)
class Order:
    order_id: str
    customer: Customer | None  # None: a guest order, which earns no one points
    subtotal: Decimal
    currency: str
    placed_at: datetime


def order(data: dict, region: str) -> Order:
    order_id = shopify_id(data.get("id"), "order")
    subject = f"order {order_id}"
    buyer = data.get("customer")
    try:
        subtotal_raw = data.get("subtotal_price")
        if subtotal_raw is None:
            subtotal_raw = data.get("current_subtotal_price")
        subtotal = money(subtotal_raw, "subtotal_price")
        currency = data.get("currency")
        if not isinstance(currency, str) or not (
            len(currency) == 3 and currency.isascii() and currency.isupper()
        ):
            raise Refused("The currency is missing or not an ISO 4217 code.")
        placed_raw = data.get("created_at") or data.get("processed_at")
        placed_at = timestamp(placed_raw, "created_at")
        return Order(
            order_id=order_id,
            customer=customer(buyer, region) if buyer is not None else None,
            subtotal=subtotal,
            currency=currency,
            placed_at=placed_at,
        )
    except Refused as refused:
        raise Refused(refused.reason, subject) from None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    amount: Decimal  # the refunded line items' subtotal, in the shop's currency


def refund(data: dict) -> Refund:
    """Only line items count: they are what earned points (an order's subtotal_price is its
    line items after discounts). Shipping, duties, taxes and order adjustments are left out."""
    refund_id = shopify_id(data.get("id"), "refund")
    subject = f"refund {refund_id}"
    try:
        order_id = shopify_id(data.get("order_id"), "order")
        lines = data.get("refund_line_items")
        if lines is None:
            lines = []
        if not isinstance(lines, list):
            raise Refused("refund_line_items is not a list.")
        amount = Decimal(0)
        for line in lines:
            if not isinstance(line, dict):
                raise Refused("A refund line item is not an object.")
            amount += money(_line_subtotal(line), "refund line item's subtotal")
        if amount > MAX_MONEY:
            raise Refused("The refunded amount is out of range.")
    except Refused as refused:
        raise Refused(refused.reason, subject) from None
    return Refund(refund_id=refund_id, order_id=order_id, amount=amount)


def _line_subtotal(line: dict):
    """The exact string in the shop's currency when given; the (float) number otherwise."""
    subtotal_set = line.get("subtotal_set")
    shop_money = subtotal_set.get("shop_money") if isinstance(subtotal_set, dict) else None
    if isinstance(shop_money, dict) and shop_money.get("amount") is not None:
        return shop_money["amount"]
    return line.get("subtotal")
