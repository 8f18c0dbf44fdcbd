"""The demo brand: tiers, rewards, members whose ledgers add up, and its SMS subscribers."""

from django.db.models import Count, Q, Sum

from loyaltysms.demo import seed_demo
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member, Order, PointsEntry, PointsLot, Program, Reward, Tier


def test_seed_demo_builds_a_program_with_a_real_looking_history(db):
    result = seed_demo()
    assert result["created"]
    counts = result["seeded"]["programs"]
    tenant = Tenant.objects.get(slug="demo")
    with tenant_scope(tenant):
        program = Program.objects.get()
        assert (program.points_name, program.expiry_policy) == ("beans", "lot")
        assert list(Tier.objects.order_by("threshold").values_list("name", flat=True)) == [
            "Silver",
            "Gold",
            "Platinum",
        ]
        assert Reward.objects.count() == 4
        assert Member.objects.count() == counts["members"] >= 1000
        # (The demo campaigns add the orders they earned: "SMS-…".)
        assert (
            Order.objects.exclude(order_id__startswith="SMS-").count()
            == counts["orders"]
            > counts["members"]
        )
        assert counts["refunds"] > 0 and counts["redemptions"] > 0
        by_tier = dict(Member.objects.values_list("tier__name").annotate(n=Count("id")))
        assert {"Silver", "Gold", "Platinum"} <= set(by_tier)
        # The ledger adds up for every member: balance = entries = matured lot remainders.
        entries = dict(PointsEntry.objects.values_list("member_id").annotate(s=Sum("points")))
        lots = dict(
            PointsLot.objects.filter(matured=True)
            .values_list("member_id")
            .annotate(s=Sum("remaining", filter=Q(remaining__gt=0)))
        )
        for member_id, balance in Member.objects.values_list("id", "points_balance"):
            assert balance == entries.get(member_id, 0) == (lots.get(member_id) or 0) >= 0
        # The SMS channel: consented subscribers linked to members, and an inbox to look at.
        from messaging.models import ConsentRecord, Subscriber

        sms = result["seeded"]["messaging"]
        # (Less the numbers that replied STOP to a demo campaign.)
        still = sms["subscribers"] - result["seeded"]["automations"]["opt_outs"]
        subscribed = Subscriber.objects.filter(status="subscribed")
        assert subscribed.count() >= still > 300
        assert subscribed.filter(member__isnull=False).count() >= still
        assert Member.objects.filter(sms_status="subscribed").count() >= still
        assert ConsentRecord.objects.exclude(disclosure_text="").count() >= sms["subscribers"]
        assert Subscriber.objects.filter(unread_count__gt=0).count() >= 2
        assert Subscriber.objects.filter(needs_attention=True).exists()
    assert seed_demo()["created"] is False  # a second run adds nothing
