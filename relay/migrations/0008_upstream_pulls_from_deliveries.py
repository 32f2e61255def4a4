"""The HUD names upstream PRs from its own table (hud.UpstreamPull), which the relay writes
with each new delivery; this fills it from the deliveries recorded before that. The relay
does it (relay depends on hud, never the other way), in the HUD's rule: the newest
`pull_request` delivery of each PR gives its title and author."""

from django.db import migrations


def copy_titles(apps, schema_editor):
    Delivery = apps.get_model("relay", "Delivery")
    UpstreamPull = apps.get_model("hud", "UpstreamPull")
    newest = {}
    deliveries = Delivery.objects.filter(event="pull_request", pr_number__gt=0)
    fields = ("pr_number", "upstream_repo", "title", "author", "received_at")
    for number, upstream, title, author, at in deliveries.order_by("received_at").values_list(
        *fields
    ).iterator():
        newest[number] = UpstreamPull(
            number=number, upstream_repo=upstream, title=title, author=author, updated_at=at
        )
    UpstreamPull.objects.bulk_create(newest.values(), batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("relay", "0007_storable_json"),
        ("hud", "0007_upstreampull"),
    ]

    operations = [migrations.RunPython(copy_titles, migrations.RunPython.noop)]
