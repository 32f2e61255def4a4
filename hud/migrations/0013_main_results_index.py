"""A partial index of the records that are not PR runs (pushes, nightly and periodic runs):
what the "already failing on main" baseline reads (hud/baseline.py). Without it that read
walked every PR record of the asked repos' fortnight in the (repo, received_at) index: 39 ms
at 1M records, for a handful of rows. Built CONCURRENTLY on PostgreSQL: writes go on while it builds
(well under a second a million records here: it indexes only those rows)."""

from django.db import migrations, models

from crcr_site.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ('hud', '0012_daily_counts_upstream_failures'),
    ]

    operations = [
        AddIndexOnline(
            model_name='jobrecord',
            index=models.Index(condition=models.Q(('event_type', 'pull_request'), _negated=True), fields=['downstream_repo', 'received_at'], include=('event_type', 'head_sha', 'job_name', 'status', 'conclusion', 'run_attempt'), name='hud_job_main_time'),
        ),
    ]
