"""Reading Prometheus text exposition in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics page, keyed by (sample name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(metrics_url: str) -> Samples:
    """`metrics_url`: the full URL, from `Platform.metrics_url(service)`."""
    return parse(httpx.get(metrics_url, timeout=10).raise_for_status().text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when it does not exist yet (a counter nobody has touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
