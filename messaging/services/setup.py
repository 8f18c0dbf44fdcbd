"""A brand's messaging settings and senders."""

from __future__ import annotations

import re
import secrets
import time

import phonenumbers
from django.db import IntegrityError, transaction

from loyaltysms.models import AuditEvent, Tenant, User
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import encrypt
from messaging.models import MessagingSettings, Sender, SenderKind

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")


class SetupError(ValueError):
    """Bad carrier details; the message says which and why."""


# Read by every text made and every inbound text. Each process keeps them for a few seconds;
# a change made here drops them at once, one made in another process is seen within
# SETTINGS_TTL (as programs.services.program does for the loyalty program).
SETTINGS_TTL = 5.0
_settings: dict[int, tuple[float, MessagingSettings]] = {}
_senders: dict[int, tuple[float, Sender]] = {}


def _cached(cache: dict, tenant_id: int):
    hit = cache.get(tenant_id)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def messaging_changed(tenant: Tenant) -> None:
    _settings.pop(tenant.pk, None)
    _senders.pop(tenant.pk, None)


def messaging_settings_get(tenant: Tenant) -> MessagingSettings:
    """The brand's settings, created with the compliant defaults on first use."""
    found = _cached(_settings, tenant.pk)
    if found is not None:
        return found
    with tenant_scope(tenant):
        found = MessagingSettings.objects.filter().first()
        if found is None:
            try:
                with transaction.atomic():
                    found = MessagingSettings.objects.create()
            except IntegrityError:  # created concurrently
                found = MessagingSettings.objects.get()
    _settings[tenant.pk] = (time.monotonic() + SETTINGS_TTL, found)
    return found


def brand_name(tenant: Tenant, settings: MessagingSettings) -> str:
    return settings.brand_name or tenant.name


def sandbox_number(tenant: Tenant) -> str:
    """A number no phone can have (+1 555 area code), unique per brand."""
    return f"+1555{tenant.pk:07d}"


def sender_default(tenant: Tenant) -> Sender:
    """The brand's default sender; a new brand gets the sandbox, which texts no real phone."""
    found = _cached(_senders, tenant.pk)
    if found is not None:
        return found
    with tenant_scope(tenant):
        found = Sender.objects.filter(is_default=True).first()
        if found is None:
            try:
                with transaction.atomic():
                    found = Sender.objects.create(
                        kind=SenderKind.SANDBOX,
                        phone_number=sandbox_number(tenant),
                        account_sid="AC" + secrets.token_hex(16),
                        auth_token_encrypted=encrypt(secrets.token_hex(16)),
                        mps=10,
                        is_default=True,
                    )
            except IntegrityError:
                found = Sender.objects.get(is_default=True)
    _senders[tenant.pk] = (time.monotonic() + SETTINGS_TTL, found)
    return found


