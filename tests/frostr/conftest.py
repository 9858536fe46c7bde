"""Shared fixtures for the FROSTR tests: where the official vectors live."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import stop_process, wait_until

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load_vector(relpath: str) -> Any:
    path = VECTORS / relpath
    if not path.exists():  # a missing vectors dir must fail, never skip
        raise FileNotFoundError(f"test vectors not found: {path}")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    assert VECTORS.is_dir(), f"test vectors not found at {VECTORS}"
    return VECTORS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def running(*services: Any) -> AsyncIterator[None]:
    """Run each service's ``run`` (holders, signers: anything started with ``tg.start``)
    for the block, then cancel them."""
    async with anyio.create_task_group() as tg:
        for s in services:
            await tg.start(s.run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


class RelayProcess:
    """A real relay (``python -m oa_node.plugins.relay``) on 127.0.0.1, ended by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        ready = self.workdir / "relay.port"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.plugins.relay", "--port", "0", "--db",
             str(self.workdir / "relay.sqlite3"), "--ready-file", str(ready),
             "--no-rate-limits"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        def started() -> str:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited: {self.proc.stderr.read().decode()[-2000:]}")
            return ready.read_text().strip() if ready.exists() else ""

        try:
            wait_until(started, 20, "the relay to write its port")
        except AssertionError:
            self.stop()
            raise
        self.url = f"ws://127.0.0.1:{int(ready.read_text())}"
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture(scope="module")
def relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    relay = RelayProcess(tmp_path_factory.mktemp("relay"))
    try:
        yield relay.start()
    finally:
        relay.stop()
