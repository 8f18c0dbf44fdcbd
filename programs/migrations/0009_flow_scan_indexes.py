from django.db import migrations

# The flow scans' lookups (automations.services.flow_scans), on columns that never change
# once written, so balance and stats updates of a member (HOT, fillfactor 80) stay
# heap-only:
# - orders by when they were placed, with their member (read from the index alone): members
#   whose last order was N days ago (win-back);
# - members by the (UTC) month and day they enrolled: this day's anniversaries, whatever
#   the year (every zone's date is within a day of UTC's).
# Built CONCURRENTLY: both tables are written all the time. Kept out of the models' Meta
# state on purpose (RunSQL), like the fillfactor settings in 0003.
INDEXES = [
    ("order_tenant_placed", "programs_order", "(tenant_id, placed_at) INCLUDE (member_id)"),
    (
        "member_tenant_enrolled_day",
        "programs_member",
        "(tenant_id, ((extract(month FROM enrolled_at AT TIME ZONE 'UTC') * 100"
        " + extract(day FROM enrolled_at AT TIME ZONE 'UTC'))::int))",
    ),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("programs", "0008_sms_subscribed_event")]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {columns}",
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        )
        for name, table, columns in INDEXES
    ]
