"""Wait for a condition, never for a fixed time: every wait polls and has a bound, and a
timeout names what did not happen."""

from __future__ import annotations

import inspect
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import anyio


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition",
                   interval: float = 0.05) -> Any:
    """Poll ``predicate`` (plain or async) until it returns something truthy, which is
    returned; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await anyio.sleep(interval)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition",
               interval: float = 0.05) -> Any:
    """:func:`wait_for` for code outside an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None,
              host: str = "127.0.0.1") -> None:
    """Until something listens on ``port``; RuntimeError at once if ``proc`` exits first."""
    def listening() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening "
                               f"on port {port}")
        return port_open(port, host)

    wait_until(listening, timeout, f"a listener on {host}:{port}")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """SIGTERM ``proc`` (if it still runs), wait up to ``timeout`` seconds for it to exit,
    then SIGKILL it; its exit code (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
