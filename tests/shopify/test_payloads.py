"""Reading Shopify's bodies: ids, money and refunds as Shopify writes them."""

from decimal import Decimal

import pytest

from shopify import payloads
from shopify.payloads import Refused

from .conftest import payload


def test_ids_are_kept_as_their_digits():
    assert payloads.shopify_id(5829174620315, "order") == "5829174620315"
    assert payloads.shopify_id("5829174620315", "order") == "5829174620315"
    assert payloads.shopify_id(2**63 - 1, "order") == str(2**63 - 1)


@pytest.mark.parametrize("value", [None, 0, -1, 2**63, True, 1.5, "12x", "", "١٢", [], {}])
def test_anything_else_is_not_an_id(value):
    with pytest.raises(Refused):
        payloads.shopify_id(value, "order")


def test_money_from_strings_and_json_numbers_is_exact():
    body = payloads.parse_body(b'{"a": 27.18, "b": "49.90"}')
    assert payloads.money(body["a"], "x") == Decimal("27.18")
    assert payloads.money(body["b"], "x") == Decimal("49.90")


@pytest.mark.parametrize("value", ["-0.01", "NaN", "Infinity", "1e13", "", "abc", True, None, []])
def test_money_out_of_range_or_not_a_number_is_refused(value):
    with pytest.raises(Refused):
        payloads.money(value, "subtotal")


def test_a_refund_sums_its_line_items_in_the_shops_money():
    body = payload("refunds_create")
    line = dict(body["refund_line_items"][0])
    line["subtotal_set"] = {
        "shop_money": {"amount": "10.00", "currency_code": "USD"},
        "presentment_money": {"amount": "9.10", "currency_code": "EUR"},
    }
    body["refund_line_items"].append(line)
    refund = payloads.refund(body)
    assert (refund.refund_id, refund.order_id) == ("1021394358426", "5829174620315")
    assert refund.amount == Decimal("37.18")


def test_a_customers_unusable_fields_are_left_out():
    buyer = payloads.customer(
        {"id": 42, "email": "not an email", "phone": "12", "first_name": None, "tags": ""},
        "US",
    )
    assert buyer.external_id == "42"
    assert buyer.profile == {} and buyer.tags == []


def test_a_phone_in_the_brands_region_is_stored_as_e164():
    buyer = payloads.customer({"id": 42, "phone": "(212) 555-0142"}, "US")
    assert buyer.profile == {"phone": "+12125550142"}


def test_an_order_without_a_time_offset_is_refused():
    body = payload("orders_paid")
    body["created_at"] = "2024-11-20T16:42:07"
    with pytest.raises(Refused) as refused:
        payloads.order(body, "US")
    assert refused.value.subject == "order 5829174620315"
