"""The allowlist file (contract §4): strict, atomic parsing and the upstream syntax on export.

Parsing accepts every file PyTorch's relay accepts (an empty document, empty or null levels,
oncalls as a comma string, a list, a number or nothing, unknown top-level keys) and refuses the
whole file, naming each bad entry, for the errors the contract lists. Where PyTorch's parser
silently loses data we refuse instead: a repo listed twice in any spelling, or a YAML mapping
with the same key twice (PyYAML would keep only the last one).

Export writes only what PyTorch's parser reads correctly: L1/L2/L4 oncalls as a comma string,
L3 oncalls as a list, and the settings mapping only when `events` differs from the default.
"""

import re
from dataclasses import dataclass
from typing import Any

import yaml

from allowlist.entry import ALL_EVENTS, Entry, Event, Level

LIST_LEVELS = (Level.L1, Level.L2, Level.L4)
ENTRY_KEYS = {"events", "oncalls"}
# Exactly one '/', no spaces; the characters GitHub allows in owner and repository names.
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
EXPORT_HEADER = (
    "# CRCR allowlist, written by `manage.py allowlist_export`.\n"
    "# Levels: L1 notify only, L2 results on the HUD, L3 check run when the PR has the label\n"
    "# ciflow/crcr/<device>, L4 blocking check run on every PR.\n"
)


class AllowlistError(ValueError):
    """The file is refused whole; `problems` names each bad entry and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("allowlist refused: " + "; ".join(problems))


@dataclass(frozen=True)
class ParsedAllowlist:
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()

    def by_key(self) -> dict[str, Entry]:
        return {entry.key: entry for entry in self.entries}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool | None) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _type_name(value: object) -> str:
    return {
        type(None): "null",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


class _Parser:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.entries: list[Entry] = []
        self.where: dict[str, str] = {}  # repo key -> where it was first listed

    def parse(self, document: object) -> ParsedAllowlist:
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise AllowlistError(
                [f"the file must be a mapping of levels, got {_type_name(document)}"]
            )
        for key in document:
            if key not in Level.values:
                self.warnings.append(f"unknown top-level key {key!r} ignored (levels are L1-L4)")
        for level in LIST_LEVELS:
            self._parse_list_level(level, document.get(level.value))
        self._parse_l3(document.get(Level.L3.value))
        if self.problems:
            raise AllowlistError(self.problems)
        order = {level: i for i, level in enumerate(Level)}
        self.entries.sort(key=lambda entry: (order[entry.level], entry.device, entry.key))
        return ParsedAllowlist(tuple(self.entries), tuple(self.warnings))

    def _parse_list_level(self, level: Level, raw: object) -> None:
        if raw is None:
            return
        if not isinstance(raw, list):
            self.problems.append(f"{level.value} must be a list of repos, got {_type_name(raw)}")
            return
        for index, item in enumerate(raw):
            where = f"{level.value}[{index}]"
            if isinstance(item, str):
                self._add(where, item, None, level=level, device="")
            elif isinstance(item, dict) and len(item) == 1:
                ((name, settings),) = item.items()
                self._add(where, name, settings, level=level, device="")
            elif isinstance(item, dict):
                self.problems.append(
                    f"{where}: a mapping entry must have exactly one repo key, got {len(item)}"
                )
            else:
                self.problems.append(
                    f"{where}: must be a repo name or a one-key mapping, got {_type_name(item)}"
                )

    def _parse_l3(self, raw: object) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.problems.append(
                "L3 must be a mapping of device names to repos "
                f"(like L3: {{device: {{org/repo: [oncall]}}}}), got {_type_name(raw)}"
            )
            return
        for device_raw, repos in raw.items():
            device = "" if device_raw is None else str(device_raw).strip()
            if not device:
                self.problems.append("L3: a device name is empty")
                continue
            where = f"L3.{device}"
            if repos is None:
                continue
            if not isinstance(repos, dict):
                self.problems.append(
                    f"{where} must be a mapping of repos to oncalls, got {_type_name(repos)}"
                )
                continue
            for name, settings in repos.items():
                self._add(f"{where}.{name}", name, settings, level=Level.L3, device=device)

    def _add(
        self, where: str, name: object, settings: object, *, level: Level, device: str
    ) -> None:
        repo = str(name).strip().strip("/").strip() if isinstance(name, str | int) else ""
        if not REPO_RE.match(repo):
            self.problems.append(f"{where}: {name!r} is not an owner/name repository")
            return
        problems_before = len(self.problems)
        oncalls, events = self._settings(f"{where} ({repo})", settings)
        key = repo.casefold()
        if key in self.where:
            self.problems.append(
                f"{where}: {repo!r} is already listed at {self.where[key]} "
                "(a repo may appear once in the file, in any spelling)"
            )
        elif len(self.problems) == problems_before:
            self.where[key] = where
            self.entries.append(Entry(repo, level, device, oncalls, events))

    def _settings(self, where: str, raw: object) -> tuple[tuple[str, ...], frozenset[Event]]:
        if not isinstance(raw, dict):
            return self._oncalls(where, raw), ALL_EVENTS
        unknown = sorted(str(key) for key in raw if key not in ENTRY_KEYS)
        if unknown:
            self.problems.append(
                f"{where}: unknown key(s) {', '.join(unknown)} (an entry takes events, oncalls)"
            )
        events = self._events(where, raw["events"]) if "events" in raw else ALL_EVENTS
        return self._oncalls(where, raw.get("oncalls")), events

    def _oncalls(self, where: str, raw: object) -> tuple[str, ...]:
        if raw is None or raw is False or raw == "":
            return ()
        if isinstance(raw, str):
            items: list[object] = list(raw.split(","))
        elif isinstance(raw, list):
            items = raw
        elif isinstance(raw, int | float):
            items = [raw]
        else:
            self.problems.append(
                f"{where}: oncalls must be a string or a list, got {_type_name(raw)}"
            )
            return ()
        handles = []
        for item in items:
            if isinstance(item, dict | list):
                self.problems.append(f"{where}: an oncall must be a handle, got {_type_name(item)}")
            elif item is not None and str(item).strip():
                handles.append(str(item).strip())
        return tuple(handles)

    def _events(self, where: str, raw: object) -> frozenset[Event]:
        allowed = ", ".join(Event.values)
        if not isinstance(raw, list) or not raw:
            self.problems.append(f"{where}: events must be a non-empty list of {allowed}")
            return ALL_EVENTS
        bad = [value for value in raw if value not in Event.values]
        duplicates = sorted({str(v) for v in raw if raw.count(v) > 1})
        if bad:
            self.problems.append(f"{where}: unknown event(s) {bad} (allowed: {allowed})")
        if duplicates:
            self.problems.append(f"{where}: event(s) listed twice: {', '.join(duplicates)}")
        if bad or duplicates:
            return ALL_EVENTS
        return frozenset(Event(value) for value in raw)


def parse_allowlist(text: str) -> ParsedAllowlist:
    """Parse the allowlist file, or raise AllowlistError naming every bad entry."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise AllowlistError([f"not valid YAML{at}: {problem}"]) from None
    return _Parser().parse(document)


