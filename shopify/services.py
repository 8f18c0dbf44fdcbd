"""Writes of the shopify app: connecting a store, and applying its webhooks.

A webhook is mapped onto the same services as the REST API (member_upsert, order_record,
refund_record), inside the brand's scope, in one transaction with the ShopifyWebhook row that
records it: a delivery is applied once, however often Shopify retries it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loyaltysms.db import insert_unless_exists
from loyaltysms.models import AuditEvent, Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt, encrypt
from programs.models import Order as LoyaltyOrder
from programs.models import Refund as LoyaltyRefund
from programs.services.members import member_tags_change, member_upsert
from programs.services.orders import order_record, refund_record
from shopify import payloads
from shopify.models import ShopifyConnection, ShopifyWebhook, WebhookOutcome, validate_shop_domain
from shopify.payloads import Refused

# The topics a store should subscribe to, and what each does (docs/shopify.md).
TOPICS = {
    "customers/create": "enrolls the customer as a member",
    "customers/update": "updates the member's name, email, phone and tags",
    "orders/create": "enrolls the order's customer (no points yet)",
    "orders/paid": "awards the order's points, once per order",
    "refunds/create": "takes back the refunded share of the order's points",
}

MIN_SECRET, MAX_SECRET = 16, 200


def shop_domain_normalize(value: str) -> str:
    """What a person pastes ("https://Alices-Bakery.myshopify.com/admin", "alices-bakery")
    → the store's myshopify.com domain, as Shopify sends it in X-Shopify-Shop-Domain."""
    value = value.strip().lower()
    for scheme in ("https://", "http://"):
        value = value.removeprefix(scheme)
    value = value.split("/", 1)[0]
    if value and "." not in value:
        value += ".myshopify.com"
    return value


@transaction.atomic
def connection_save(
    *, tenant: Tenant, shop_domain: str, secret: str, actor: User | None = None
) -> ShopifyConnection:
    """Connect the brand's store, or replace its domain and secret. The secret is stored
    encrypted and never shown again; a store can belong to one brand only."""
    shop_domain = shop_domain_normalize(shop_domain)
    try:
        validate_shop_domain(shop_domain)
    except ValidationError as error:
        raise ValidationError({"shop_domain": error.messages}) from None
    secret = secret.strip()
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or any(c.isspace() for c in secret):
        raise ValidationError({"secret": "This doesn't look like a Shopify secret."})
    taken = ValidationError({"shop_domain": "This store is connected to another brand."})
    with tenant_scope(tenant):
        # WARNING: all tenants' connections, to refuse a store another brand has.
        others = ShopifyConnection.objects.unscoped().exclude(tenant=tenant)
        if others.filter(shop_domain=shop_domain).exists():
            raise taken
        connection = ShopifyConnection.objects.first() or ShopifyConnection(tenant=tenant)
        connection.shop_domain = shop_domain
        connection.secret_encrypted = encrypt(secret)
        try:
            with transaction.atomic():
                connection.save()
        except IntegrityError:  # the same store, connected by another brand a moment ago
            raise taken from None
        AuditEvent.objects.create(actor=actor, action="shopify.connect", target=shop_domain)
        return connection


@transaction.atomic
def connection_disconnect(*, connection: ShopifyConnection, actor: User | None = None) -> None:
    """Forget the store and its secret: its webhooks are refused from now on. The record of
    deliveries stays (a reconnected store's replays are still recognised)."""
    with tenant_scope(connection.tenant):
        ShopifyConnection.objects.filter(pk=connection.pk).delete()
        AuditEvent.objects.create(
            actor=actor, action="shopify.disconnect", target=connection.shop_domain
        )


# Signed with this when no store matches, so an unknown shop takes as long as a bad signature.
_NO_SECRET = b"no store has this domain"


def signature_valid(connection: ShopifyConnection | None, body: bytes, header: str) -> bool:
    """X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(secret, raw body)); compared in constant
    time. Checked before the body is parsed."""
    key = decrypt(connection.secret_encrypted).encode() if connection else _NO_SECRET
    expected = hmac.new(key, body, hashlib.sha256).digest()
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):  # not base64, or not ASCII
        given = b""
    return hmac.compare_digest(expected, given) and connection is not None


@dataclass(frozen=True)
class Received:
    webhook: ShopifyWebhook
    duplicate: bool  # the same delivery came before: nothing was done this time


@dataclass(frozen=True)
class Result:
    outcome: str
    subject: str = ""
    detail: str = ""


