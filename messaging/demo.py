"""The demo brand's SMS channel: a sandbox sender, subscribers with consent evidence, and a
few conversations in the inbox — all made through the real services and webhook handling."""

from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentSource
from messaging.services.inbound import inbound_receive
from messaging.services.setup import messaging_settings_get, sender_default
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member

SUBSCRIBED_SHARE = 0.45
DISCLOSURE = (
    "Text me offers and rewards updates from Demo Coffee Co. Recurring automated marketing "
    "msgs. Consent is not a condition of purchase. Msg & data rates may apply. Reply HELP "
    "for help, STOP to cancel."
)
# (number, texts) — a new subscriber by keyword, questions for the inbox, an opt-out.
CONVERSATIONS = [
    ("+12125550171", ["JOIN", "Y", "Do you have oat milk at the Main St store?"]),
    ("+13055550172", ["What time do you open on Sunday?"]),
    ("+14155550173", ["VIP"]),
    ("+16175550174", ["wrong number I think"]),
]


def seed(tenant: Tenant, *, now: datetime) -> dict:
    rng = random.Random(7)  # noqa: S311 - demo data, the same on every machine
    with tenant_scope(tenant):
        sender = sender_default(tenant)
        settings = messaging_settings_get(tenant)
        settings.join_keywords = ["JOIN", "VIP", "COFFEE"]
        settings.terms_url = "https://demo-coffee.example/sms-terms"
        settings.privacy_url = "https://demo-coffee.example/privacy"
        settings.save()
        members = list(Member.objects.exclude(phone=None).order_by("id"))
        chosen = [m for m in members if rng.random() < SUBSCRIBED_SHARE]
        for member in chosen:
            joined = now - timedelta(days=rng.randint(1, 400), minutes=rng.randint(0, 1440))
            subscriber_opt_in(
                tenant=tenant,
                phone=member.phone.as_e164,
                member=member,
                evidence=Evidence(
                    source=rng.choice(
                        [ConsentSource.CHECKOUT, ConsentSource.WEB_FORM, ConsentSource.LOYALTY_PAGE]
                    ),
                    disclosure_text=DISCLOSURE,
                    disclosure_version="1",
                    page_url="https://demo-coffee.example/rewards",
                    ip=f"198.51.100.{rng.randint(1, 254)}",
                    user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                ),
                now=joined,
                double_opt_in=False,
                send_confirmation=False,
            )
        texts = 0
        for number, bodies in CONVERSATIONS:
            for body in bodies:
                inbound_receive(
                    sender=sender,
                    params={
                        "MessageSid": "SM" + secrets.token_hex(16),
                        "From": number,
                        "To": sender.phone_number,
                        "Body": body,
                        "NumMedia": "0",
                    },
                    now=now - timedelta(minutes=rng.randint(5, 600)),
                )
                texts += 1
    return {"subscribers": len(chosen), "inbound_texts": texts}
