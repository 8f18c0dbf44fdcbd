"""Writes of the tenancy core. Each leaves an AuditEvent in the same transaction."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from loyaltysms.models import (
    ROLE_RANK,
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)
from loyaltysms.tenancy.context import tenant_scope
from messaging.crypto import decrypt, encrypt

API_KEY_PREFIX = "lsk"
INVITATION_VALID_FOR = timedelta(days=7)


def hash_secret(value: str) -> str:
    # Keys and tokens carry ≥ 190 bits of randomness, so a fast hash is enough (no brute force);
    # a slow KDF would cost every API request.
    return hashlib.sha256(value.encode()).hexdigest()


def audit(*, tenant: Tenant, actor: User | None, action: str, target: str = "", **detail) -> None:
    with tenant_scope(tenant):
        AuditEvent.objects.create(actor=actor, action=action, target=target, detail=detail)


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    raw_key: str  # shown to the person once; never stored


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str, created_by: User | None = None) -> NewApiKey:
    """A new key for the tenant; only its prefix and a hash are stored."""
    name = name.strip() or "API key"
    prefix = secrets.token_hex(6)
    raw_key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with tenant_scope(tenant):
        api_key = ApiKey.objects.create(
            name=name[:100], prefix=prefix, key_hash=hash_secret(raw_key), created_by=created_by
        )
    audit(tenant=tenant, actor=created_by, action="api_key.created", target=f"{name} ({prefix})")
    return NewApiKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, revoked_by: User | None = None) -> ApiKey:
    """Revoking is immediate and final; a revoked key is refused from the next request on
    (401; a web process that knows it may answer 429 for up to KEY_MEMORY_SECONDS while its
    brand is over the limit: loyaltysms.throttling)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit(
            tenant=api_key.tenant,
            actor=revoked_by,
            action="api_key.revoked",
            target=f"{api_key.name} ({api_key.prefix})",
        )
    return api_key


def unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "brand"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@dataclass(frozen=True)
class NewTenant:
    tenant: Tenant
    owner: User
    api_key: NewApiKey | None
    owner_created: bool


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str,
    owner_email: str,
    owner_password: str | None = None,
    timezone_name: str = "America/New_York",
    currency: str = "USD",
    default_country: str = "US",
    with_api_key: bool = True,
) -> NewTenant:
    """A brand with its owner (created when new) and, unless told otherwise, a first API key."""
    tenant = Tenant(
        slug=slug,
        name=name,
        timezone=timezone_name,
        currency=currency,
        default_country=default_country,
    )
    tenant.full_clean()
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError:
        raise ValidationError({"slug": f"A brand with the slug {slug!r} exists already."}) from None
    owner_email = User.objects.normalize_email(owner_email).lower()
    owner = User.objects.filter(email__iexact=owner_email).first()
    owner_created = owner is None
    if owner is None:
        if owner_password:
            validate_password(owner_password, User(email=owner_email))
        owner = User.objects.create_user(email=owner_email, password=owner_password)
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    audit(tenant=tenant, actor=owner, action="tenant.created", target=slug)
    key = api_key_create(tenant=tenant, name="Default", created_by=owner) if with_api_key else None
    return NewTenant(tenant=tenant, owner=owner, api_key=key, owner_created=owner_created)


def tenant_create_for(
    *, user: User, name: str, timezone_name: str, currency: str, default_country: str
) -> NewTenant:
    """A brand made in the dashboard: its slug from its name, the user its owner, and no API
    key yet (the setup checklist has the owner create one, and shows it once)."""
    for _attempt in range(3):
        try:
            return tenant_create(
                slug=unique_slug(name),
                name=name.strip(),
                owner_email=user.email,
                timezone_name=timezone_name,
                currency=currency,
                default_country=default_country,
                with_api_key=False,
            )
        except ValidationError as error:
            # Another brand of the same name took the slug a moment ago: look again.
            if "slug" not in getattr(error, "error_dict", {}):
                raise
    raise ValidationError({"name": "Several brands of this name are being made: try again."})


def tenant_setup_hide(*, tenant: Tenant, hide: bool, actor: User | None = None) -> None:
    tenant.setup_hidden_at = timezone.now() if hide else None
    tenant.save(update_fields=["setup_hidden_at"])
    audit(tenant=tenant, actor=actor, action="setup.hidden" if hide else "setup.shown")


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # goes into the link; only its hash is stored
    link: str = ""  # the accept link, when emailed


