"""Fixtures for executor tests: real git repositories on disk (the Docker sandbox fixtures
are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from oa_node.executors.jobtype import ExecContext, ExecutorSettings
from oa_node.sandbox.base import Limits

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=GIT_ENV).stdout.strip()


@pytest.fixture(name="git")
def git_fixture() -> Callable[..., str]:
    """``git(repo, *args)``: run git with a clean identity and no user config."""
    return git


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """A committed git repo with ``files`` (path -> content); returns its folder."""
    count = [0]

    def make(files: dict[str, str | bytes]) -> Path:
        count[0] += 1
        repo = tmp_path / f"repo{count[0]}"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for rel, content in files.items():
            p = repo / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "init")
        return repo

    return make


@pytest.fixture
def settings(tmp_path: Path) -> ExecutorSettings:
    """Provider policy for tests: local (file) repos allowed, small caps."""
    return ExecutorSettings(
        max_limits=Limits(memory_mb=1024, cpus=1.0, pids=256, timeout_secs=120, disk_mb=512),
        allowed_url_schemes=("file", "https"),
        workdir=tmp_path / "jobs",
    )


@pytest.fixture
def host_ctx(settings: ExecutorSettings) -> ExecContext:
    return ExecContext(settings=settings, provider_pubkey="ab" * 32)
