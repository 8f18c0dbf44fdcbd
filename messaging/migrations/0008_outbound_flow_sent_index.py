from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # A partial index of a large, busy table: built without blocking its writes.
    atomic = False

    dependencies = [
        ("messaging", "0007_consent_source_sunset"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="outboundmessage",
            index=models.Index(
                condition=models.Q(("source", "flow"), ("status__in", ["sent", "delivered"])),
                fields=["tenant"],
                name="outbound_flow_sent",
            ),
        ),
    ]