@transaction.atomic
def invitation_create(
    *, tenant: Tenant, email: str, role: str, invited_by: User, site_url: str = ""
) -> NewInvitation:
    """Invite a person by email; an earlier open invitation for the same email is replaced.
    Given the site's address, the accept link is emailed: the row keeps it until the email
    has gone (invitation_email_send), so beat sends it if the task to send it is lost."""
    from loyaltysms.tasks import send_invitation_email  # (loyaltysms.tasks imports services)
    from loyaltysms.tenancy.tasks import enqueue_on_commit

    email = User.objects.normalize_email(email).lower()
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is a member already."})
    role = Role(role)
    inviter = Membership.objects.get(tenant=tenant, user=invited_by)
    if ROLE_RANK[role] > ROLE_RANK[Role(inviter.role)]:
        raise ValidationError({"role": "You can't invite someone with more rights than yours."})
    now = timezone.now()
    with tenant_scope(tenant):
        Invitation.objects.filter(
            email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        token = secrets.token_urlsafe(32)
        link = site_url.rstrip("/") + reverse("invitation_accept", args=[token]) if site_url else ""
        invitation = Invitation.objects.create(
            email=email,
            role=role,
            token_hash=hash_secret(token),
            invited_by=invited_by,
            expires_at=now + INVITATION_VALID_FOR,
            email_link_encrypted=encrypt(link) if link else None,
        )
    audit(tenant=tenant, actor=invited_by, action="member.invited", target=email, role=role)
    if link:
        enqueue_on_commit(send_invitation_email, tenant.pk, invitation.pk)
    return NewInvitation(invitation=invitation, token=token, link=link)


def invitation_email_send(
    *, tenant: Tenant, invitation_id: int, now: datetime, accept_url: str = ""
) -> bool:
    """Email an invitation's link once (True when it went). The row stays locked while the
    email goes out, so a second task for it (the first message arrived late, after beat had
    sent it again) skips it, then finds nothing owed; an email that fails to go stays owed
    for beat to retry. `accept_url`: the link given by a task sent before the row kept it."""
    with transaction.atomic(), tenant_scope(tenant):
        invitation = (
            Invitation.objects.select_for_update(skip_locked=True).filter(pk=invitation_id).first()
        )
        owed = invitation.email_link_encrypted if invitation else None
        link = decrypt(owed) if owed else (accept_url if invitation else "")
        if not link:
            return False  # sent already, being sent, or not this tenant's
        usable = not (
            invitation.accepted_at or invitation.revoked_at or invitation.expires_at <= now
        )
        if usable:
            inviter = invitation.invited_by.email if invitation.invited_by else "A teammate"
            send_mail(
                subject=f"You're invited to {tenant.name} on loyaltysms",
                message=(
                    f"{inviter} invited you to join {tenant.name} as "
                    f"{invitation.get_role_display()}.\n\nAccept: {link}\n\nThe link works once "
                    f"and expires on {invitation.expires_at:%Y-%m-%d}."
                ),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=[invitation.email],
            )
        if owed:
            invitation.email_link_encrypted = None  # owed no more: sent, or not worth sending
            invitation.save(update_fields=["email_link_encrypted"])
    return usable


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, revoked_by: User) -> None:
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit(
            tenant=invitation.tenant,
            actor=revoked_by,
            action="invitation.revoked",
            target=invitation.email,
        )


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """The invited person joins the tenant with the invited role; the link then stops working."""
    with tenant_scope(invitation.tenant):
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.accepted_at or locked.revoked_at or locked.expires_at <= timezone.now():
        raise ValidationError("This invitation is no longer valid.")
    if user.email.lower() != locked.email.lower():
        raise ValidationError(f"This invitation is for {locked.email}; sign in as that person.")
    membership, _ = Membership.objects.get_or_create(
        tenant_id=locked.tenant_id, user=user, defaults={"role": locked.role}
    )
    locked.accepted_at = timezone.now()
    locked.save(update_fields=["accepted_at"])
    audit(tenant=locked.tenant, actor=user, action="member.joined", target=user.email)
    return membership


def _owners_left(tenant: Tenant, without: Membership) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).exclude(pk=without.pk).count()


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, changed_by: User) -> Membership:
    role = Role(role)
    # Lock the tenant's owner rows so two demotions can't leave it without an owner.
    list(Membership.objects.select_for_update().filter(tenant=membership.tenant, role=Role.OWNER))
    actor = Membership.objects.get(tenant=membership.tenant, user=changed_by)
    if Role.OWNER in (role, membership.role) and actor.role != Role.OWNER:
        raise ValidationError({"role": "Only an owner can make or unmake owners."})
    demoting_owner = membership.role == Role.OWNER and role != Role.OWNER
    if demoting_owner and _owners_left(membership.tenant, membership) == 0:
        raise ValidationError({"role": "A brand needs at least one owner."})
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        tenant=membership.tenant,
        actor=changed_by,
        action="member.role_changed",
        target=membership.user.email,
        old=old,
        new=role,
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, removed_by: User) -> None:
    list(Membership.objects.select_for_update().filter(tenant=membership.tenant, role=Role.OWNER))
    actor = Membership.objects.get(tenant=membership.tenant, user=removed_by)
    if membership.role == Role.OWNER and actor.role != Role.OWNER:
        raise ValidationError("Only an owner can remove an owner.")
    if membership.role == Role.OWNER and _owners_left(membership.tenant, membership) == 0:
        raise ValidationError("A brand needs at least one owner.")
    email = membership.user.email
    membership.delete()
    audit(tenant=membership.tenant, actor=removed_by, action="member.removed", target=email)
