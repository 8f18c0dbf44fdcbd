"""The tenancy core: brands (tenants), their people, their API keys, and what they did."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from loyaltysms.tenancy.managers import TenantManager


class UserManager(DjangoUserManager):
    """Users sign in with their email address; it is compared without regard to case."""

    use_in_migrations = True

    def _create_user_object(self, username, email, password, **extra_fields):
        email = self.normalize_email(email or username).lower()
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        return user

    def create_user(self, email=None, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        user = self._create_user_object(None, email, password, **extra_fields)
        user.save(using=self._db)
        return user

    def create_superuser(self, email=None, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


class User(AbstractUser):
    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            f"{value!r} is not a time zone (use an IANA name like America/Chicago)"
        )


class Tenant(models.Model):
    """A brand: everything else belongs to exactly one."""

    slug = models.SlugField(
        max_length=63,
        unique=True,
        error_messages={"unique": "A brand with this slug exists already."},
    )
    name = models.CharField(max_length=200)
    timezone = models.CharField(
        max_length=64, default="America/New_York", validators=[validate_timezone]
    )
    currency = models.CharField(
        max_length=3, default="USD", validators=[RegexValidator(r"^[A-Z]{3}$", "ISO 4217 code")]
    )
    default_country = models.CharField(
        max_length=2, default="US", validators=[RegexValidator(r"^[A-Z]{2}$", "ISO 3166 code")]
    )
    # The home page's setup checklist, put away by an admin (None: shown until done).
    setup_hidden_at = models.DateTimeField(null=True, blank=True)
    # This brand's REST API limit, set by staff (None: API_RATE_PER_SECOND / API_RATE_BURST).
    api_rate_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01)],
        help_text="Sustained API requests a second, all this brand's keys together. "
        "Empty: the default (API_RATE_PER_SECOND).",
    )
    api_rate_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="API requests accepted at once after a quiet spell. "
        "Empty: the default (API_RATE_BURST).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MARKETER = "marketer", "Marketer"
    VIEWER = "viewer", "Viewer"


# What each role may do, from least to most. A view names the least role it needs.
ROLE_RANK = {Role.VIEWER: 0, Role.MARKETER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    """A user's place in a tenant. Not tenant-owned: it is how a tenant comes into scope."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MARKETER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.role}"

    def allows(self, least_role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(least_role)]


class TenantOwnedModel(models.Model):
    """Base of every tenant-owned table: a tenant FK and a manager that fails closed."""

    # No index of its own: every tenant-owned table has tenant_id first in its main indexes
    # (architecture.md), and one more index per table would cost every insert and update.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)

    objects = TenantManager()

    class Meta:
        abstract = True


class ApiKey(TenantOwnedModel):
    """A storefront's credential. Only a hash is kept; the key itself is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="apikey_tenant_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invitation(TenantOwnedModel):
    """An invitation to join a tenant with a role, accepted through a one-time link."""

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The accept link while its email is owed (encrypted under FIELD_ENCRYPTION_KEY), cleared
    # once sent: a link that beat can still send if the task to send it was lost (the broker
    # was away). Only the token's hash is kept for good.
    email_link_encrypted = models.BinaryField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="invitation_tenant_created")]

    def __str__(self) -> str:
        return f"{self.email} as {self.role}"


class AuditEvent(TenantOwnedModel):
    """Who changed what in a tenant's settings: every change leaves a row."""

    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created")]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class IdempotencyRecord(TenantOwnedModel):
    """The first response to a POST with an Idempotency-Key, replayed for the same key and body."""

    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return self.key


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Export(TenantOwnedModel):
    """A CSV download made by a worker while its page shows progress (loyaltysms/exports.py).
    The file is kept gzipped in the database, so any web process can serve it, for
    EXPORT_KEPT_DAYS; then it is deleted."""

    kind = models.CharField(max_length=20)  # a key of loyaltysms.exports.KINDS
    filters = models.JSONField(default=dict, blank=True)  # the list page's, as given
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(
        max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    total_rows = models.IntegerField(default=0)
    processed_rows = models.IntegerField(default=0)
    content = models.BinaryField(default=b"")  # gzip of the CSV, once done
    size = models.BigIntegerField(default=0)  # the CSV's bytes, unzipped
    created_at = models.DateTimeField(auto_now_add=True)
    # A queued export may wait for its worker a long time (the broker was away): whether one
    # is stuck counts from when it started.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="export_tenant_created")]

    def __str__(self) -> str:
        return f"{self.kind} export {self.pk}"

    @property
    def percent(self) -> int:
        return int(self.processed_rows * 100 / self.total_rows) if self.total_rows else 100
