from django.db import migrations, models

# Texts already `sending` were claimed by a dispatcher that marked nothing: any of them may
# have left, so each counts as handed over (never put back in the queue).
MARK_SENDING = """
INSERT INTO messaging_handover (message_id, attempt, at)
SELECT id, attempts, coalesce(sending_at, now())
FROM messaging_outboundmessage WHERE status = 'sending'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_outbound_flow_sent_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="Handover",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "message_id",
                        "attempt",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("message_id", models.BigIntegerField()),
                ("attempt", models.PositiveSmallIntegerField()),
                ("at", models.DateTimeField()),
            ],
        ),
        migrations.RunSQL(MARK_SENDING, migrations.RunSQL.noop),
    ]
