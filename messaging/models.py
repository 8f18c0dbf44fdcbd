"""The SMS channel: senders, subscribers and their consent, texts out and in, tracked links."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from phonenumber_field.modelfields import PhoneNumberField

from loyaltysms.models import TenantOwnedModel
from programs.models import ImportStatus, Member, Order


def default_join_keywords() -> list[str]:
    return ["JOIN"]


class MessagingSettings(TenantOwnedModel):
    """A brand's compliance texts and sending rules; one per tenant, created with safe defaults
    (compliance.md: a tenant may make them stricter, never looser)."""

    brand_name = models.CharField(max_length=60, blank=True)  # blank: the tenant's name
    join_keywords = ArrayField(models.CharField(max_length=20), default=default_join_keywords)
    help_text = models.CharField(
        max_length=160, default="Reply STOP to cancel. For help, contact support."
    )
    frequency_text = models.CharField(max_length=60, default="Recurring automated marketing msgs")
    disclosure_text = models.TextField(
        default=(
            "By subscribing you agree to receive recurring automated marketing text messages "
            "at the number provided. Consent is not a condition of purchase. Msg & data rates "
            "may apply. Reply HELP for help, STOP to cancel."
        )
    )
    disclosure_version = models.PositiveIntegerField(default=1)
    terms_url = models.URLField(blank=True)
    privacy_url = models.URLField(blank=True)
    # The hours a marketing text may go out, in the recipient's local time (federal law:
    # 08:00–21:00; stricter states narrow it further on their own).
    window_start_hour = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(8), MaxValueValidator(20)]
    )
    window_end_hour = models.PositiveSmallIntegerField(
        default=21, validators=[MinValueValidator(9), MaxValueValidator(21)]
    )
    # At most cap_messages marketing texts per subscriber in any cap_hours window.
    cap_messages = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    cap_hours = models.PositiveSmallIntegerField(default=12, validators=[MinValueValidator(1)])
    opt_out_footer = models.BooleanField(default=True)
    footer_text = models.CharField(max_length=40, default="Reply STOP to opt out")
    smart_encoding = models.BooleanField(default=False)
    double_opt_in_hours = models.PositiveSmallIntegerField(default=72)
    price_per_segment = models.DecimalField(
        max_digits=8, decimal_places=5, default=Decimal("0.00830")
    )
    # Attribution (messaging/attribution.py): an order within this many days after a click on
    # a tracked link, or else within this many hours after a delivered text (0: never).
    attribution_click_days = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    attribution_delivery_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MaxValueValidator(7 * 24)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="messaging_settings_one_per_tenant"),
            models.CheckConstraint(
                condition=Q(window_start_hour__gte=8)
                & Q(window_end_hour__lte=21)
                & Q(window_start_hour__lt=models.F("window_end_hour")),
                name="messaging_window_not_looser",
            ),
            # One marketing text per 12 hours is the ceiling; fewer is allowed.
            models.CheckConstraint(
                condition=Q(cap_hours__gte=models.F("cap_messages") * 12),
                name="messaging_cap_not_looser",
            ),
            models.CheckConstraint(
                condition=Q(attribution_click_days__range=(1, 30))
                & Q(attribution_delivery_hours__lte=7 * 24),
                name="messaging_attribution_windows",
            ),
        ]

    def __str__(self) -> str:
        return f"messaging settings of tenant {self.tenant_id}"


class SenderKind(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox (no real texts)"
    TWILIO = "twilio", "Twilio"


class Sender(TenantOwnedModel):
    """Where a brand's texts come from: a phone number or a Twilio Messaging Service.

    The carrier credentials are stored encrypted with FIELD_ENCRYPTION_KEY (messaging.crypto)
    and never shown again after they are entered. A number belongs to one tenant, which is how
    an inbound text finds its tenant.
    """

    kind = models.CharField(max_length=8, choices=SenderKind.choices, default=SenderKind.SANDBOX)
    phone_number = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 - E.164
    messaging_service_sid = models.CharField(max_length=34, blank=True)
    account_sid = models.CharField(max_length=34)
    auth_token_encrypted = models.BinaryField()
    mps = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    is_default = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone_number"], name="sender_number_unique"),
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(is_default=True), name="sender_one_default"
            ),
            models.CheckConstraint(
                condition=Q(phone_number__isnull=False) | ~Q(messaging_service_sid=""),
                name="sender_has_from",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account_sid", "messaging_service_sid"], name="sender_account_service"
            ),
            models.Index(fields=["tenant", "created_at"], name="sender_tenant_created"),
        ]

    def __str__(self) -> str:
        return self.phone_number or self.messaging_service_sid


class SubscriberStatus(models.TextChoices):
    NONE = "none", "Never subscribed"  # a number that texted us without opting in
    PENDING = "pending", "Pending"
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class ConsentSource(models.TextChoices):
    KEYWORD = "keyword", "Keyword"
    WEB_FORM = "web_form", "Web form"
    CHECKOUT = "checkout", "Checkout"
    API = "api", "API"
    IMPORT = "import", "Import"
    LOYALTY_PAGE = "loyalty_page", "Loyalty page"
    DASHBOARD = "dashboard", "Dashboard"
    CARRIER = "carrier", "Carrier"
    SUNSET = "sunset", "Sunset (a flow unsubscribed an inactive number)"


class Subscriber(TenantOwnedModel):
    """One phone number of one brand, with where its consent stands."""

    phone = PhoneNumberField()
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    status = models.CharField(max_length=12, choices=SubscriberStatus.choices)
    source = models.CharField(max_length=12, choices=ConsentSource.choices)
    # A stored zone wins; blank: the candidates the number's area could be in.
    timezone = models.CharField(max_length=64, blank=True)
    timezone_candidates = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    region = models.CharField(max_length=2, blank=True)  # US state / CA province from the number
    country = models.CharField(max_length=2, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # The two-way inbox.
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    unread_count = models.PositiveIntegerField(default=0)
    needs_attention = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "phone"], name="subscriber_number_once"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-id"], name="subscriber_tenant_status"),
            models.Index(fields=["tenant", "member"], name="subscriber_tenant_member"),
            models.Index(
                fields=["tenant", "-last_message_at"],
                condition=Q(last_message_at__isnull=False),
                name="subscriber_tenant_inbox",
            ),
        ]

    def __str__(self) -> str:
        return str(self.phone)

    @property
    def e164(self) -> str:
        return self.phone.as_e164


class ConsentAction(models.TextChoices):
    OPT_IN_REQUESTED = "opt_in_requested", "Opt-in requested (awaiting confirmation)"
    OPT_IN_CONFIRMED = "opt_in_confirmed", "Opt-in confirmed"
    OPT_IN = "opt_in", "Opted in"
    OPT_OUT = "opt_out", "Opted out"
    IMPORTED = "imported", "Imported with consent"


class ConsentRecord(TenantOwnedModel):
    """Evidence of one consent change. Append-only: a trigger refuses UPDATE (migration)."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="consent", db_index=False
    )
    action = models.CharField(max_length=20, choices=ConsentAction.choices)
    source = models.CharField(max_length=12, choices=ConsentSource.choices)
    disclosure_text = models.TextField(blank=True)
    disclosure_version = models.CharField(max_length=40, blank=True)
    page_url = models.URLField(max_length=2000, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    keyword = models.CharField(max_length=40, blank=True)
    message_body = models.CharField(max_length=1600, blank=True)  # the text that changed it
    inbound_sid = models.CharField(max_length=34, blank=True)
    confirmation_text = models.CharField(max_length=1600, blank=True)
    evidence = models.JSONField(default=dict, blank=True)  # e.g. an import's own fields
    actor = models.CharField(max_length=200, blank=True)  # who, when not the subscriber
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "subscriber", "id"], name="consent_tenant_subscriber"),
        ]

    def __str__(self) -> str:
        return f"{self.action} via {self.source}"


