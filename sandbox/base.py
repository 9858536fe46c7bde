"""The ``Sandbox`` interface every backend implements, and the values it exchanges.

The interface is schema-agnostic: executors translate a job request into a ``RunSpec``
(image, commands, limits, workspace folder, artifact patterns) and the backend returns a
``RunOutcome``. Nothing here knows about Nostr or job schemas.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["success", "failed", "timeout", "cancelled", "error"]
NetworkPolicy = Literal["none", "localhost", "full"]

TIMEOUT_EXIT_CODE = 124
MAX_ARTIFACTS = 128


class SandboxError(Exception):
    """A sandbox that cannot run at all (daemon missing, image missing, bad spec)."""


class SandboxUnavailable(SandboxError):
    """The backend's service (e.g. the Docker daemon) does not answer."""


class CancelToken:
    """Set from any thread (or an async task) to stop a running job: status ``cancelled``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Any] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, callback: Any) -> None:
        """Call ``callback`` once when cancelled (at once if it already is)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class Limits:
    """Effective resource limits of one job (already capped by the provider)."""

    memory_mb: int = 512
    cpus: float = 1.0
    pids: int = 256
    timeout_secs: float = 60.0
    disk_mb: int = 1024
    preview_bytes: int = 4096
    max_artifact_bytes: int = 256 * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory_mb": self.memory_mb, "cpus": self.cpus, "pids": self.pids,
            "timeout_secs": self.timeout_secs, "disk_mb": self.disk_mb,
            "preview_bytes": self.preview_bytes,
        }


@dataclass(frozen=True)
class CommandSpec:
    cmd: str | list[str]
    workdir: str = "."
    continue_on_fail: bool = False


@dataclass(frozen=True)
class RunSpec:
    """One job for a sandbox: everything already validated by the executor."""

    job_id: str
    commands: tuple[CommandSpec, ...]
    image: str = ""  # "" = the backend's default image
    workspace: Path | None = None  # host folder copied in at mount_path (None = empty)
    mount_path: str = "/workspace"
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    network: NetworkPolicy = "none"
    artifacts: tuple[str, ...] = ()
    artifacts_dir: Path | None = None  # where artifact files are saved on the host


@dataclass
class CommandRun:
    cmd: str | list[str]
    exit_code: int
    duration_ms: int
    stdout_sha256: str
    stderr_sha256: str
    stdout_preview: str
    stderr_preview: str
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    timed_out: bool = False
    oom_killed: bool = False


@dataclass
class ArtifactFile:
    path: str
    sha256: str
    size_bytes: int
    mime_type: str


@dataclass
class RunOutcome:
    status: Status
    image_digest: str
    runs: list[CommandRun] = field(default_factory=list)
    artifacts: list[ArtifactFile] = field(default_factory=list)
    error: str | None = None
    hostname: str = ""
    system_info: dict[str, Any] = field(default_factory=dict)
    oom_killed: bool = False
    duration_ms: int = 0


@runtime_checkable
class Sandbox(Protocol):
    """A place to run a job's commands in isolation."""

    name: str

    def resolve_image(self, image: str = "") -> str:
        """The digest (``sha256:...``) that ``image`` ("" = default) would run."""
        ...

    def run(self, spec: RunSpec, cancel: CancelToken | None = None) -> RunOutcome:
        """Run ``spec``; never raises for job failures, only reports them."""
        ...

    def cleanup(self) -> int:
        """Remove leftovers of earlier runs; returns how many were removed."""
        ...

    def close(self) -> None:
        ...