def _e164(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise SetupError(f"{value!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise SetupError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@transaction.atomic
def sender_connect_twilio(
    *,
    tenant: Tenant,
    account_sid: str,
    auth_token: str,
    from_number: str | None = None,
    messaging_service_sid: str = "",
    mps: int = 1,
    actor: User | None = None,
) -> Sender:
    """Make a Twilio number or Messaging Service the brand's default sender. The token is
    stored encrypted and never shown again; the sandbox sender stops being the default."""
    if not ACCOUNT_SID.match(account_sid or ""):
        raise SetupError("The Account SID is 'AC' followed by 32 hex characters")
    if not auth_token or len(auth_token) < 16:
        raise SetupError("The auth token is missing or too short")
    if bool(from_number) == bool(messaging_service_sid):
        raise SetupError("Give either a From number or a Messaging Service SID")
    if messaging_service_sid and not SERVICE_SID.match(messaging_service_sid):
        raise SetupError("The Messaging Service SID is 'MG' followed by 32 hex characters")
    if mps < 1:
        raise SetupError("Throughput (MPS) is at least 1")
    number = _e164(from_number, tenant.default_country) if from_number else None
    messaging_changed(tenant)
    transaction.on_commit(lambda: messaging_changed(tenant))
    with tenant_scope(tenant):
        if (
            number
            and Sender.objects.unscoped()
            .filter(phone_number=number)
            .exclude(tenant=tenant)
            .exists()
        ):
            raise SetupError(f"{number} is connected to another brand")
        Sender.objects.filter(is_default=True).update(is_default=False)
        sender = Sender.objects.filter(phone_number=number).first() if number else None
        if sender is None:
            sender = Sender(tenant=tenant)
        sender.kind = SenderKind.TWILIO
        sender.phone_number = number
        sender.messaging_service_sid = messaging_service_sid
        sender.account_sid = account_sid
        sender.auth_token_encrypted = encrypt(auth_token)
        sender.mps = mps
        sender.is_default = True
        sender.save()
        AuditEvent.objects.create(
            actor=actor,
            action="sender.connect_twilio",
            target=number or messaging_service_sid,
            detail={"account_sid": account_sid, "mps": mps},
        )
        messaging_changed(tenant)
        return sender


@transaction.atomic
def sender_use_sandbox(*, tenant: Tenant, actor: User | None = None) -> Sender:
    """Make the sandbox the default sender again (texts go to the phone simulator only)."""
    messaging_changed(tenant)
    transaction.on_commit(lambda: messaging_changed(tenant))
    with tenant_scope(tenant):
        sandbox = Sender.objects.filter(kind=SenderKind.SANDBOX).first()
        Sender.objects.filter(is_default=True).update(is_default=False)
        if sandbox is None:
            sandbox = sender_default(tenant)  # makes the brand's sandbox, as its default
        else:
            sandbox.is_default = True
            sandbox.save(update_fields=["is_default"])
        AuditEvent.objects.create(actor=actor, action="sender.use_sandbox", target="sandbox")
        messaging_changed(tenant)
        return sandbox


SETTINGS_FIELDS = (
    "brand_name",
    "join_keywords",
    "help_text",
    "frequency_text",
    "disclosure_text",
    "terms_url",
    "privacy_url",
    "window_start_hour",
    "window_end_hour",
    "cap_messages",
    "cap_hours",
    "opt_out_footer",
    "footer_text",
    "smart_encoding",
    # Which orders count as a text's (messaging/attribution.py); orders credited already keep
    # their text, as the scan only ever credits new ones.
    "attribution_click_days",
    "attribution_delivery_hours",
)


@transaction.atomic
def messaging_settings_update(
    *, tenant: Tenant, changes: dict, actor: User | None = None
) -> MessagingSettings:
    """Save validated settings (a ModelForm checks them against the model's rules, which
    never allow looser than the law); a new disclosure text gets a new version number, and
    the change is audited."""
    messaging_changed(tenant)
    transaction.on_commit(lambda: messaging_changed(tenant))
    with tenant_scope(tenant):
        # A fresh, locked copy: the shared cached one must never hold half-applied changes.
        settings = MessagingSettings.objects.select_for_update().get(
            pk=messaging_settings_get(tenant).pk
        )
        changed = {}
        for name in SETTINGS_FIELDS:
            if name in changes and getattr(settings, name) != changes[name]:
                changed[name] = changes[name]
                setattr(settings, name, changes[name])
        if "join_keywords" in changed:
            settings.join_keywords = [k.strip().upper() for k in settings.join_keywords if k]
        if "disclosure_text" in changed:
            settings.disclosure_version += 1
            changed["disclosure_version"] = settings.disclosure_version
        if changed:
            settings.save()
        # Saved unchanged, the prefilled texts were read and kept: the setup checklist's tick.
        AuditEvent.objects.create(
            actor=actor,
            action="messaging.settings" if changed else "messaging.settings_reviewed",
            target="compliance settings",
            detail={k: str(v) for k, v in changed.items()},
        )
        messaging_changed(tenant)
        return settings