class _Flow(list[str]):
    """A list written inline, `[a, b]`; every other collection is written in block style."""


class _ExportDumper(yaml.SafeDumper):
    pass


_ExportDumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def _entry_value(entry: Entry, *, oncalls_as_list: bool) -> object:
    """What follows `org/repo:`; None for a plain string entry."""
    oncalls: object = _Flow(entry.oncalls) if oncalls_as_list else ", ".join(entry.oncalls)
    if entry.events != ALL_EVENTS:
        settings: dict[str, object] = {"events": _Flow(entry.sorted_events())}
        if entry.oncalls:
            settings["oncalls"] = oncalls
        return settings
    if not entry.oncalls:
        return _Flow() if oncalls_as_list else None
    return oncalls


def dump_allowlist(entries: list[Entry] | tuple[Entry, ...]) -> str:
    """The allowlist in the upstream syntax, deterministic for the same entries."""
    document: dict[str, object] = {}
    ordered = sorted(entries, key=lambda entry: entry.key)
    for level in LIST_LEVELS:
        items: list[object] = []
        for entry in (e for e in ordered if e.level == level):
            value = _entry_value(entry, oncalls_as_list=False)
            items.append(entry.repo if value is None else {entry.repo: value})
        document[level.value] = items
    devices: dict[str, dict[str, object]] = {}
    for entry in sorted((e for e in ordered if e.level == Level.L3), key=lambda e: e.device):
        devices.setdefault(entry.device, {})[entry.repo] = _entry_value(entry, oncalls_as_list=True)
    document[Level.L3.value] = devices
    # Level order as people read it, L1 first.
    document = {level.value: document[level.value] for level in Level}
    body = yaml.dump(
        document,
        Dumper=_ExportDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    return EXPORT_HEADER + "\n" + body
