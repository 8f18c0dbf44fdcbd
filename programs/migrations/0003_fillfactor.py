from django.db import migrations

# Room on each page for the next version of a row: balance and lot updates stay on their page
# (HOT) and touch no index when no indexed column changes.
FILLFACTOR = """
ALTER TABLE programs_member SET (fillfactor = 80);
ALTER TABLE programs_pointslot SET (fillfactor = 85);
"""


class Migration(migrations.Migration):
    dependencies = [("programs", "0002_ledger_append_only")]

    operations = [
        migrations.RunSQL(
            FILLFACTOR,
            "ALTER TABLE programs_member RESET (fillfactor);"
            "ALTER TABLE programs_pointslot RESET (fillfactor);",
        )
    ]
