"""The (repo, received_at) covering index carries id too: the latest-attempt ranking breaks its
last ties on id, and without it a repo's matrix read left this index for the time index and
the heap (73 ms -> 10 ms at 1M records). The new index is built before the old one is dropped,
so reads always have one; the build holds writes to hud_jobrecord while it runs (about 2 s a
million records here)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hud', '0010_upstreamcommit'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='jobrecord',
            index=models.Index(fields=['downstream_repo', 'received_at'], include=('event_type', 'status', 'conclusion', 'execution_time', 'queue_time', 'run_attempt', 'pr_number', 'head_sha', 'job_name', 'id'), name='hud_job_repo_time_id'),
        ),
        migrations.RemoveIndex(
            model_name='jobrecord',
            name='hud_job_repo_time',
        ),
    ]
