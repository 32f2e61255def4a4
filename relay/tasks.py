"""Background work on Django's tasks framework (database backend), run by `manage.py worker`."""

from django.tasks import task

from relay import fanout


@task
def send_dispatches(dispatch_ids: list[int]) -> dict[str, int]:
    """Send the due pending dispatches among these ids; queues itself again for what must wait."""
    return fanout.retry(ids=dispatch_ids)
