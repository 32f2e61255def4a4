"""What the HUD knows that an operator alerts on, for /metrics (read at scrape time):

- `crcr_downstream_silent_seconds{repo}`: each repo dispatched to and silent for longer than
  CRCR_SILENT_AFTER (hud/silent.py), how long since its first unanswered dispatch;
- `crcr_probe_last_result_seconds`: how long since the relay-health probe's newest result
  (absent when it has none in the longest window).

A results store that cannot answer yields neither (and `crcr_hud_store_up` 0).
"""

from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hud.reports import DAYS
from hud.storage import StoreUnavailable, get_store


class HudCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:  # (registering reads nothing)
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "crcr_downstream_silent_seconds",
                "Since a silent downstream's first unanswered dispatch",
                labels=["repo"],
            ),
            GaugeMetricFamily(
                "crcr_probe_last_result_seconds", "Since the relay-health probe's newest result"
            ),
            GaugeMetricFamily("crcr_hud_store_up", "Whether the HUD's results store answered"),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from hud.pages import probe_key
        from hud.silent import silent_repos

        silent, probe, up = self._families()
        now = timezone.now()
        store = get_store()
        try:
            for repo in silent_repos(store, now - timedelta(days=max(DAYS)), now):
                silent.add_metric([repo.repo], (now - repo.since).total_seconds())
            newest = store.last_heard([probe_key()], since=now - timedelta(days=max(DAYS)))
        except StoreUnavailable:
            up.add_metric([], 0)
            yield up
            return
        if probe_key() in newest:
            probe.add_metric([], (now - newest[probe_key()]).total_seconds())
        up.add_metric([], 1)
        yield from (silent, probe, up)
