from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_outbound_flow_sent_index"),
    ]

    operations = [
        # A nullable column without a default: a catalog change, no rewrite of the table.
        migrations.AddField(
            model_name="outboundmessage",
            name="claim",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunSQL(
            "CREATE SEQUENCE messaging_claim_seq", "DROP SEQUENCE messaging_claim_seq"
        ),
        migrations.CreateModel(
            name="Handover",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "message_id",
                        "claim",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("message_id", models.BigIntegerField()),
                ("claim", models.BigIntegerField()),
                ("at", models.DateTimeField()),
            ],
        ),
    ]
