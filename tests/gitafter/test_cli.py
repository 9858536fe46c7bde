"""`oa-node git --help` documents every command; `state` republishes refs."""

from __future__ import annotations

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.plugins.gitafter import nip34
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run
from tests.gitafter.test_flow import announce

COMMANDS = ["init", "state", "send", "list", "show", "apply", "checkout", "merge", "close",
            "reopen", "draft"]
ISSUE_COMMANDS = ["create", "list", "show", "comment", "close", "reopen", "bounty"]


def test_help_lists_every_command(cli: Cli) -> None:
    out = cli.ok("git", "--help")
    for name in [*COMMANDS, "issue"]:
        assert f" {name} " in out, name
    out = cli.ok("git", "issue", "--help")
    for name in ISSUE_COMMANDS:
        assert f" {name} " in out, name


@pytest.mark.parametrize("args", [["git", c] for c in COMMANDS]
                         + [["git", "issue", c] for c in ISSUE_COMMANDS])
def test_each_command_has_help(cli: Cli, args: list[str]) -> None:
    out = cli.ok(*args, "--help")
    assert "Usage:" in out and "--relay" in out
    if args[-1] not in ("init",):
        assert "--repo" in out


def test_send_help_documents_options(cli: Cli) -> None:
    out = cli.ok("git", "send", "--help")
    for opt in ("--cover-letter", "--trajectory", "--trajectory-hash", "--in-reply-to",
                "--clone-url", "--pr", "--json"):
        assert opt in out, opt


def fetch_state(url: str, owner: str) -> dict[str, str]:
    async def main() -> dict[str, str]:
        async with RelayPool([url]) as pool:
            events = await pool.query({"kinds": [30618], "authors": [owner], "#d": ["demo"]}, 5)
        refs, _ = nip34.parse_state(events[0])
        return refs

    return anyio.run(main)


def test_state_republishes_refs(cli: Cli, project: Project, relay: ThreadRelay,
                                people: dict[str, Person]) -> None:
    m, c = people["maintainer"], people["contributor"]
    ann = announce(cli, project, relay, m)
    assert fetch_state(relay.url, m.pubkey) == ann["refs"]
    new = commit_file(project.maintainer, "n.txt", "n\n", "new work")
    git_run(project.maintainer, "tag", "v1.0")
    out = cli.ok("git", "state", "-C", str(project.maintainer), "--key-file", str(m.key_file),
                 "--json")
    assert out["refs"]["refs/heads/main"] == new and out["refs"]["refs/tags/v1.0"] == new
    assert out["head"] == "refs/heads/main"
    assert fetch_state(relay.url, m.pubkey) == out["refs"]
    msg = cli.fails("git", "state", "-C", str(project.contributor), "--key-file",
                    str(c.key_file), "--relay", relay.url)
    assert "only a maintainer" in msg


def test_state_publishes_only_chosen_branches(cli: Cli, project: Project, relay: ThreadRelay,
                                              people: dict[str, Person]) -> None:
    """Review branches (pr/... from apply and checkout) and other local branches stay
    private; the default branch and tags are published; --branch adds more."""
    m = people["maintainer"]
    announce(cli, project, relay, m)
    mdir = ["-C", str(project.maintainer), "--key-file", str(m.key_file)]
    git_run(project.maintainer, "branch", "pr/someones-work-1234abcd")
    git_run(project.maintainer, "branch", "wip")
    git_run(project.maintainer, "tag", "v2.0")
    git_run(project.maintainer, "checkout", "-q", "pr/someones-work-1234abcd")
    out = cli.ok("git", "state", *mdir, "--json")
    assert sorted(out["refs"]) == ["refs/heads/main", "refs/tags/v2.0"]
    assert out["head"] == "refs/heads/main"
    assert fetch_state(relay.url, m.pubkey) == out["refs"]
    out = cli.ok("git", "state", *mdir, "--branch", "main", "--branch", "wip", "--json")
    assert sorted(out["refs"]) == ["refs/heads/main", "refs/heads/wip", "refs/tags/v2.0"]
    out = cli.ok("git", "state", *mdir, "--json")  # remembered
    assert "refs/heads/wip" in out["refs"]
    out = cli.ok("git", "state", *mdir, "--all-branches", "--json")
    assert not any(r.startswith("refs/heads/pr/") for r in out["refs"])
    assert "no such branch: nope" in cli.fails("git", "state", *mdir, "--branch", "nope")


@pytest.mark.parametrize("args", [["git", c] for c in COMMANDS]
                         + [["git", "issue", c] for c in ISSUE_COMMANDS])
def test_help_keeps_placeholders(cli: Cli, args: list[str]) -> None:
    """Help is rendered as Markdown, where <...> is an HTML tag that vanishes ("default:
    pr/-"): placeholders are written so they survive."""
    out = " ".join(cli.ok(*args, "--help").split())
    assert "pr/-" not in out and "30617::" not in out and "refs/nostr/)" not in out
    expected = {"apply": "pr/SUBJECT-ID", "checkout": "pr/NAME-ID", "list": "30617:PUBKEY:ID",
                "send": "refs/nostr/EVENT-ID"}
    if args[-1] in expected and args[1] != "issue":
        assert expected[args[-1]] in out
