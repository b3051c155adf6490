"""Prometheus families of the trigger sources' ``stats``: one counter per kind of event, by source and channel.

A collector reads ``stats`` at scrape time, so nothing on a source's thread touches the registry; the list of
sources is asked for on every scrape (the station may add or drop sources while it runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inspection.line.sources.base import SourceStats
from inspection.line.triggers import TriggerSource

COUNTERS = {
    "received": "Triggers handed to the station.",
    "duplicates": "Triggers seen again (QoS 1 re-delivery, a bit still set) and not handed on twice.",
    "malformed": "Messages or registers that could not be a trigger (answered with the reason).",
    "missed": "Triggers that came while the source could not see them (answered as not judged where possible).",
    "answered": "Answers the station gave back to the source.",
    "errors": "Failures of the channel (refused reads, failed publishes, connection attempts).",
    "disconnects": "Links to the PLC / broker that were lost.",
    "polls": "Reads of the PLC or frames looked at.",
}


class TriggerSourceCollector(Collector):
    def __init__(self, sources: Callable[[], Iterable[TriggerSource]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families = {name: CounterMetricFamily(f"qcline_trigger_{name}", text, labels=["source", "channel"])
                    for name, text in COUNTERS.items()}
        connected = GaugeMetricFamily("qcline_trigger_source_connected", "1 while the source's channel is up.",
                                      labels=["source", "channel"])
        for source in self._sources():
            stats = getattr(source, "stats", None)
            if not isinstance(stats, SourceStats):
                continue  # a source without counters (e.g. the HTTP channel's own)
            labels = [source.name, source.channel.value]
            for name, family in families.items():
                family.add_metric(labels, float(getattr(stats, name)))
            connected.add_metric(labels, float(stats.connected))
        yield from families.values()
        yield connected
