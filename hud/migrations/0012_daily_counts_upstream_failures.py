"""PostgreSQL: hud_dailycounts also counts, of each row's failures, those whose triage verdict's
category is `upstream` (the HUD's triage toggle leaves them out, hud/reports.py); the trigger
functions of migrations 0004 and 0005 count them too, and the rows already there are filled
in from the records.

Exact while the relay runs: hud_jobrecord is locked against writes first (SHARE ROW EXCLUSIVE
waits for the writers in flight, then holds the others back until this commits), so no record
is counted by the old functions after the backfill has read it, or missed by both."""

from django.db import migrations, models

DAY = "({r}.received_at AT TIME ZONE 'UTC')::date"
FAILED = "{r}.status = 'completed' AND {r}.conclusion IN ('failure', 'startup_failure')"
# A verdict that is no JSON object, or has no string category, reads as NULL: not upstream.
UPSTREAM = f"{FAILED} AND COALESCE({{r}}.triage_verdict ->> 'category' = 'upstream', false)"

# Each counter, as a record's 0-or-1 contribution to it (migration 0005's, and the new one).
COUNTERS = {
    "successes": "({r}.status = 'completed' AND {r}.conclusion = 'success')::int",
    "failures": f"({FAILED})::int",
    "timed_out": "({r}.status = 'completed' AND {r}.conclusion = 'timed_out')::int",
    "cancelled": "({r}.status = 'completed' AND {r}.conclusion = 'cancelled')::int",
    "completed": "({r}.status = 'completed')::int",
    "in_progress": "({r}.status <> 'completed')::int",
    "upstream_failures": f"({UPSTREAM})::int",
}


def _functions(counters: dict[str, str]) -> str:
    """The functions the trigger calls (0004's count, 0005's move), over `counters`."""
    names = ", ".join(counters)
    add = ", ".join(f"{name} = d.{name} + EXCLUDED.{name}" for name in counters)
    signed = ", ".join(f"sign * {c.format(r='r')}" for c in counters.values())
    deltas = ", ".join(f"{c.format(r='n')} - {c.format(r='o')}" for c in counters.values())
    zeros = ", ".join(["0"] * len(counters))
    slots = ", ".join(f"delta[{n}]" for n in range(1, len(counters) + 1))
    return f"""
CREATE OR REPLACE FUNCTION hud_dailycounts_count(r hud_jobrecord, sign int) RETURNS void AS $$
BEGIN
    INSERT INTO hud_dailycounts AS d (downstream_repo, day, event_type, {names})
    VALUES (r.downstream_repo, {DAY.format(r="r")}, r.event_type, {signed})
    ON CONFLICT (day, event_type, downstream_repo) DO UPDATE SET {add};
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION hud_dailycounts_move(o hud_jobrecord, n hud_jobrecord)
RETURNS void AS $$
DECLARE
    delta int[] := ARRAY[{deltas}];
BEGIN
    IF delta = ARRAY[{zeros}] THEN RETURN; END IF;
    INSERT INTO hud_dailycounts AS d (downstream_repo, day, event_type, {names})
    VALUES (n.downstream_repo, {DAY.format(r="n")}, n.event_type, {slots})
    ON CONFLICT (day, event_type, downstream_repo) DO UPDATE SET {add};
END $$ LANGUAGE plpgsql;
"""


LOCK = "LOCK TABLE hud_jobrecord IN SHARE ROW EXCLUSIVE MODE"
BACKFILL = f"""
UPDATE hud_dailycounts AS d SET upstream_failures = c.n
FROM (SELECT downstream_repo, {DAY.format(r="j")} AS day, event_type, count(*) AS n
      FROM hud_jobrecord j WHERE {UPSTREAM.format(r="j")} GROUP BY 1, 2, 3) AS c
WHERE d.downstream_repo = c.downstream_repo AND d.day = c.day AND d.event_type = c.event_type
"""
# The functions as migration 0005 left them (the column is dropped after).
PREVIOUS = {name: value for name, value in COUNTERS.items() if name != "upstream_failures"}


def lock(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LOCK)


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_functions(COUNTERS))
        schema_editor.execute(BACKFILL)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_functions(PREVIOUS))


class Migration(migrations.Migration):
    dependencies = [("hud", "0011_repo_time_index_id")]

    operations = [
        migrations.RunPython(lock, lock),
        migrations.AddField(
            model_name="dailycounts",
            name="upstream_failures",
            field=models.IntegerField(
                default=0,
                db_default=0,
                help_text="of the failures, those whose triage verdict's category is upstream",
            ),
        ),
        migrations.RunPython(create, drop),
    ]
