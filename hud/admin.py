from django.contrib import admin

from crcr_site.admin import ReadOnlyAdmin
from hud.models import JobRecord


@admin.register(JobRecord)
class JobRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "repo_display",
        "level",
        "pr_number",
        "workflow_name",
        "job_name",
        "run_attempt",
        "status",
        "conclusion",
        "queue_time",
        "execution_time",
        "source",
    )
    list_filter = ("status", "conclusion", "level", "event_type", "source")
    search_fields = ("downstream_repo", "delivery_id", "job_name", "head_sha", "=pr_number")
    date_hierarchy = "received_at"
