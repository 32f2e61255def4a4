from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from allowlist.lookup import snapshot
from allowlist.yamlfile import dump_allowlist


class Command(BaseCommand):
    help = "Write the allowlist in force (enabled rows) as YAML in the upstream syntax."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="file to write; default: standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        text = dump_allowlist(snapshot().entries)
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as out:
                out.write(text)
        else:
            self.stdout.write(text, ending="")
