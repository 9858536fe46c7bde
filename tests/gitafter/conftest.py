"""Fixtures for GitAfter: a real relay on 127.0.0.1 in a background thread (the CLI runs its
own event loop per command), real git repositories in tmp dirs, keys, and a CLI runner."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
from typer.testing import CliRunner

from oa_node.cli import make_app
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from oa_node.signer import LocalSigner, write_key_file

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


class ThreadRelay:
    """A RelayServer running in its own thread and event loop."""

    def __init__(self, db: Path, *, auth_write: bool = False,
                 policies: dict[str, list[Any]] | None = None) -> None:
        self.db = db
        self.auth_write = auth_write
        self.policies = policies
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RelayServer | None = None
        self.port = 0

    def start(self) -> str:
        self.thread.start()
        settings = RelaySettings(host="127.0.0.1", port=0, purge_interval=0.5)
        settings.rate_limits = RateLimits.off()
        if self.auth_write:
            settings.auth.required_for = ["write"]
        self.server = RelayServer(SQLiteStore(self.db), self.policies, settings)
        fut = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop)
        self.port = fut.result(timeout=20)
        return self.url

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[ThreadRelay]:
    r = ThreadRelay(tmp_path / "relay.db")
    r.start()
    try:
        yield r
    finally:
        r.stop()


@dataclass
class Person:
    name: str
    signer: LocalSigner
    key_file: Path

    @property
    def pubkey(self) -> str:
        return self.signer.public_key


def make_person(tmp_path: Path, name: str) -> Person:
    signer = LocalSigner.generate()
    path = write_key_file(tmp_path / "keys" / f"{name}.key", signer.secret_key)
    return Person(name, signer, path)


@pytest.fixture
def people(tmp_path: Path) -> dict[str, Person]:
    return {n: make_person(tmp_path, n) for n in ("maintainer", "contributor", "stranger")}


def git_run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    return subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True,
                          capture_output=True, text=True).stdout.strip()


def configure(path: Path, name: str) -> None:
    git_run(path, "config", "user.name", name.title())
    git_run(path, "config", "user.email", f"{name}@example.org")
    git_run(path, "config", "commit.gpgsign", "false")
    git_run(path, "config", "core.autocrlf", "false")
    git_run(path, "config", "init.defaultBranch", "main")


def new_repo(path: Path, name: str) -> git.Repo:
    path.mkdir(parents=True)
    git_run(path, "init", "-q", "-b", "main")
    configure(path, name)
    return git.Repo(path)


def commit_file(path: Path, rel: str, content: str | bytes, message: str) -> str:
    f = path / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_bytes(content.encode())
    git_run(path, "add", rel)
    git_run(path, "commit", "-q", "-m", message)
    return git_run(path, "rev-parse", "HEAD")


@dataclass
class Project:
    """A maintainer's repository, its bare origin, and a contributor's clone."""

    maintainer: Path
    origin: Path
    contributor: Path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    m = tmp_path / "maintainer"
    new_repo(m, "maintainer")
    commit_file(m, "README.md", "# demo\n\nline one\nline two\n", "initial commit")
    commit_file(m, "src/app.py", "print('hello')\n", "add app")
    origin = tmp_path / "origin.git"
    git_run(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git_run(m, "remote", "add", "origin", str(origin))
    git_run(m, "push", "-q", "origin", "main")
    c = tmp_path / "contributor"
    git_run(tmp_path, "clone", "-q", str(origin), str(c))
    configure(c, "contributor")
    return Project(m, origin, c)


class Cli:
    """Runs ``oa-node`` in-process; ``ok()`` asserts success and parses --json output."""

    def __init__(self) -> None:
        self.app = make_app()
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(self.app, list(args), input=input, catch_exceptions=True)

    def ok(self, *args: str, input: str | None = None) -> Any:
        res = self(*args, input=input)
        if res.exit_code != 0:
            raise AssertionError(
                f"oa-node {' '.join(args)} exited {res.exit_code}\nstdout: {res.stdout}\n"
                f"stderr: {res.stderr}\nexception: {res.exception!r}")
        if "--json" in args:
            return json.loads(res.stdout)
        return res.stdout

    def fails(self, *args: str) -> str:
        """Run a command that must fail as a user error (exit 1, one line, no traceback)."""
        res = self(*args)
        assert res.exit_code != 0, f"expected failure, got: {res.stdout}"
        from oa_node.errors import UserError

        assert isinstance(res.exception, UserError | SystemExit), repr(res.exception)
        return str(res.exception)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No node.toml from the caller's cwd or environment, no global git config."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OA_NODE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


def publish_raw(url: str, signer: LocalSigner, kind: int, content: str,
                tags: list[list[str]], created_at: int | None = None) -> str:
    """Sign and publish one event as-is (to test what readers do with hostile input)."""
    import anyio

    from oa_node.client import RelayPool
    from oa_node.nostr.event import EventTemplate

    event = signer.sign_now(EventTemplate(kind=kind, content=content, tags=tags,
                                          created_at=created_at))

    async def main() -> None:
        async with RelayPool([url], signer=signer) as pool:
            res = await pool.publish(event, 10)
            assert res.ok, res.to_dict()

    anyio.run(main)
    return event.id
