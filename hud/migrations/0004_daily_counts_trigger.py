"""PostgreSQL: keep hud_dailycounts exact with a row trigger on hud_jobrecord, and fill it from
the records already there. Other databases count records directly (hud/storage/orm.py)."""

from django.db import migrations

# A record's contribution to its (repo, UTC day, event) row, signed.
CONTRIBUTION = """
    INSERT INTO hud_dailycounts AS d (downstream_repo, day, event_type, successes, failures,
                                      timed_out, cancelled, completed, in_progress)
    VALUES (r.downstream_repo, (r.received_at AT TIME ZONE 'UTC')::date, r.event_type,
            sign * (r.status = 'completed' AND r.conclusion = 'success')::int,
            sign * (r.status = 'completed' AND r.conclusion IN ('failure', 'startup_failure'))::int,
            sign * (r.status = 'completed' AND r.conclusion = 'timed_out')::int,
            sign * (r.status = 'completed' AND r.conclusion = 'cancelled')::int,
            sign * (r.status = 'completed')::int,
            sign * (r.status <> 'completed')::int)
    ON CONFLICT (day, event_type, downstream_repo) DO UPDATE SET
        successes = d.successes + EXCLUDED.successes,
        failures = d.failures + EXCLUDED.failures,
        timed_out = d.timed_out + EXCLUDED.timed_out,
        cancelled = d.cancelled + EXCLUDED.cancelled,
        completed = d.completed + EXCLUDED.completed,
        in_progress = d.in_progress + EXCLUDED.in_progress;
"""

CREATE = f"""
CREATE OR REPLACE FUNCTION hud_dailycounts_count(r hud_jobrecord, sign int) RETURNS void AS $$
BEGIN
{CONTRIBUTION}
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION hud_dailycounts_apply() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM hud_dailycounts_count(OLD, -1); END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM hud_dailycounts_count(NEW, 1); END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER hud_dailycounts_apply AFTER INSERT OR UPDATE OR DELETE ON hud_jobrecord
    FOR EACH ROW EXECUTE FUNCTION hud_dailycounts_apply();

INSERT INTO hud_dailycounts (downstream_repo, day, event_type, successes, failures, timed_out,
                             cancelled, completed, in_progress)
SELECT downstream_repo, (received_at AT TIME ZONE 'UTC')::date, event_type,
       count(*) FILTER (WHERE status = 'completed' AND conclusion = 'success'),
       count(*) FILTER (WHERE status = 'completed' AND conclusion IN ('failure', 'startup_failure')),
       count(*) FILTER (WHERE status = 'completed' AND conclusion = 'timed_out'),
       count(*) FILTER (WHERE status = 'completed' AND conclusion = 'cancelled'),
       count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status <> 'completed')
FROM hud_jobrecord GROUP BY 1, 2, 3;
"""

DROP = """
DROP TRIGGER IF EXISTS hud_dailycounts_apply ON hud_jobrecord;
DROP FUNCTION IF EXISTS hud_dailycounts_apply();
DROP FUNCTION IF EXISTS hud_dailycounts_count(hud_jobrecord, int);
DELETE FROM hud_dailycounts;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("hud", "0003_covering_indexes_daily_counts")]

    operations = [migrations.RunPython(create, drop)]