@transaction.atomic
def webhook_receive(
    *, connection: ShopifyConnection, webhook_id: str, topic: str, body: bytes, now: datetime
) -> Received:
    """Apply a verified delivery once. The delivery's row is claimed first (a concurrent
    retry waits on it, then finds it); what the payload does commits with it, or not at all.

    A payload the rules refuse is recorded as refused with the reason, and nothing of it is
    applied; a database failure raises, so the whole delivery rolls back and Shopify retries.
    """
    tenant = connection.tenant
    with tenant_scope(tenant):
        webhook = ShopifyWebhook(
            tenant=tenant,
            webhook_id=webhook_id,
            topic=topic[:60],
            outcome=WebhookOutcome.APPLIED,
            received_at=now,
        )
        if not insert_unless_exists(webhook, conflict=("tenant", "webhook_id")):
            return Received(
                webhook=ShopifyWebhook.objects.get(webhook_id=webhook_id), duplicate=True
            )
        try:
            with transaction.atomic():  # a refusal undoes whatever the payload had begun
                result = _apply(tenant, topic, body, now)
        except Refused as refused:
            result = Result(WebhookOutcome.REFUSED, refused.subject, refused.reason)
        except ProblemError as problem:  # a rule of the loyalty services said no
            result = Result(WebhookOutcome.REFUSED, detail=problem.detail)
        webhook.outcome = result.outcome
        webhook.subject = result.subject[:100]
        webhook.detail = result.detail[:300]
        webhook.save(update_fields=["outcome", "subject", "detail"])
        return Received(webhook=webhook, duplicate=False)


def _apply(tenant: Tenant, topic: str, body: bytes, now: datetime) -> Result:
    handler = HANDLERS.get(topic)
    if handler is None:
        return Result(WebhookOutcome.IGNORED, detail=f"The topic {topic[:60]!r} isn't used.")
    return handler(tenant, payloads.parse_body(body), now)


def _member_sync(tenant: Tenant, buyer: payloads.Customer, now: datetime):
    """The customer as a member. Shopify's tags are added to the member's; none are removed,
    so tags that flows and imports gave the member survive a customer update."""
    upserted = member_upsert(tenant=tenant, external_id=buyer.external_id, now=now, **buyer.profile)
    if buyer.tags:
        member_tags_change(member=upserted.member, add=buyer.tags, remove=[], now=now)
    return upserted


def _customer(tenant: Tenant, data: dict, now: datetime) -> Result:
    buyer = payloads.customer(data, tenant.default_country)
    upserted = _member_sync(tenant, buyer, now)
    return Result(
        WebhookOutcome.APPLIED,
        f"customer {buyer.external_id}",
        "Member enrolled." if upserted.created else "Member updated.",
    )


def _order_created(tenant: Tenant, data: dict, now: datetime) -> Result:
    order = payloads.order(data, tenant.default_country)
    subject = f"order {order.order_id}"
    if order.customer is None:
        return Result(WebhookOutcome.IGNORED, subject, "A guest order: no customer to enroll.")
    upserted = _member_sync(tenant, order.customer, now)
    detail = "Member enrolled" if upserted.created else "Member updated"
    return Result(WebhookOutcome.APPLIED, subject, f"{detail}; points come when it is paid.")


def _order_paid(tenant: Tenant, data: dict, now: datetime) -> Result:
    order = payloads.order(data, tenant.default_country)
    subject = f"order {order.order_id}"
    if order.customer is None:
        return Result(WebhookOutcome.IGNORED, subject, "A guest order: no member earns its points.")
    _member_sync(tenant, order.customer, now)
    try:
        recorded = order_record(
            tenant=tenant,
            order_id=order.order_id,
            member_external_id=order.customer.external_id,
            subtotal=order.subtotal,
            currency=order.currency,
            placed_at=order.placed_at,
            now=now,
        )
    except ProblemError as problem:  # another currency, more points than an account holds
        raise Refused(problem.detail, subject) from problem
    if not recorded.created:
        return Result(WebhookOutcome.IGNORED, subject, "Recorded already: no second award.")
    points = recorded.order.points_awarded
    return Result(WebhookOutcome.APPLIED, subject, f"{points} points awarded.")


def _refund_created(tenant: Tenant, data: dict, now: datetime) -> Result:
    refund = payloads.refund(data)
    subject = f"refund {refund.refund_id} of order {refund.order_id}"
    order = LoyaltyOrder.objects.select_related("member").filter(order_id=refund.order_id).first()
    if order is None:
        return Result(WebhookOutcome.IGNORED, subject, "The order earned no points here.")
    if refund.amount <= 0:
        return Result(WebhookOutcome.IGNORED, subject, "No line items refunded.")
    if LoyaltyRefund.objects.filter(refund_id=refund.refund_id).exists():
        return Result(WebhookOutcome.IGNORED, subject, "Recorded already.")
    # Shopify is the record of what was refunded: a refund past our subtotal (an order edited
    # after it was paid) takes back what is left, not nothing.
    amount = min(refund.amount, order.subtotal - order.refunded_amount)
    if amount <= 0:
        return Result(WebhookOutcome.IGNORED, subject, "The order is refunded in full already.")
    try:
        recorded = refund_record(order=order, refund_id=refund.refund_id, amount=amount, now=now)
    except ProblemError as problem:  # e.g. the refund id was used for another order
        raise Refused(problem.detail, subject) from problem
    if not recorded.created:
        return Result(WebhookOutcome.IGNORED, subject, "Recorded already.")
    return Result(
        WebhookOutcome.APPLIED, subject, f"{recorded.refund.points_reversed} points taken back."
    )


HANDLERS = {
    "customers/create": _customer,
    "customers/update": _customer,
    "orders/create": _order_created,
    "orders/paid": _order_paid,
    "refunds/create": _refund_created,
}
