"""A PostgreSQL server of the test's own, which the test may stop, crash and restart.

The shared server the other tests use must never be restarted under them; a test of what
a database restart does to jobtrail starts its own from the server binaries
(`initdb`/`pg_ctl` on PATH, under `pg_config --bindir`, in /usr/lib/postgresql/*/bin, or in
JOBTRAIL_TEST_PG_BINDIR). PostgreSQL refuses to run as root: as root the server runs as
the `postgres` user.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.kafka_broker import free_port


class ServerUnavailable(Exception):
    """No PostgreSQL server binaries to start a server of the test's own."""


def _bindir() -> Path:
    candidates = [os.environ.get("JOBTRAIL_TEST_PG_BINDIR", "")]
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise ServerUnavailable("no initdb/pg_ctl found (set JOBTRAIL_TEST_PG_BINDIR)")


class OwnPostgres:
    """initdb into a temporary folder, then start/stop/crash/restart on a free port."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="jobtrail-pg-"))
        self.also_listen: tuple[str, ...] = ()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, also_listen: Sequence[str] | None = None) -> None:
        """``also_listen``: interfaces in CIDR form (``10.1.2.1/30``) the server listens on
        besides 127.0.0.1, trusting clients of each one's network (other network namespaces'
        ends of veth pairs: tests/netns.py). Kept for later starts; None: as before."""
        if also_listen is not None:
            self._trust(also_listen)
            self.also_listen = tuple(also_listen)
        addresses = ",".join(
            ["127.0.0.1", *(str(ipaddress.ip_interface(i).ip) for i in self.also_listen)]
        )
        options = f"-p {self.port} -k {self.data} -c listen_addresses={addresses}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "log"),
            "-w",
            "start",
        )

    def _trust(self, interfaces: Sequence[str]) -> None:
        """Let clients of each interface's network in without a password, as initdb's
        ``-A trust`` lets 127.0.0.1 in (pg_hba.conf is read at start)."""
        networks = {str(ipaddress.ip_interface(i).network) for i in interfaces}
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in sorted(networks))

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: a crash, recovered from the WAL on start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.data, ignore_errors=True)

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True)
        if done.returncode != 0:
            raise ServerUnavailable(f"{program} failed: {done.stderr.strip() or done.stdout}")
