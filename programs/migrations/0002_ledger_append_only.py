from django.db import migrations

# The ledger is append-only: an entry, once written, never changes. Only actor_id may be set
# to NULL (the person who made a manual adjustment was deleted; the reason text stays).
APPEND_ONLY = """
CREATE FUNCTION programs_pointsentry_append_only() RETURNS trigger AS $$
BEGIN
    IF (NEW.tenant_id, NEW.member_id, NEW.kind, NEW.points, NEW.balance_after, NEW.reason,
        NEW.source, NEW.source_ref, NEW.bonus_key, NEW.expires_at, NEW.created_at)
       IS DISTINCT FROM
       (OLD.tenant_id, OLD.member_id, OLD.kind, OLD.points, OLD.balance_after, OLD.reason,
        OLD.source, OLD.source_ref, OLD.bonus_key, OLD.expires_at, OLD.created_at)
       OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS DISTINCT FROM OLD.actor_id) THEN
        RAISE EXCEPTION 'points entries are append-only (entry %)', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER pointsentry_append_only BEFORE UPDATE ON programs_pointsentry
FOR EACH ROW EXECUTE FUNCTION programs_pointsentry_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS pointsentry_append_only ON programs_pointsentry;
DROP FUNCTION IF EXISTS programs_pointsentry_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("programs", "0001_initial")]

    operations = [migrations.RunSQL(APPEND_ONLY, REVERSE)]
