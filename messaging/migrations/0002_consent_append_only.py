from django.db import migrations

# Consent evidence is append-only: a record, once written, never changes (compliance.md).
APPEND_ONLY = """
CREATE FUNCTION messaging_consentrecord_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent records are append-only (record %)', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consentrecord_append_only BEFORE UPDATE ON messaging_consentrecord
FOR EACH ROW EXECUTE FUNCTION messaging_consentrecord_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS consentrecord_append_only ON messaging_consentrecord;
DROP FUNCTION IF EXISTS messaging_consentrecord_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunSQL(APPEND_ONLY, REVERSE)]
