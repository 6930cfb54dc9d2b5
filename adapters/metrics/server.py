"""The HTTP endpoint Prometheus scrapes: prometheus_client's own server, on a daemon thread.

Started before the process does any work, so a port that cannot be had is one line and
exit status 1 with nothing claimed, published or read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from jobtrail.domain.errors import JobtrailError
from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("jobtrail.metrics")

DEFAULT_HOST = "127.0.0.1"
"""Metrics stay on the machine unless asked (`--metrics-host 0.0.0.0` in a container)."""


class MetricsPortUnavailable(JobtrailError):
    """Cannot serve metrics on {host}:{port}: {reason}."""


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port served (the one asked for, or the one the system gave for port 0)."""
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(registry: CollectorRegistry, port: int, host: str = DEFAULT_HOST) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (any path answers) until `stop`."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except (OSError, OverflowError) as error:  # in use, not ours, an unknown host, > 65535
        reason = getattr(error, "strerror", None) or str(error)
        raise MetricsPortUnavailable(host=host, port=port, reason=reason) from None
    log.info("metrics at http://%s:%d/metrics", host, server.server_port)
    return MetricsServer(server, thread)
