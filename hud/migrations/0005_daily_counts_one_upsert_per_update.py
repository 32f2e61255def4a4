"""PostgreSQL: an update of a record that stays on its (repo, UTC day, event) row moves that
row once, by the difference, instead of taking its old counts off and putting its new ones on
(two upserts of the same row, for every completed callback). A change that moves nothing
countable touches nothing."""

from django.db import migrations

DAY = "({r}.received_at AT TIME ZONE 'UTC')::date"

# Each counter, as a record's 0-or-1 contribution to it (as in migration 0004).
COUNTERS = {
    "successes": "({r}.status = 'completed' AND {r}.conclusion = 'success')::int",
    "failures": "({r}.status = 'completed' AND {r}.conclusion IN ('failure', 'startup_failure'))::int",
    "timed_out": "({r}.status = 'completed' AND {r}.conclusion = 'timed_out')::int",
    "cancelled": "({r}.status = 'completed' AND {r}.conclusion = 'cancelled')::int",
    "completed": "({r}.status = 'completed')::int",
    "in_progress": "({r}.status <> 'completed')::int",
}
DELTAS = ", ".join(f"{c.format(r='n')} - {c.format(r='o')}" for c in COUNTERS.values())
NAMES = ", ".join(COUNTERS)
ADD = ", ".join(f"{name} = d.{name} + EXCLUDED.{name}" for name in COUNTERS)

CREATE = f"""
CREATE OR REPLACE FUNCTION hud_dailycounts_move(o hud_jobrecord, n hud_jobrecord)
RETURNS void AS $$
DECLARE
    delta int[] := ARRAY[{DELTAS}];
BEGIN
    IF delta = ARRAY[0, 0, 0, 0, 0, 0] THEN RETURN; END IF;
    INSERT INTO hud_dailycounts AS d (downstream_repo, day, event_type, {NAMES})
    VALUES (n.downstream_repo, {DAY.format(r="n")}, n.event_type,
            delta[1], delta[2], delta[3], delta[4], delta[5], delta[6])
    ON CONFLICT (day, event_type, downstream_repo) DO UPDATE SET {ADD};
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION hud_dailycounts_apply() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.downstream_repo = NEW.downstream_repo AND OLD.event_type = NEW.event_type
       AND {DAY.format(r="OLD")} = {DAY.format(r="NEW")} THEN
        PERFORM hud_dailycounts_move(OLD, NEW);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM hud_dailycounts_count(OLD, -1); END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM hud_dailycounts_count(NEW, 1); END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""

# Migration 0004's trigger function, as it was.
REVERSE = """
CREATE OR REPLACE FUNCTION hud_dailycounts_apply() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM hud_dailycounts_count(OLD, -1); END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM hud_dailycounts_count(NEW, 1); END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP FUNCTION IF EXISTS hud_dailycounts_move(hud_jobrecord, hud_jobrecord);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE)


class Migration(migrations.Migration):
    dependencies = [("hud", "0004_daily_counts_trigger")]

    operations = [migrations.RunPython(create, drop)]
