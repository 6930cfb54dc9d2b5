"""Prometheus metrics: the worker's counters and histograms, the relay's lag, and the
queue-wide gauges the `jobtrail metrics` exporter reads from the database (docs/metrics.md).

Every process keeps its metrics in a `CollectorRegistry` of its own (never the global
default), so several workers, or tests, can live in one Python process.
"""