class MessageKind(models.TextChoices):
    MARKETING = "marketing", "Marketing"
    TRANSACTIONAL = "transactional", "Transactional"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DEFERRED = "deferred", "Deferred"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"
    UNKNOWN = "unknown", "Unknown"


# Waiting for the dispatcher.
DUE_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED)


class OutboundMessage(TenantOwnedModel):
    """One text to one number, from its creation to its final receipt."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="outbound", db_index=False
    )
    sender = models.ForeignKey(
        Sender, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    to = models.CharField(max_length=16)
    kind = models.CharField(max_length=14, choices=MessageKind.choices)
    # What made it: "campaign", "flow", "opt_in", "opt_out", "help", "inbox", "api", …
    source = models.CharField(max_length=20)
    source_ref = models.CharField(max_length=100, blank=True)
    dedupe_key = models.CharField(max_length=200)
    body = models.TextField()
    encoding = models.CharField(max_length=5)
    segments = models.PositiveSmallIntegerField()
    price_estimate = models.DecimalField(max_digits=10, decimal_places=5)
    status = models.CharField(
        max_length=12, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    status_reason = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=10, blank=True)
    carrier_sid = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001
    attempts = models.PositiveSmallIntegerField(default=0)
    # The dispatcher claim it is `sending` under (a number of messaging_claim_seq), None when
    # not `sending` (or claimed by a release that kept none): see messaging.handover.
    claim = models.BigIntegerField(null=True, blank=True)
    send_after = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "dedupe_key"], name="outbound_dedupe"),
            models.UniqueConstraint(fields=["carrier_sid"], name="outbound_carrier_sid"),
        ]
        indexes = [
            # The dispatcher's queue per sender, across tenants: small, since sent rows leave it.
            models.Index(
                fields=["sender", "send_after", "id"],
                condition=Q(status__in=["queued", "deferred"]),
                name="outbound_due",
            ),
            # Its answers to people, claimed before a campaign's backlog.
            models.Index(
                fields=["sender", "send_after", "id"],
                condition=Q(status__in=["queued", "deferred"], kind="transactional"),
                name="outbound_due_transactional",
            ),
            models.Index(
                fields=["sending_at"], condition=Q(status="sending"), name="outbound_in_flight"
            ),
            models.Index(fields=["tenant", "subscriber", "-id"], name="outbound_subscriber"),
            # Caps: marketing texts a subscriber got (or is getting) recently.
            models.Index(
                fields=["tenant", "subscriber", "sending_at"],
                condition=Q(kind="marketing", sending_at__isnull=False),
                name="outbound_marketing_sent",
            ),
            models.Index(fields=["tenant", "-created_at"], name="outbound_tenant_created"),
            # Segments: "received within N days" reads only the window's texts.
            models.Index(
                fields=["tenant", "sent_at"],
                condition=Q(sent_at__isnull=False),
                name="outbound_tenant_sent",
            ),
            # The setup checklist's "first automated text": one index probe, not a scan.
            models.Index(
                fields=["tenant"],
                condition=Q(source="flow", status__in=["sent", "delivered"]),
                name="outbound_flow_sent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.to}: {self.status}"


class Handover(models.Model):
    """A text whose request may have left for the carrier under one claim, while its batch's
    outcomes aren't recorded yet (messaging.handover). Rows live for seconds; they name a
    text and hold no brand's data, so they carry no tenant."""

    pk = models.CompositePrimaryKey("message_id", "claim")
    message_id = models.BigIntegerField()
    claim = models.BigIntegerField()
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"text {self.message_id} (claim {self.claim}) handed over at {self.at:%H:%M:%S}"


