"""``DockerSandbox``: one hardened, throw-away container per job.

Every container runs with no network (unless the spec allows more), ``cap_drop=ALL``,
``no-new-privileges``, a read-only root, tmpfs ``/tmp`` and workspace, uid 1000, memory /
CPU / pids limits and no log driver. The job's commands run inside the container's own
process (``runner.py``), fed the spec and the workspace tar over the attached stdin, and
report frames over stdout, so a job costs one create/attach/start/wait/remove cycle.

The container is removed in every case (``finally``; a cleanly finished one off the job's
critical path, by a remover thread that ``close()`` and interpreter exit drain, bounded in
time), a watchdog kills it at the deadline or on cancellation, and containers carry labels
naming their owner (data dir id, host, PID and start time: :mod:`.owners`) so that
leftovers of a killed or crashed owner are removed when the next sandbox of that data dir
starts (``cleanup``), and never those of another live owner.
OOM kills are detected three ways: the runner's per-command cgroup ``oom_kill`` count,
``State.OOMKilled``, and (cgroup v1, where OOMKilled can miss kills) the host's memory
cgroup ``memory.oom_control``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import mimetypes
import os
import queue
import socket
import tarfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oa_node.sandbox.base import (
    ArtifactFile,
    CancelToken,
    CommandRun,
    RunOutcome,
    RunSpec,
    SandboxError,
    SandboxUnavailable,
)
from oa_node.sandbox.image import Recipe, find_image
from oa_node.sandbox.owners import (
    LABEL_JOB,
    LABEL_OWNER,
    LABEL_SANDBOX,
    Owner,
    data_dir_of,
    describe,
    owner_gone,
)

RUNNER_SOURCE = Path(__file__).with_name("runner.py").read_text()
SANDBOX_USER = "1000:1000"
__all__ = ["LABEL_JOB", "LABEL_OWNER", "DockerSandbox", "connect"]
WATCHDOG_GRACE_SECS = 5.0
CLOSE_SECS = 20.0  # bound on draining removals at shutdown and interpreter exit
MAX_CONTROL_BYTES = 16 * 1024 * 1024
MAX_STDERR_BYTES = 64 * 1024
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "TMPDIR": "/tmp"}


def connect(base_url: str | None = None, timeout: float = 10.0) -> Any:
    """A docker client that answered a ping, or :class:`SandboxUnavailable` saying why."""
    import docker
    import docker.errors
    import requests.exceptions

    try:
        client = (docker.DockerClient(base_url=base_url, timeout=int(timeout)) if base_url
                  else docker.from_env(timeout=int(timeout)))
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise SandboxUnavailable(
            f"the Docker daemon does not answer at {where} ({exc}). Start it (for example "
            "`sudo systemctl start docker`, or `sudo dockerd &`), make sure this user may use "
            "it, or point DOCKER_HOST at a running daemon."
        ) from None


class _Demux:
    """Reads docker's multiplexed attach stream: stdout as a file, stderr kept (capped)."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.stderr = bytearray()
        self.eof = False
        self.limit = limit
        self.total = 0

    def _recv_exact(self, n: int) -> bytes | None:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(min(n - len(out), 1 << 16))
            if not chunk:
                return None
            out += chunk
        return bytes(out)

    def _fill(self) -> bool:
        while not self.eof:
            header = self._recv_exact(8)
            if header is None:
                self.eof = True
                return False
            size = int.from_bytes(header[4:8], "big")
            payload = self._recv_exact(size) if size else b""
            if payload is None:
                self.eof = True
                return False
            if header[0] == 2:
                room = MAX_STDERR_BYTES - len(self.stderr)
                if room > 0:
                    self.stderr += payload[:room]
                continue
            self.total += len(payload)
            if self.total > self.limit:
                raise SandboxError(f"the runner sent more than {self.limit} bytes")
            self.buf += payload
            return True
        return False

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and self._fill():
            pass
        if n < 0:
            n = len(self.buf)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readline(self, limit: int = 512) -> bytes:
        while b"\n" not in self.buf and len(self.buf) < limit and self._fill():
            pass
        idx = self.buf.find(b"\n")
        end = idx + 1 if 0 <= idx < limit else min(len(self.buf), limit)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out


