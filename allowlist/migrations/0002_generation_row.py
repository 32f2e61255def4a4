from django.db import migrations


def create_generation_row(apps, schema_editor):
    # The row every allowlist writer locks and every lookup reads (allowlist/lookup.py).
    apps.get_model("allowlist", "Generation").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("allowlist", "0001_initial")]

    operations = [migrations.RunPython(create_generation_row, migrations.RunPython.noop)]