class InboundKind(models.TextChoices):
    OPT_OUT = "opt_out", "Opt-out"
    OPT_IN = "opt_in", "Opt-in"
    HELP = "help", "Help"
    JOIN = "join", "Join keyword"
    CONFIRM = "confirm", "Double opt-in confirmation"
    REPLY = "reply", "Reply"


class InboundMessage(TenantOwnedModel):
    """A text a subscriber sent us; keywords act, everything lands in the inbox."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="inbound", db_index=False
    )
    carrier_sid = models.CharField(max_length=40)
    from_number = models.CharField(max_length=16)
    to_number = models.CharField(max_length=16)
    body = models.TextField(blank=True)
    num_media = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=8, choices=InboundKind.choices)
    # Free text that might be an opt-out: a person decides.
    needs_attention = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "carrier_sid"], name="inbound_sid_once"),
        ]
        indexes = [
            models.Index(fields=["tenant", "subscriber", "-id"], name="inbound_subscriber"),
            # Segments: "replied within N days" reads only the window's replies.
            models.Index(
                fields=["tenant", "created_at"],
                condition=Q(kind="reply"),
                name="inbound_tenant_reply",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} from {self.from_number}"


class ShortLink(TenantOwnedModel):
    """A tracked link for one recipient of one message: /l/{code} → target."""

    code = models.CharField(max_length=12, unique=True)
    target = models.URLField(max_length=2000)
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    message_dedupe_key = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    clicks = models.PositiveIntegerField(default=0)  # every human visit; first_clicked_at: once

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "subscriber"], name="shortlink_tenant_subscriber"),
            models.Index(fields=["tenant", "message_dedupe_key"], name="shortlink_tenant_message"),
            # Segments: "clicked within N days" reads only the window's clicks.
            models.Index(
                fields=["tenant", "first_clicked_at"],
                condition=Q(first_clicked_at__isnull=False),
                name="shortlink_tenant_clicked",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class AttributionKind(models.TextChoices):
    CLICK = "click", "Click"
    DELIVERY = "delivery", "Delivery"


class Attribution(TenantOwnedModel):
    """An order credited to one marketing text (messaging/attribution.py): once per order,
    written by the attribution scan. `source`/`source_ref` are the text's, copied so a
    campaign's or flow's results are one index range; `revenue` is the order's net of refunds
    (kept current by the scan)."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        OutboundMessage, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=8, choices=AttributionKind.choices)
    source = models.CharField(max_length=20)
    source_ref = models.CharField(max_length=100, blank=True)
    revenue = models.DecimalField(max_digits=14, decimal_places=2)
    placed_at = models.DateTimeField()  # the order's
    touched_at = models.DateTimeField()  # the click or the delivery it is credited to
    attributed_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "source", "source_ref"], name="attribution_source"),
            models.Index(fields=["tenant", "placed_at"], name="attribution_tenant_placed"),
            models.Index(fields=["tenant", "message"], name="attribution_tenant_message"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} by {self.kind} of message {self.message_id}"


class SubscriberImport(TenantOwnedModel):
    """A CSV of consented numbers from the dashboard, imported by a worker while the page
    shows progress."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    filename = models.CharField(max_length=255)
    content = models.TextField()  # emptied once imported: personal data, kept only as needed
    consent_text = models.TextField(blank=True)
    status = models.CharField(
        max_length=8, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    total_rows = models.IntegerField(default=0)
    processed_rows = models.IntegerField(default=0)
    imported = models.IntegerField(default=0)
    already_subscribed = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # [[line, why], …]
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="subscriberimport_tenant")]

    def __str__(self) -> str:
        return self.filename

    @property
    def percent(self) -> int:
        return int(self.processed_rows * 100 / self.total_rows) if self.total_rows else 100
