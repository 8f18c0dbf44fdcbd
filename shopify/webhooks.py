"""POST /webhooks/shopify: a store's orders, refunds and customers (docs/shopify.md).

The store is found by X-Shopify-Shop-Domain and the body's HMAC checked with that store's
secret before anything is parsed. An unknown store and a bad signature get the same 401, so
the answer reveals no brand. A verified delivery is answered 200 whatever it held (applied,
ignored, refused as invalid: Shopify retries anything else for 48 hours), except a failure
on our side, which is a 503 so that Shopify retries it.
"""

from __future__ import annotations

import logging
import re

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from messaging.crypto import SecretUnreadable
from shopify import selectors, services

logger = logging.getLogger(__name__)

WEBHOOK_ID = re.compile(r"^[\x21-\x7e]{1,100}$")  # Shopify's are UUIDs


def _unauthorized() -> HttpResponse:
    return HttpResponse("Unauthorized", status=401, content_type="text/plain")


@csrf_exempt
@require_POST
def receive(request: HttpRequest) -> HttpResponse:
    body = request.body
    connection = selectors.connection_for_shop(request.headers.get("X-Shopify-Shop-Domain", ""))
    try:
        valid = services.signature_valid(
            connection, body, request.headers.get("X-Shopify-Hmac-Sha256", "")
        )
    except SecretUnreadable:
        logger.exception("shopify webhook: the store's secret can't be decrypted")
        return HttpResponse("Unavailable", status=503, content_type="text/plain")
    if not valid:
        logger.warning("shopify webhook refused: unknown store or bad signature")
        return _unauthorized()
    webhook_id = request.headers.get("X-Shopify-Webhook-Id", "").strip()
    if not WEBHOOK_ID.match(webhook_id):
        # Shopify always sends one; without it a retry can't be told from a new delivery.
        return HttpResponse("X-Shopify-Webhook-Id is missing", status=400)
    topic = request.headers.get("X-Shopify-Topic", "").strip().replace("\x00", "")
    try:
        received = services.webhook_receive(
            connection=connection,
            webhook_id=webhook_id,
            topic=topic,
            body=body,
            now=timezone.now(),
        )
    except DatabaseError:
        # Nothing was kept (the delivery's row rolled back with the rest): Shopify retries.
        logger.exception("shopify webhook %s failed; Shopify will retry it", webhook_id)
        response = HttpResponse("Try again later", status=503, content_type="text/plain")
        response["Retry-After"] = "60"
        return response
    webhook = received.webhook
    return JsonResponse(
        {"outcome": webhook.outcome, "detail": webhook.detail, "duplicate": received.duplicate}
    )
