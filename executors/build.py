"""Build profiles: ``oa.sandbox_run.v1`` jobs that build a project and return its files.

A build is an ordinary sandbox_run request (so any provider serving the schema can run it
and any buyer can verify it): fixed commands for the profile, network off, and the output
folders as artifact patterns. ``make`` builds with the project's Makefile; ``pip_wheel``
builds a wheel offline (``--no-build-isolation --no-index``: the sandbox has no network,
so the build backend must be in the image, as setuptools and wheel are in the base image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oa_node.executors.jobtype import ExecContext
from oa_node.executors.sandbox_run import execute_sandbox_run
from oa_node.executors.sandbox_run_schema import SandboxRunRequest, SandboxRunResult


@dataclass(frozen=True)
class BuildProfile:
    name: str
    commands: tuple[str, ...]
    artifacts: tuple[str, ...]


PROFILES: dict[str, BuildProfile] = {
    "make": BuildProfile("make", ("make",), ("dist", "build", "out", "bin")),
    "pip_wheel": BuildProfile(
        "pip_wheel",
        ("python3 -m pip wheel --no-deps --no-build-isolation --no-index "
         "--disable-pip-version-check -w dist .",),
        ("dist/*.whl",),
    ),
}


def build_request(
    source: str,
    git_ref: str = "HEAD",
    profile: str = "make",
    *,
    outputs: list[str] | None = None,
    targets: list[str] | None = None,
    resources: dict[str, Any] | None = None,
    image_digest: str = "",
) -> SandboxRunRequest:
    """The sandbox_run request of a build (``targets`` are extra ``make`` targets)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown build profile {profile!r} (known: {', '.join(PROFILES)})")
    p = PROFILES[profile]
    commands = list(p.commands)
    if profile == "make" and targets:
        commands = ["make " + " ".join(targets)]
    doc: dict[str, Any] = {
        "sandbox": {"provider": "docker", "image_digest": image_digest, "network_policy": "none",
                    "resources": resources or {}},
        "repo": {"source": source, "git_ref": git_ref, "mount_path": "/workspace"},
        "commands": [{"cmd": c} for c in commands],
        "artifacts": list(outputs or p.artifacts),
    }
    return SandboxRunRequest.from_dict(doc)


def run_build(source: str, git_ref: str, profile: str, ctx: ExecContext,
              **kwargs: Any) -> SandboxRunResult:
    """Build ``source`` at ``git_ref`` in the sandbox; built files come back as artifacts."""
    return execute_sandbox_run(build_request(source, git_ref, profile, **kwargs), ctx)
