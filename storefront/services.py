"""The widget's keys and rules: the publishable key, the customer-signing secret, the allowed
store origins, and how a signed-in customer is proven.

A store's server signs the customer it has signed in: signature = hex HMAC-SHA256(secret,
"<external_id>.<unix seconds>"), valid for SIGNATURE_MAX_AGE. The page can then read and
spend that customer's points, and no other customer's, because only the server knows the
secret (docs/widget.md shows the code for a few stacks).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loyaltysms.models import Tenant, User
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt, encrypt
from storefront.models import Widget

KEY_PREFIX = "pk_"
SECRET_PREFIX = "wsk_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_MAX_AGE = timedelta(hours=24)
# A store's clock may run a little ahead of ours; a signature from further ahead is refused.
SIGNATURE_CLOCK_SKEW = timedelta(minutes=5)
KEY_SHAPE = re.compile(r"pk_[A-Za-z0-9_-]{1,37}")
SIGNATURE_SHAPE = re.compile(r"[0-9a-f]{64}")
MAX_ORIGINS = 20
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def widget_get(tenant: Tenant) -> Widget:
    """The brand's widget, made on first use with a new key and secret."""
    with tenant_scope(tenant):
        widget = Widget.objects.filter(tenant=tenant).first()
        if widget is not None:
            return widget
        try:
            with transaction.atomic():
                return Widget.objects.create(
                    publishable_key=KEY_PREFIX + secrets.token_urlsafe(18),
                    signing_secret_encrypted=encrypt(SECRET_PREFIX + secrets.token_urlsafe(32)),
                )
        except IntegrityError:  # made by a concurrent request a moment ago
            return Widget.objects.get(tenant=tenant)


def widget_by_key(key: str) -> Widget | None:
    """The widget of a publishable key, across brands (the key is how a request finds its
    brand); None for an unknown key or a disabled widget."""
    if not KEY_SHAPE.fullmatch(key):
        return None
    return (
        Widget.objects.unscoped()
        .select_related("tenant")
        .filter(publishable_key=key, enabled=True)
        .first()
    )


def widget_secret_roll(*, widget: Widget, actor: User | None = None) -> str:
    """A new signing secret, returned once; the old one stops working at once."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    widget.signing_secret_encrypted = encrypt(secret)
    widget.save(update_fields=["signing_secret_encrypted", "updated_at"])
    audit(tenant=widget.tenant, actor=actor, action="widget.secret_rolled")
    return secret


def origin_clean(value: str) -> str:
    """A store origin as browsers send it: scheme://host[:port], https (http only for a
    local host), lower case, no path."""
    raw = value.strip().rstrip("/")
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    if (
        parts.scheme not in ("https", "http")
        or not host
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ValidationError(f"{value!r} is not an origin like https://shop.example.com")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise ValidationError(f"{value!r}: a store must use https (http only for localhost)")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(f"{value!r} has a bad port") from None
    netloc = f"[{host}]" if ":" in host else host
    if port and (parts.scheme, port) not in {("https", 443), ("http", 80)}:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}"


@transaction.atomic
def widget_update(
    *, widget: Widget, origins: list[str], enabled: bool, actor: User | None = None
) -> Widget:
    cleaned, problems = [], []
    for origin in origins:
        if origin.strip():
            try:
                cleaned.append(origin_clean(origin))
            except ValidationError as error:
                problems.extend(error.messages)
    if len(set(cleaned)) > MAX_ORIGINS:
        problems.append(f"At most {MAX_ORIGINS} store origins.")
    if problems:
        raise ValidationError({"allowed_origins": problems})
    widget.allowed_origins = sorted(set(cleaned))
    widget.enabled = enabled
    widget.save(update_fields=["allowed_origins", "enabled", "updated_at"])
    audit(
        tenant=widget.tenant,
        actor=actor,
        action="widget.updated",
        origins=widget.allowed_origins,
        enabled=enabled,
    )
    return widget


def customer_signature(secret: str, customer: str, ts: int) -> str:
    """What the store's server computes for its signed-in customer."""
    message = f"{customer}.{ts}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def customer_verified(widget: Widget, customer: str, ts: str, signature: str, now: datetime):
    """Is this the store's signature for this customer, made within SIGNATURE_MAX_AGE (and
    not from further ahead than SIGNATURE_CLOCK_SKEW)?"""
    signature = signature.lower()
    if not customer or not SIGNATURE_SHAPE.fullmatch(signature):
        return False
    if not re.fullmatch(r"[0-9]{1,12}", ts):
        return False
    age = now.timestamp() - int(ts)
    if age > SIGNATURE_MAX_AGE.total_seconds() or age < -SIGNATURE_CLOCK_SKEW.total_seconds():
        return False
    expected = customer_signature(decrypt(widget.signing_secret_encrypted), customer, int(ts))
    return hmac.compare_digest(expected.encode(), signature.encode())
