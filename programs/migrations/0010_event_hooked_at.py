from django.db import migrations, models

# The outgoing webhooks' own marker on the outbox (hooks.services.fan_out): an event is
# fanned out to the brand's endpoints once, and marked in the same transaction.
#
# Events written before this migration predate every webhook endpoint, so they count as
# fanned out already: the column is added with a constant default (PostgreSQL keeps it in
# the catalog, no table rewrite) that is dropped at once, so rows written from now on start
# NULL. The partial index is built CONCURRENTLY: the outbox is written all the time.
KINDS = [
    ("member_enrolled", "Member Enrolled"),
    ("points_earned", "Points Earned"),
    ("points_redeemed", "Points Redeemed"),
    ("points_expired", "Points Expired"),
    ("tier_changed", "Tier Changed"),
    ("reward_redeemed", "Reward Redeemed"),
    ("order_placed", "Order Placed"),
    ("order_refunded", "Order Refunded"),
    ("sms_subscribed", "Sms Subscribed"),
    ("sms_unsubscribed", "Sms Unsubscribed"),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("programs", "0009_flow_scan_indexes")]

    operations = [
        migrations.AlterField(
            model_name="loyaltyevent",
            name="kind",
            field=models.CharField(choices=KINDS, max_length=24),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="loyaltyevent",
                    name="hooked_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AddIndex(
                    model_name="loyaltyevent",
                    index=models.Index(
                        condition=models.Q(("hooked_at__isnull", True)),
                        fields=["tenant", "id"],
                        name="event_unhooked",
                    ),
                ),
            ],
            database_operations=[
                # The catalog change takes an exclusive lock for an instant; queued behind a
                # long transaction it would hold up every insert, so it gives up after a few
                # seconds instead (run the migration again then).
                migrations.RunSQL(
                    "SET lock_timeout = '5s'; "
                    "ALTER TABLE programs_loyaltyevent ADD COLUMN hooked_at timestamptz NULL "
                    "DEFAULT '1970-01-01T00:00:00Z'; "
                    "ALTER TABLE programs_loyaltyevent ALTER COLUMN hooked_at DROP DEFAULT; "
                    "RESET lock_timeout",
                    "ALTER TABLE programs_loyaltyevent DROP COLUMN hooked_at",
                ),
                migrations.RunSQL(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS event_unhooked "
                    "ON programs_loyaltyevent (tenant_id, id) WHERE hooked_at IS NULL",
                    "DROP INDEX CONCURRENTLY IF EXISTS event_unhooked",
                ),
            ],
        ),
    ]