class DockerSandbox:
    """The Docker backend of the ``Sandbox`` protocol."""

    name = "docker"

    def __init__(
        self,
        client: Any | None = None,
        *,
        default_image: str = "",
        namespace: str = "default",
        aliases: tuple[str, ...] = (),
        base_url: str | None = None,
        cleanup_on_start: bool = True,
    ) -> None:
        """``namespace`` is the owner's data dir id (containers are labelled with it);
        ``aliases`` are ids earlier versions labelled this data dir's containers with."""
        self.client = client if client is not None else connect(base_url)
        self.default_image = default_image
        self.namespace = namespace
        self.aliases = frozenset((namespace, *aliases))
        self.me = Owner.current()
        self.owner = f"{self.me.host}:{self.me.pid}"
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._removals: queue.Queue[str | None] = queue.Queue()
        self._remover: threading.Thread | None = None
        self._ncpu: int | None = None
        _live.add(self)
        if cleanup_on_start:
            self.cleanup()

    # --- images ---------------------------------------------------------------------

    def resolve_image(self, image: str = "") -> str:
        import docker.errors

        wanted = image or self.default_image
        if not wanted:
            found = find_image(self.client, Recipe())
            if found is None:
                raise SandboxError(
                    "no sandbox image: build it with `oa-node sandbox build-image` "
                    "(or set [sandbox] image to an image digest)"
                )
            return found
        try:
            got = str(self.client.images.get(wanted).id)
        except docker.errors.ImageNotFound:
            raise SandboxError(f"image {wanted} is not present on this Docker host") from None
        except docker.errors.APIError as exc:
            raise SandboxError(f"image {wanted!r}: {exc.explanation or exc}") from None
        if wanted.startswith("sha256:") and got != wanted:
            raise SandboxError(f"image {wanted} resolved to a different digest {got}")
        return got

    # --- leftovers ------------------------------------------------------------------

    def label_filter(self) -> dict[str, Any]:
        """The ``filters`` that list this data dir's sandbox containers (any owner)."""
        return {"label": [f"{LABEL_SANDBOX}=1", f"oa-node.data-dir={self.namespace}"]}

    def _ours(self) -> list[Any]:
        """Every sandbox container of this data dir, whoever owns it (legacy labels too)."""
        found = self.client.api.containers(all=True, filters={"label": LABEL_SANDBOX})
        return [c for c in found if data_dir_of(c.get("Labels") or {}) in self.aliases]

    def orphans(self) -> list[dict[str, Any]]:
        """This data dir's containers whose owner is gone (and this process's own that no
        job uses any more): :func:`.owners.describe` fields, the full ``cid`` and the
        ``reason``."""
        out = []
        for c in self._ours():
            labels = c.get("Labels") or {}
            if labels.get(LABEL_OWNER) == self.owner and owner_gone(labels, self.me) is None:
                with self._lock:
                    if c["Id"] in self._active:
                        continue
                reason: str | None = "left by this process"
            else:
                reason = owner_gone(labels, self.me)
            if reason is not None:
                out.append({**describe(c), "cid": str(c["Id"]), "reason": reason})
        return out

    def cleanup(self) -> int:
        """Remove this data dir's containers whose owner process is gone (a running one is
        killed first); the number removed."""
        removed = 0
        for o in self.orphans():
            with contextlib.suppress(Exception):  # one that resists is left for next time
                removed += self.remove(o["cid"])
        return removed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every finished job's container is removed (at most ``timeout``
        seconds); whether the queue is empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        q = self._removals
        with q.all_tasks_done:
            while q.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                q.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = CLOSE_SECS) -> None:
        """Shutdown: drain the remove-later queue, then remove every container this process
        still has, all within about ``timeout`` seconds (what is left then is an orphan the
        next start of this data dir removes)."""
        _live.discard(self)
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        try:
            left = self._ours()
        except Exception:  # the daemon went away: the next start removes them
            return
        for c in left:
            if time.monotonic() > deadline:
                break
            if (c.get("Labels") or {}).get(LABEL_OWNER) == self.owner:
                with contextlib.suppress(Exception):
                    self.remove(c["Id"])

    def _remove_later(self, cid: str) -> None:
        """Remove a finished job's container off the result's critical path (~70 ms)."""
        with self._lock:
            if self._remover is None or not self._remover.is_alive():
                self._remover = threading.Thread(target=self._remove_loop, daemon=True,
                                                 name="oa-sandbox-remover")
                self._remover.start()
        self._removals.put(cid)

    def _remove_loop(self) -> None:
        while True:
            cid = self._removals.get()
            try:
                if cid is not None:
                    with contextlib.suppress(Exception):
                        self.remove(cid)
            finally:
                with self._lock:
                    self._active.discard(cid or "")
                self._removals.task_done()

    def remove(self, cid: str) -> bool:
        """Kill and remove container ``cid`` (and its volumes); False if already gone."""
        import docker.errors

        try:
            self.client.api.remove_container(cid, force=True, v=True)
            return True
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if "already in progress" in str(exc):
                return False
            raise

    # --- running --------------------------------------------------------------------

    def _cpus(self, wanted: float) -> float:
        if self._ncpu is None:
            self._ncpu = int(self.client.info().get("NCPU") or os.cpu_count() or 1)
        return max(0.01, min(wanted, float(self._ncpu)))

    def _host_config(self, spec: RunSpec) -> Any:
        lim = spec.limits
        mem = f"{lim.memory_mb}m"
        tmpfs_opts = f"rw,exec,nosuid,nodev,size={lim.disk_mb}m"
        network = {"none": "none", "localhost": "none", "full": "bridge"}[spec.network]
        return self.client.api.create_host_config(
            network_mode=network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={
                "/tmp": tmpfs_opts + ",mode=1777",
                spec.mount_path: tmpfs_opts + ",uid=1000,gid=1000,mode=0755",
            },
            mem_limit=mem,
            memswap_limit=mem,
            nano_cpus=int(self._cpus(lim.cpus) * 1e9),
            pids_limit=lim.pids,
            shm_size="64m",
            ipc_mode="private",
            oom_score_adj=500,
            ulimits=[{"Name": "core", "Soft": 0, "Hard": 0},
                     {"Name": "nofile", "Soft": 4096, "Hard": 4096}],
            log_config={"Type": "none", "Config": {}},
            privileged=False,
        )

    def _job_line(self, spec: RunSpec) -> bytes:
        doc = {
            "commands": [{"cmd": c.cmd, "workdir": c.workdir,
                          "continue_on_fail": c.continue_on_fail} for c in spec.commands],
            "mount_path": spec.mount_path,
            "timeout_secs": spec.limits.timeout_secs,
            "preview_bytes": spec.limits.preview_bytes,
            "base_env": BASE_ENV,
            "env": dict(spec.env),
            "artifacts": list(spec.artifacts),
        }
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    def run(self, spec: RunSpec, cancel: CancelToken | None = None) -> RunOutcome:
        import docker.errors

        started = time.monotonic()
        try:
            digest = self.resolve_image(spec.image)
        except SandboxError as exc:
            return RunOutcome(status="error", image_digest=spec.image, error=str(exc))
        if not spec.commands:
            return RunOutcome(status="error", image_digest=digest,
                              error="the job has no commands to run")
        cancel = cancel or CancelToken()
        if cancel.cancelled:
            return RunOutcome(status="cancelled", image_digest=digest,
                              error="cancelled before start")
        try:
            cid = self.client.api.create_container(
                image=digest,
                entrypoint=["python3", "-I", "-c", RUNNER_SOURCE],
                command=[],
                user=SANDBOX_USER,
                working_dir="/",
                environment={"PATH": BASE_ENV["PATH"], "LANG": "C.UTF-8"},
                hostname="sandbox",
                stdin_open=True,
                tty=False,
                labels={**self.me.labels(self.namespace), LABEL_JOB: spec.job_id},
                host_config=self._host_config(spec),
            )["Id"]
        except docker.errors.APIError as exc:
            return RunOutcome(status="error", image_digest=digest,
                              error=f"could not create the container: {exc.explanation or exc}")
        with self._lock:
            self._active.add(cid)
        finished = False
        try:
            outcome, finished = self._run_container(cid, spec, digest, cancel)
        except (docker.errors.APIError, SandboxError, OSError) as exc:
            outcome = RunOutcome(status="error", image_digest=digest,
                                 error=f"sandbox failure: {exc}")
        finally:
            if finished:
                self._remove_later(cid)  # the runner ended cleanly: nothing left to read
            else:
                self.remove(cid)
                with self._lock:
                    self._active.discard(cid)
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _run_container(self, cid: str, spec: RunSpec, digest: str,
                       cancel: CancelToken) -> tuple[RunOutcome, bool]:
        """The outcome, and whether the runner finished cleanly (no need to inspect)."""
        api = self.client.api
        raw = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                             "stream": 1})
        sock: socket.socket = getattr(raw, "_sock", raw)
        killed: list[str] = []

        def kill(reason: str) -> None:
            if not killed:
                killed.append(reason)
            with contextlib.suppress(Exception):
                api.kill(cid)

        hard_deadline = spec.limits.timeout_secs + WATCHDOG_GRACE_SECS
        timer = threading.Timer(hard_deadline, kill, args=("timeout",))
        timer.daemon = True
        try:
            api.start(cid)
            timer.start()
            cancel.on_cancel(lambda: kill("cancelled"))
            sock.settimeout(hard_deadline + 30)
            with contextlib.suppress(OSError):
                sock.sendall(self._job_line(spec))
                _send_workspace_tar(spec.workspace, sock.sendall)
            reader = _Demux(sock, MAX_CONTROL_BYTES + spec.limits.max_artifact_bytes)
            frames, artifacts, proto_error = self._read_frames(reader, spec)
        finally:
            timer.cancel()
            with contextlib.suppress(OSError):
                sock.close()
        clean = "end" in frames and proto_error is None and not killed
        state: dict[str, Any] = {}
        oom_host = None
        if not clean:  # find out why: OOM kill (cgroup v1 needs the host count), crash
            with contextlib.suppress(Exception):
                api.wait(cid, timeout=10)
                state = api.inspect_container(cid).get("State", {})
            oom_host = _host_oom_kills(cid)
        outcome = self._outcome(spec, digest, frames, artifacts, proto_error, killed, state,
                                oom_host, bytes(reader.stderr))
        return outcome, clean

    def _read_frames(self, reader: _Demux, spec: RunSpec
                     ) -> tuple[dict[str, Any], list[ArtifactFile], str | None]:
        frames: dict[str, Any] = {"runs": []}
        artifacts: list[ArtifactFile] = []
        try:
            while True:
                line = reader.readline()
                if not line:
                    return frames, artifacts, None
                parts = line.decode("ascii", "replace").split()
                if len(parts) != 3 or parts[0] != "OA1":
                    return frames, artifacts, f"unexpected runner output {line[:80]!r}"
                kind, length = parts[1], int(parts[2])
                if kind == "artifacts":
                    artifacts = _read_artifacts(reader, spec)
                    return frames, artifacts, None
                if not 0 <= length <= MAX_CONTROL_BYTES:
                    return frames, artifacts, f"runner frame too large ({length} bytes)"
                payload = json.loads(reader.read(length))
                if kind == "run":
                    frames["runs"].append(payload)
                else:
                    frames[kind] = payload
        except (ValueError, tarfile.TarError, SandboxError) as exc:
            return frames, artifacts, f"bad runner output: {exc}"
        except TimeoutError:
            return frames, artifacts, "the runner stopped answering"

    def _outcome(self, spec: RunSpec, digest: str, frames: dict[str, Any],
                 artifacts: list[ArtifactFile], proto_error: str | None, killed: list[str],
                 state: dict[str, Any], oom_host: int | None, stderr: bytes) -> RunOutcome:
        runs = [_command_run(r) for r in frames["runs"]]
        info = dict(frames.get("info") or {})
        hostname = str(info.pop("hostname", ""))
        info["limits"] = spec.limits.to_dict()
        info["network_policy"] = spec.network
        oom = bool(state.get("OOMKilled")) or bool(oom_host) or any(r.oom_killed for r in runs)
        end = frames.get("end")
        out = RunOutcome(status="error", image_digest=digest, runs=runs, hostname=hostname,
                         system_info=info, oom_killed=oom)
        if killed and killed[0] == "cancelled":
            out.status, out.error = "cancelled", "the job was cancelled"
        elif killed and killed[0] == "timeout" and end is None:
            out.status = "timeout"
            out.error = f"time limit of {spec.limits.timeout_secs:g}s exceeded"
        elif end is not None and proto_error is None:
            out.status = end["status"]
            out.error = end.get("error")
            out.artifacts = artifacts
        elif oom:
            out.status = "failed"
            out.error = (f"out of memory: the job exceeded its {spec.limits.memory_mb} MiB "
                         "memory limit and the sandbox was killed")
        else:
            tail = stderr.decode("utf-8", "replace").strip()[-2000:]
            code = state.get("ExitCode")
            out.error = proto_error or f"the sandbox runner ended early (exit code {code})"
            if tail:
                out.error += f": {tail}"
        if oom and out.status in ("failed", "success") and "memory" not in (out.error or ""):
            out.status = "failed"
            out.error = ((out.error + "; ") if out.error else "") + (
                f"out of memory (limit {spec.limits.memory_mb} MiB)")
        return out


