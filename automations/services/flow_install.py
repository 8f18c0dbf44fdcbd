"""Installing a prebuilt flow (automations.flows.prebuilt) as a draft the brand can review.

A prebuilt flow is built from the brand's own things: the cheapest active reward (the
birthday gift, the win-back coupon), its tiers, its program's points name and bonuses, and
the links it is given. When one is missing the install is refused with what to do first, and
the catalogue says the same before anyone clicks. Installing a key again makes another draft,
"Name (2)": a brand may want a second version for another segment or other copy, and a
draft texts nobody until someone switches it on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from automations.flows.prebuilt import (
    BY_KEY,
    CATALOGUE,
    NEEDS_EXPIRY,
    NEEDS_REWARD,
    NEEDS_SHOP_URL,
    NEEDS_SMS_BONUS,
    NEEDS_SURVEY_URL,
    NEEDS_TIER,
    Fill,
    Prebuilt,
    literal,
)
from automations.flows.spec import FlowInvalid
from automations.models import Flow
from automations.services.flows import flow_create
from loyaltysms.models import Tenant, User
from loyaltysms.tenancy.context import tenant_scope
from programs.models import ExpiryPolicy, Reward, Tier
from programs.services.program import program_get

# A link a text may carry: http(s), no spaces or braces (it goes into a template as is).
URL = re.compile(r"^https?://[^\s{}<>\"']+$")

WHAT_TO_DO = {
    NEEDS_REWARD: "Create a reward first: this flow gives the brand's cheapest active reward.",
    NEEDS_TIER: "Create a tier first: this flow is about moving up the tiers.",
    NEEDS_SMS_BONUS: (
        "Set the program's SMS bonus first: it is the bonus this flow thanks members for."
    ),
    NEEDS_EXPIRY: "Your points never expire: set an expiry policy on the program first.",
    NEEDS_SHOP_URL: "Give the link to your shop: the texts send people there.",
    NEEDS_SURVEY_URL: "Give the link to a short survey: the first text asks people to fill it in.",
}


@dataclass(frozen=True)
class CatalogueEntry:
    key: str
    name: str
    description: str
    timing: str
    trigger: dict
    # What the brand must set up before installing (messages from WHAT_TO_DO); the links
    # are given with the install, so they are listed apart.
    missing: tuple[str, ...]
    links: tuple[str, ...]
    installed: int

    @property
    def installable(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class _Brand:
    reward: Reward | None
    has_tier: bool
    sms_bonus: int
    enrollment_bonus: int
    expires: bool
    points_name: str
    pending_days: int


def _brand(tenant: Tenant) -> _Brand:
    program = program_get(tenant)
    with tenant_scope(tenant):
        reward = Reward.objects.filter(active=True).order_by("points_cost", "id").first()
        has_tier = Tier.objects.exists()
    return _Brand(
        reward=reward,
        has_tier=has_tier,
        sms_bonus=program.sms_bonus,
        enrollment_bonus=program.enrollment_bonus,
        expires=program.expiry_policy != ExpiryPolicy.NEVER,
        points_name=program.points_name or "points",
        pending_days=program.pending_days,
    )


def _missing(prebuilt: Prebuilt, brand: _Brand) -> tuple[str, ...]:
    lacking = {
        NEEDS_REWARD: brand.reward is None,
        NEEDS_TIER: not brand.has_tier,
        NEEDS_SMS_BONUS: brand.sms_bonus <= 0,
        NEEDS_EXPIRY: not brand.expires,
    }
    return tuple(
        WHAT_TO_DO[need] for need, lacks in lacking.items() if lacks and need in prebuilt.needs
    )


def _links(prebuilt: Prebuilt) -> tuple[str, ...]:
    return tuple(need for need in (NEEDS_SHOP_URL, NEEDS_SURVEY_URL) if need in prebuilt.needs)


def prebuilt_catalogue(tenant: Tenant) -> list[CatalogueEntry]:
    """Every prebuilt flow, with what the brand lacks to install it and how many times it is
    installed already."""
    brand = _brand(tenant)
    with tenant_scope(tenant):
        counts: dict[str, int] = {}
        for template in Flow.objects.exclude(template="").values_list("template", flat=True):
            counts[template] = counts.get(template, 0) + 1
    return [
        CatalogueEntry(
            key=prebuilt.key,
            name=prebuilt.name,
            description=prebuilt.description,
            timing=prebuilt.timing,
            trigger=dict(prebuilt.trigger),
            missing=_missing(prebuilt, brand),
            links=_links(prebuilt),
            installed=counts.get(prebuilt.key, 0),
        )
        for prebuilt in CATALOGUE
    ]


def _free_name(tenant: Tenant, name: str) -> str:
    with tenant_scope(tenant):
        taken = set(Flow.objects.filter(name__startswith=name).values_list("name", flat=True))
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


@transaction.atomic
def flow_install(
    *,
    tenant: Tenant,
    key: str,
    now: datetime,
    actor: User | None = None,
    shop_url: str = "",
    survey_url: str = "",
) -> Flow:
    """A draft flow from the catalogue, built from the brand's own reward, tiers and program
    (checked by automations.flows.spec like any flow). Refused, with what to do first, when
    the brand lacks what the flow needs or a link it needs is missing."""
    prebuilt = BY_KEY.get(key)
    if prebuilt is None:
        raise FlowInvalid(f"There is no prebuilt flow {key!r}.", errors={"key": ["no such flow"]})
    brand = _brand(tenant)
    errors: dict[str, list[str]] = {}
    missing = _missing(prebuilt, brand)
    if missing:
        errors["brand"] = list(missing)
    for need, url in ((NEEDS_SHOP_URL, shop_url), (NEEDS_SURVEY_URL, survey_url)):
        if need not in prebuilt.needs:
            continue
        if not url:
            errors[need] = [WHAT_TO_DO[need]]
        elif not URL.match(url) or len(url) > 500:
            errors[need] = ["A web address starting with https://, without spaces."]
    if errors:
        raise FlowInvalid(f"“{prebuilt.name}” can't be installed yet.", errors=errors)
    reward = brand.reward
    fill = Fill(
        points_name=literal(brand.points_name),
        shop_url=shop_url,
        survey_url=survey_url,
        reward_id=reward.pk if reward else None,
        reward_name=literal(reward.name) if reward else "",
        sms_bonus=brand.sms_bonus,
        enrollment_bonus=brand.enrollment_bonus,
        pending_days=brand.pending_days,
    )
    return flow_create(
        tenant=tenant,
        now=now,
        actor=actor,
        template=prebuilt.key,
        name=_free_name(tenant, prebuilt.name),
        description=prebuilt.description,
        trigger=dict(prebuilt.trigger),
        steps=prebuilt.build(fill),
        exit_on=list(prebuilt.exit_on),
        entry_limit=prebuilt.entry_limit,
        audience=prebuilt.audience,
    )
