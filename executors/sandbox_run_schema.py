"""``oa.sandbox_run.v1``: run commands on a repository checkout in a sandbox.

Request and result: the models below. oa-node additions (all optional, so documents from
other implementations still parse): ``artifacts`` (paths/globs relative to the workspace),
``resources.pids``, and per run ``stdout_bytes``, ``stderr_bytes``, ``timed_out``,
``oom_killed``. ``repo`` may be omitted (an empty workspace).

``from_dict`` keeps the document it parsed in ``raw``, so hashes are taken over exactly
what was sent, whatever defaults this implementation fills in.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from oa_node.executors.schema import (
    IMAGE_DIGEST,
    Obj,
    Provenance,
    SchemaError,
    Verification,
    check_str,
    git_ref,
    join,
    relative_path,
    repo_url,
    sha256_hex,
)

SCHEMA_ID = "oa.sandbox_run.v1"
NETWORK_POLICIES = ("none", "localhost", "full")
STATUSES = ("success", "failed", "timeout", "cancelled", "error")
MAX_COMMANDS = 64
MAX_ARTIFACT_PATTERNS = 128
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MOUNT = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_RESERVED_MOUNTS = {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt",
                    "proc", "root", "run", "sbin", "sys", "tmp", "usr", "var"}


@dataclass(frozen=True)
class Resources:
    memory_mb: int = 512
    cpus: float = 1.0
    timeout_secs: float = 60
    disk_mb: int = 1024
    pids: int = 256

    @classmethod
    def parse(cls, value: Any, path: str) -> Resources:
        o = Obj(value, path, ("memory_mb", "cpus", "timeout_secs", "disk_mb", "pids"))
        return cls(
            memory_mb=o.int("memory_mb", 512, lo=16, hi=1 << 20),
            cpus=o.num("cpus", 1.0, positive=True, hi=1024),
            timeout_secs=o.num("timeout_secs", 60, positive=True, hi=7 * 86400),
            disk_mb=o.int("disk_mb", 1024, lo=1, hi=1 << 22),
            pids=o.int("pids", 256, lo=8, hi=1 << 16),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"memory_mb": self.memory_mb, "cpus": self.cpus,
                "timeout_secs": self.timeout_secs, "disk_mb": self.disk_mb, "pids": self.pids}


@dataclass(frozen=True)
class SandboxSpec:
    provider: str = "docker"
    image_digest: str = ""  # "" = the provider's default image
    network_policy: str = "none"
    resources: Resources = field(default_factory=Resources)

    @classmethod
    def parse(cls, value: Any, path: str) -> SandboxSpec:
        o = Obj(value, path, ("provider", "image_digest", "network_policy", "resources"))
        digest = o.str("image_digest", "")
        if digest and not IMAGE_DIGEST.match(digest):
            raise SchemaError(o.at("image_digest"),
                              f"expected sha256:<64 hex> or empty, got {digest!r}")
        return cls(
            provider=o.str("provider", "docker", max_len=64, allow_empty=False),
            image_digest=digest,
            network_policy=o.str("network_policy", "none", choices=NETWORK_POLICIES),
            resources=o.sub("resources", Resources.parse, Resources()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "image_digest": self.image_digest,
                "network_policy": self.network_policy, "resources": self.resources.to_dict()}


def mount_path(value: Any, path: str) -> str:
    text = check_str(value, path, max_len=255, allow_empty=False)
    parts = text.split("/")
    if not _MOUNT.match(text) or ".." in parts or "." in parts:
        raise SchemaError(path, f"expected an absolute path like /workspace, got {text!r}")
    if parts[1] in _RESERVED_MOUNTS:
        raise SchemaError(path, f"{text!r} would shadow a system folder")
    return text


@dataclass(frozen=True)
class RepoSpec:
    source: str
    git_ref: str = "HEAD"
    mount_path: str = "/workspace"

    @classmethod
    def parse(cls, value: Any, path: str) -> RepoSpec:
        o = Obj(value, path, ("source", "git_ref", "mount_path"))
        return cls(
            source=o.sub("source", repo_url),
            git_ref=o.sub("git_ref", git_ref, "HEAD"),
            mount_path=o.sub("mount_path", mount_path, "/workspace"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "git_ref": self.git_ref, "mount_path": self.mount_path}


@dataclass(frozen=True)
class Command:
    cmd: str | list[str]
    workdir: str = "."
    continue_on_fail: bool = False

    @classmethod
    def parse(cls, value: Any, path: str) -> Command:
        o = Obj(value, path, ("cmd", "workdir", "continue_on_fail"))
        raw = o.raw("cmd")
        cmd: str | list[str]
        if isinstance(raw, list):
            if not raw:
                raise SchemaError(o.at("cmd"), "an argument list must not be empty")
            cmd = [check_str(a, f"{o.at('cmd')}[{i}]", max_len=65536) for i, a in enumerate(raw)]
        else:
            cmd = check_str(raw, o.at("cmd"), max_len=65536, allow_empty=False)
        return cls(
            cmd=cmd,
            workdir=o.sub("workdir", _workdir, "."),
            continue_on_fail=o.bool("continue_on_fail", False),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "workdir": self.workdir, "continue_on_fail": self.continue_on_fail}


def _workdir(value: Any, path: str) -> str:
    """A command's folder: relative to the workspace, or absolute (then the request makes
    it relative to its mount path, refusing one outside it)."""
    if isinstance(value, str) and value.startswith("/"):
        try:  # the same refusals as a relative path ('..', control characters)
            relative_path(value.lstrip("/") or ".", path)
        except SchemaError:
            raise SchemaError(path, f"must stay inside the workspace: {value!r}") from None
        return posixpath.normpath(value)
    return relative_path(value, path)


def _inside_mount(commands: tuple[Command, ...], mount: str, path: str
                  ) -> tuple[Command, ...]:
    """Absolute workdirs as paths relative to ``mount``: ``/workspace`` -> ``.``,
    ``/workspace/sub`` -> ``sub``; any other absolute path escapes the workspace."""
    out = []
    for i, c in enumerate(commands):
        if c.workdir.startswith("/"):
            if c.workdir != mount and not c.workdir.startswith(mount.rstrip("/") + "/"):
                raise SchemaError(join(join(join(path, "commands"), i), "workdir"),
                                  f"{c.workdir!r} is outside the workspace {mount!r}")
            c = dataclasses.replace(c, workdir=posixpath.relpath(c.workdir, mount))
        out.append(c)
    return tuple(out)


def _env(value: Any, path: str) -> dict[str, str]:
    o = Obj(value, path, tuple(value) if isinstance(value, dict) else ())
    if len(value) > 256:
        raise SchemaError(path, f"at most 256 variables, got {len(value)}")
    for name in o.value:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise SchemaError(o.at(str(name)), "not a valid environment variable name")
        check_str(o.value[name], o.at(name), max_len=32768)
    return dict(o.value)


@dataclass(frozen=True)
class SandboxRunRequest:
    commands: tuple[Command, ...]
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)
    repo: RepoSpec | None = None
    env: dict[str, str] = field(default_factory=dict)
    verification: Verification = field(default_factory=Verification)
    artifacts: tuple[str, ...] = ()
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    FIELDS = ("sandbox", "repo", "commands", "env", "verification", "artifacts")

    @classmethod
    def from_dict(cls, value: Any, path: str = "") -> SandboxRunRequest:
        o = Obj(value, path, cls.FIELDS)
        repo = o.sub("repo", RepoSpec.parse, None) if o.raw("repo", None) is not None else None
        commands = tuple(o.list("commands", Command.parse, max_items=MAX_COMMANDS))
        mount = repo.mount_path if repo else "/workspace"
        return cls(
            sandbox=o.sub("sandbox", SandboxSpec.parse, SandboxSpec()),
            repo=repo,
            commands=_inside_mount(commands, mount, path),
            env=o.sub("env", _env, {}),
            verification=o.sub("verification", Verification.parse, Verification()),
            artifacts=tuple(o.list("artifacts", lambda v, p: relative_path(v, p, glob=True), [],
                                   max_items=MAX_ARTIFACT_PATTERNS)),
            raw=dict(value),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sandbox": self.sandbox.to_dict(),
            "commands": [c.to_dict() for c in self.commands],
            "env": dict(self.env),
            "verification": self.verification.to_dict(),
        }
        if self.repo is not None:
            out["repo"] = self.repo.to_dict()
        if self.artifacts:
            out["artifacts"] = list(self.artifacts)
        return out

    @property
    def mount_path(self) -> str:
        return self.repo.mount_path if self.repo else "/workspace"


# --- result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvInfo:
    image_digest: str = ""
    hostname: str = ""
    system_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, path: str) -> EnvInfo:
        o = Obj(value, path, ("image_digest", "hostname", "system_info"))
        info = o.raw("system_info", {})
        if not isinstance(info, dict):
            raise SchemaError(o.at("system_info"), "expected an object")
        return cls(image_digest=o.str("image_digest", ""), hostname=o.str("hostname", ""),
                   system_info=dict(info))

    def to_dict(self) -> dict[str, Any]:
        return {"image_digest": self.image_digest, "hostname": self.hostname,
                "system_info": dict(self.system_info)}


@dataclass(frozen=True)
class RunRecord:
    cmd: str | list[str]
    exit_code: int
    duration_ms: int
    stdout_sha256: str
    stderr_sha256: str
    stdout_preview: str = ""
    stderr_preview: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    timed_out: bool = False
    oom_killed: bool = False

    @classmethod
    def parse(cls, value: Any, path: str) -> RunRecord:
        o = Obj(value, path, ("cmd", "exit_code", "duration_ms", "stdout_sha256",
                              "stderr_sha256", "stdout_preview", "stderr_preview",
                              "stdout_bytes", "stderr_bytes", "timed_out", "oom_killed"))
        cmd = o.raw("cmd")
        if not isinstance(cmd, str | list):
            raise SchemaError(o.at("cmd"), "expected a string or a list of strings")
        return cls(
            cmd=cmd,
            exit_code=o.int("exit_code"),
            duration_ms=o.int("duration_ms", 0, lo=0),
            stdout_sha256=o.sub("stdout_sha256", sha256_hex),
            stderr_sha256=o.sub("stderr_sha256", sha256_hex),
            stdout_preview=o.str("stdout_preview", "", max_len=1 << 20),
            stderr_preview=o.str("stderr_preview", "", max_len=1 << 20),
            stdout_bytes=o.int("stdout_bytes", 0, lo=0),
            stderr_bytes=o.int("stderr_bytes", 0, lo=0),
            timed_out=o.bool("timed_out", False),
            oom_killed=o.bool("oom_killed", False),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cmd": self.cmd, "exit_code": self.exit_code, "duration_ms": self.duration_ms,
            "stdout_sha256": self.stdout_sha256, "stderr_sha256": self.stderr_sha256,
            "stdout_preview": self.stdout_preview, "stderr_preview": self.stderr_preview,
            "stdout_bytes": self.stdout_bytes, "stderr_bytes": self.stderr_bytes,
            "timed_out": self.timed_out, "oom_killed": self.oom_killed,
        }


@dataclass(frozen=True)
class Artifact:
    path: str
    sha256: str
    size_bytes: int
    mime_type: str = "application/octet-stream"

    @classmethod
    def parse(cls, value: Any, path: str) -> Artifact:
        o = Obj(value, path, ("path", "sha256", "size_bytes", "mime_type"))
        return cls(path=o.sub("path", relative_path), sha256=o.sub("sha256", sha256_hex),
                   size_bytes=o.int("size_bytes", lo=0),
                   mime_type=o.str("mime_type", "application/octet-stream", max_len=255))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "mime_type": self.mime_type}


@dataclass(frozen=True)
class SandboxRunResult:
    status: str
    env_info: EnvInfo = field(default_factory=EnvInfo)
    runs: tuple[RunRecord, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    error: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    FIELDS = ("env_info", "runs", "artifacts", "status", "error", "provenance")

    @classmethod
    def from_dict(cls, value: Any, path: str = "") -> SandboxRunResult:
        o = Obj(value, path, cls.FIELDS)
        error = o.raw("error", None)
        if error is not None:
            check_str(error, o.at("error"), max_len=65536)
        return cls(
            status=o.str("status", choices=STATUSES),
            env_info=o.sub("env_info", EnvInfo.parse, EnvInfo()),
            runs=tuple(o.list("runs", RunRecord.parse, [], max_items=MAX_COMMANDS)),
            artifacts=tuple(o.list("artifacts", Artifact.parse, [], max_items=128)),
            error=error,
            provenance=o.sub("provenance", Provenance.parse, Provenance()),
            raw=dict(value),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_info": self.env_info.to_dict(),
            "runs": [r.to_dict() for r in self.runs],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "status": self.status,
            "error": self.error,
            "provenance": self.provenance.to_dict(),
        }