_live: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """An owner that never called ``close()`` still has its finished jobs' containers
    removed before the interpreter exits (bounded)."""
    deadline = time.monotonic() + CLOSE_SECS
    for sb in list(_live):
        with contextlib.suppress(Exception):
            sb.flush(max(0.0, deadline - time.monotonic()))


def _command_run(r: dict[str, Any]) -> CommandRun:
    out_hash, out_size, out_prev = r["stdout"]
    err_hash, err_size, err_prev = r["stderr"]
    return CommandRun(
        cmd=r["cmd"], exit_code=int(r["exit_code"]), duration_ms=int(r["duration_ms"]),
        stdout_sha256=out_hash, stderr_sha256=err_hash, stdout_preview=out_prev,
        stderr_preview=err_prev, stdout_bytes=int(out_size), stderr_bytes=int(err_size),
        timed_out=bool(r.get("timed_out")), oom_killed=bool(r.get("oom_killed")),
    )


TAR_SEND_CHUNK = 1 << 20


def _send_workspace_tar(workspace: Path | None, send: Callable[[bytes], Any]) -> None:
    """Stream the workspace as an uncompressed tar owned by the sandbox user, in chunks of
    about 1 MiB as tarfile writes them, so host memory stays flat whatever the checkout
    holds."""
    buf = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            buf.extend(data)
            if len(buf) >= TAR_SEND_CHUNK:
                send(bytes(buf))
                buf.clear()
            return len(data)

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 1000
        info.uname = info.gname = "sandbox"
        return info

    with tarfile.open(fileobj=Sink(), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
        if workspace is not None:
            for entry in sorted(os.listdir(workspace)):
                tar.add(workspace / entry, arcname=entry, filter=owner)
    if buf:
        send(bytes(buf))


def _read_artifacts(reader: _Demux, spec: RunSpec) -> list[ArtifactFile]:
    """Hash (and optionally save) each regular file of the runner's artifact tar."""
    found: list[ArtifactFile] = []
    total = 0
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            if not member.isfile():
                continue
            name = os.path.normpath(member.name)
            if name.startswith(("/", "..")) or len(found) >= 128:
                raise SandboxError(f"unexpected artifact entry {member.name!r}")
            total += member.size
            if total > spec.limits.max_artifact_bytes:
                raise SandboxError(
                    f"artifacts exceed {spec.limits.max_artifact_bytes} bytes in total")
            fh = tar.extractfile(member)
            assert fh is not None
            h = hashlib.sha256()
            sink = None
            if spec.artifacts_dir is not None:
                target = spec.artifacts_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                sink = open(target, "wb")
            try:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    if sink:
                        sink.write(chunk)
            finally:
                if sink:
                    sink.close()
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            found.append(ArtifactFile(path=name, sha256=h.hexdigest(), size_bytes=member.size,
                                      mime_type=mime))
    return found


def _host_oom_kills(cid: str) -> int | None:
    """cgroup v1 ``oom_kill`` count of the container, read on the host if visible."""
    for path in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.oom_control",
                 f"/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope/memory.oom_control",
                 f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.events",
                 f"/sys/fs/cgroup/docker/{cid}/memory.events"):
        try:
            with open(path) as fh:
                for ln in fh:
                    key, _, value = ln.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None
