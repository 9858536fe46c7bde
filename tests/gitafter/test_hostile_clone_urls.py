"""Regression for remote code execution through a pull request's ``clone`` tag: a URL from
a stranger's event must never reach git as an option (``--upload-pack=...``), as a
program-running transport (``ext::``), with credentials, or over a scheme not allowed."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run
from tests.gitafter.test_flow import announce


def _hostile_urls(marker: Path) -> list[str]:
    return [
        f"--upload-pack=touch {marker};",
        f"--upload-pack=touch {marker}; true",
        f"ext::sh -c touch% {marker}",
        f"ext::sh -c 'touch {marker}'",
        "fd::0,1",
        f"-c core.sshCommand=touch {marker}",
    ]


@pytest.mark.parametrize("index", range(6))
def test_checkout_never_runs_a_clone_url(cli: Cli, project: Project, relay: ThreadRelay,
                                         people: dict[str, Person], tmp_path: Path,
                                         index: int) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    marker = tmp_path / "PWNED"
    url = _hostile_urls(marker)[index]
    commit_file(project.contributor, "x.txt", "x\n", "add x")
    tip = git_run(project.contributor, "rev-parse", "HEAD")
    fork = tmp_path / "fork.git"
    git_run(tmp_path, "init", "-q", "--bare", str(fork))
    sent = cli.ok("git", "send", "HEAD~1", "--pr", "--title", "X", "-C",
                  str(project.contributor), "--key-file", str(c.key_file), "--relay",
                  relay.url, "--clone-url", str(fork), "--json")
    # The attacker's own PR, signed by them, with only the hostile clone URL.
    from tests.gitafter.conftest import publish_raw

    evil = publish_raw(relay.url, c.signer, 1618, "please review", [
        ["a", f"30617:{m.pubkey}:demo"], ["p", m.pubkey], ["subject", "evil"],
        ["c", tip], ["clone", url]])
    assert evil != sent["root"]
    before = git.Repo(project.maintainer).head.commit.hexsha
    msg = cli.fails("git", "checkout", evil[:10], "-C", str(project.maintainer),
                    "--allow-scheme", "file", "--allow-scheme", "https")
    assert not marker.exists(), f"clone URL {url!r} ran a command"
    assert "\n" not in msg and "cannot fetch" in msg
    assert git.Repo(project.maintainer).head.commit.hexsha == before


def test_checkout_refuses_credentials_and_unlisted_schemes(
        cli: Cli, project: Project, relay: ThreadRelay, people: dict[str, Person],
        tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    commit_file(project.contributor, "y.txt", "y\n", "add y")
    tip = git_run(project.contributor, "rev-parse", "HEAD")
    fork = tmp_path / "fork.git"
    git_run(tmp_path, "init", "-q", "--bare", str(fork))
    git_run(project.contributor, "push", "-q", str(fork), "HEAD:refs/heads/x")
    from tests.gitafter.conftest import publish_raw

    local = publish_raw(relay.url, c.signer, 1618, "", [
        ["a", f"30617:{m.pubkey}:demo"], ["subject", "local path"], ["c", tip],
        ["clone", str(fork)]])
    # A local path is a file:// fetch: refused unless the maintainer allows it.
    msg = cli.fails("git", "checkout", local[:10], "-C", str(project.maintainer))
    assert "scheme 'file' is not allowed" in msg
    secret = publish_raw(relay.url, c.signer, 1618, "", [
        ["a", f"30617:{m.pubkey}:demo"], ["subject", "creds"], ["c", tip],
        ["clone", "https://ghp_SECRETTOKEN@127.0.0.1:1/x.git"]])
    msg = cli.fails("git", "checkout", secret[:10], "-C", str(project.maintainer))
    assert "credentials" in msg and "ghp_SECRETTOKEN" not in msg
    # Allowed explicitly, the same local PR checks out.
    out = cli.ok("git", "checkout", local[:10], "-C", str(project.maintainer),
                 "--allow-scheme", "file", "--json")
    assert out["tip"] == tip
