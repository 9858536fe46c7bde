"""``python -m oa_node.plugins.relay`` as a child process, started and stopped by its PID."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.wait import free_port, stop_process, wait_port

REPO = Path(__file__).resolve().parents[1]


class RelayProcess:
    """A real relay on 127.0.0.1 (SQLite at ``db``); ``extra`` are more ``relay`` options,
    e.g. ``["--no-rate-limits"]``."""

    def __init__(self, db: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.db = db
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [sys.executable, "-m", "oa_node.plugins.relay", "--host", "127.0.0.1",
               "--port", str(self.port), "--db", str(self.db), *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
