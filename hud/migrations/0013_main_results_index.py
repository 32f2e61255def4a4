"""A partial index of the records that are not PR runs (pushes, nightly and periodic runs):
what the "already failing on main" baseline reads (hud/baseline.py). Without it that read
walked every PR record of the asked repos' fortnight in the (repo, received_at) index: 39 ms
at 1M records, for a handful of rows. The build holds writes to hud_jobrecord while it runs
(well under a second a million records here: it indexes only those rows)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hud', '0012_daily_counts_upstream_failures'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='jobrecord',
            index=models.Index(condition=models.Q(('event_type', 'pull_request'), _negated=True), fields=['downstream_repo', 'received_at'], include=('event_type', 'head_sha', 'job_name', 'status', 'conclusion', 'run_attempt'), name='hud_job_main_time'),
        ),
    ]
