"""Hosts of the test's own: Linux network namespaces, each linked to this one by a veth pair.

A test of what a network partition does to workers on several machines needs machines
whose link it can cut. Each `Host` is a network namespace (``ip netns add``) with one end of
a veth pair and its own /30: the root namespace's end is ``.1`` (where a server of the
test's own listens: tests/pg_server.py's ``also_listen``), the host's end ``.2``. Names carry
a random suffix and the /30s come from a random corner of 10.0.0.0/8, so parallel runs do
not collide; `Network.remove` deletes everything, whatever state the test left it in.

Needs root and iproute2's ``ip``; `NetnsUnavailable` says which is missing.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

COMMAND_TIMEOUT = 10.0
"""Seconds one ``ip`` command may take (they take milliseconds)."""


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refused)."""


@dataclass(frozen=True)
class Host:
    """One namespace and its link: ``outer`` is the veth end in the root namespace."""

    namespace: str
    outer: str
    inner: str
    network: ipaddress.IPv4Network

    @property
    def server_interface(self) -> str:
        """The root namespace's end, in CIDR form (``10.1.2.1/30``)."""
        return f"{self.network[1]}/{self.network.prefixlen}"

    @property
    def server_address(self) -> str:
        """Where this host reaches the root namespace."""
        return str(self.network[1])

    @property
    def address(self) -> str:
        return str(self.network[2])

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec``)."""
        return [_ip(), "netns", "exec", self.namespace, *argv]


class Network:
    """Hosts linked to the root namespace; a context manager that removes them on exit."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self.suffix = secrets.token_hex(3)
        self._base = _random_block()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()

    def add_host(self) -> Host:
        """A new namespace, linked and up; `NetnsUnavailable` if it cannot be made."""
        index = len(self.hosts)
        host = Host(
            namespace=f"jobtrail-{self.suffix}-{index}",
            outer=f"jt{self.suffix}o{index}",
            inner=f"jt{self.suffix}i{index}",
            network=ipaddress.IPv4Network((int(self._base.network_address) + 4 * index, 30)),
        )
        self.hosts.append(host)  # before anything is made: `remove` undoes a half-made host
        ip("netns", "add", host.namespace)
        ip("link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
        ip("link", "set", host.inner, "netns", host.namespace)
        ip("addr", "add", host.server_interface, "dev", host.outer)
        ip("link", "set", host.outer, "up")
        inside = ("-n", host.namespace)
        ip(*inside, "addr", "add", f"{host.address}/30", "dev", host.inner)
        ip(*inside, "link", "set", host.inner, "up")
        ip(*inside, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        """Drop the host's link: its packets go nowhere, no error, no reset."""
        ip("link", "set", host.outer, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.outer, "up")

    def remove(self) -> None:
        """Delete every link and namespace made, ignoring what is already gone."""
        for host in self.hosts:
            # Deleting one end deletes the pair; a namespace's deletion alone would free
            # the pair only later, asynchronously.
            _quiet("link", "del", host.outer)
            _quiet("netns", "del", host.namespace)
        self.hosts.clear()


def check_available() -> None:
    """Raise `NetnsUnavailable` with the reason, unless namespaces can be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    _ip()
    probe = f"jobtrail-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    finally:
        _quiet("netns", "del", probe)


def ip(*args: str) -> None:
    """One ``ip`` command; `NetnsUnavailable` with its message if it fails."""
    done = subprocess.run([_ip(), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {done.stderr.strip() or done.stdout}")


def _quiet(*args: str) -> None:
    subprocess.run([_ip(), *args], capture_output=True, timeout=COMMAND_TIMEOUT)


def _ip() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise NetnsUnavailable("no `ip` command (install iproute2)")
    return found


def _random_block() -> ipaddress.IPv4Network:
    """A random /26 of 10.30.0.0–10.229.255.255 (room for 16 hosts' /30s), away from the
    ends of 10.0.0.0/8 where other networks most often are, and overlapping no route here."""
    used = _routed_networks()
    first, blocks = int(ipaddress.IPv4Address("10.30.0.0")), 200 * 256 * 4
    while True:
        block = ipaddress.IPv4Network((first + 64 * secrets.randbelow(blocks), 26))
        if not any(block.overlaps(network) for network in used):
            return block


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """The destinations of this namespace's IPv4 routes (``default`` left out)."""
    done = subprocess.run(
        [_ip(), "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    networks = []
    for words in map(str.split, done.stdout.splitlines()):
        if words and words[0] in ("local", "broadcast", "unicast"):
            words = words[1:]
        try:
            networks.append(ipaddress.IPv4Network(words[0], strict=False))
        except (ValueError, IndexError):
            continue  # default, an empty line
    return networks
