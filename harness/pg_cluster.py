"""A private, throwaway PostgreSQL cluster for tests that stop and restart the server.

The shared cluster (``.ci/services``, port 5432) serves every test run on the machine and
must never be restarted by a test; this one lives in a temporary directory, listens on a
free port of 127.0.0.1 with a random password, and is stopped by its own process id.
initdb refuses to run as root, so under root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness.wait import free_port, wait_for


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb (as .ci/services installs)."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
                      key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
    return versions[-1] / "bin" if versions else None


class ThrowawayCluster:
    """initdb + postgres in a temp dir; ``stop()`` is a fast shutdown (SIGINT, what
    ``pg_ctl restart`` does by default), ``start()`` brings the same data back."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.root = Path(tempfile.mkdtemp(prefix="oa-pg-"))
        self.data = self.root / "data"
        self.proc: subprocess.Popen[Any] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def dsn(self) -> str:
        return f"postgresql://oa:{self.password}@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "oa", "-E", "UTF8",
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
            check=True, capture_output=True, cwd=self.root, **self._as,
        )
        pwfile.unlink()

    async def start(self, timeout: float = 30) -> None:
        import asyncpg

        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}"],
            stdout=log, stderr=log, cwd=self.root, **self._as,
        )
        log.close()

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                                   + (self.root / "server.log").read_text()[-1500:])
            try:
                con = await asyncpg.connect(self.dsn, timeout=2)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                return False
            await con.close()
            return True

        await wait_for(ready, timeout, "the throwaway PostgreSQL to accept connections", 0.1)

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown of our own postmaster, by its process id."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
