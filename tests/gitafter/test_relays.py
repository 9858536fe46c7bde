"""Several relays (the repository's `relays`), one of them requiring NIP-42 auth to write,
and one going down: commands keep working with the relays that answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import git
import pytest

from oa_node.client import RelayPool
from oa_node.nostr.event import EventTemplate
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file
from tests.gitafter.test_flow import announce


@pytest.fixture
def auth_relay(tmp_path: Path) -> Iterator[ThreadRelay]:
    r = ThreadRelay(tmp_path / "auth-relay.db", auth_write=True)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def unauthenticated_publish(url: str, who: Person) -> str:
    """What the auth relay says to a client that cannot authenticate (no signer)."""
    event = who.signer.sign_now(EventTemplate(kind=1621, content="x", tags=[]))

    async def main() -> str:
        async with RelayPool([url]) as pool:
            res = await pool.publish(event, 5)
            return res.results[url][1]

    return anyio.run(main)


def test_two_relays_auth_and_one_down(cli: Cli, project: Project, relay: ThreadRelay,
                                      auth_relay: ThreadRelay,
                                      people: dict[str, Person]) -> None:
    m, c = people["maintainer"], people["contributor"]
    ann = cli.ok("git", "init", "-C", str(project.maintainer), "--key-file", str(m.key_file),
                 "--relay", relay.url, "--relay", auth_relay.url, "-d", "demo", "--json")
    assert sorted(ann["accepted_by"]) == sorted([relay.url, auth_relay.url])
    assert unauthenticated_publish(auth_relay.url, m).startswith("auth-required")

    # The contributor knows only the open relay; the announcement names both, so the
    # patch goes to both (authenticating to the second one).
    commit_file(project.contributor, "n.txt", "n\n", "add n")
    sent = cli.ok("git", "send", "HEAD~1", "-C", str(project.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    assert sorted(sent["accepted_by"]) == sorted([relay.url, auth_relay.url])
    stored = git.Repo(project.contributor).git.config("--local", "nostr.relays").split()
    assert sorted(stored) == sorted([relay.url, auth_relay.url])

    # With the open relay gone, the maintainer still lists and merges through the other.
    relay.stop()
    listed = cli.ok("git", "list", "-C", str(project.maintainer), "--timeout", "5", "--json")
    assert [p["id"] for p in listed["proposals"]] == [sent["root"]]
    merged = cli.ok("git", "merge", sent["root"][:8], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file), "--timeout", "5", "--force", "--json")
    assert merged["accepted_by"] == [auth_relay.url]


def test_no_relay_accepts(cli: Cli, project: Project, people: dict[str, Person]) -> None:
    """No relay answers: the error says so and names each relay and what went wrong."""
    m = people["maintainer"]
    msg = cli.fails("git", "init", "-C", str(project.maintainer), "--key-file",
                    str(m.key_file), "--relay", "ws://127.0.0.1:9", "-d", "demo2",
                    "--timeout", "3")
    assert "cannot reach any relay" in msg and "ws://127.0.0.1:9" in msg


def test_a_relay_that_is_down_is_a_connection_error(cli: Cli, project: Project,
                                                    relay: ThreadRelay,
                                                    people: dict[str, Person]) -> None:
    """Said as such, with its URL (it was "announcement ... not found on ws://...")."""
    announce(cli, project, relay, people["maintainer"])
    url = relay.url
    relay.stop()
    msg = cli.fails("git", "list", "-C", str(project.maintainer))
    assert "cannot reach any relay" in msg and url in msg and "not found" not in msg
    msg = cli.fails("git", "init", "-C", str(project.maintainer), "--key-file",
                    str(people["maintainer"].key_file), "--relay", url)
    assert "cannot reach any relay" in msg and url in msg
