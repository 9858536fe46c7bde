"""Issues (1621) with NIP-22 comments (1111) and statuses, and bounties."""

from __future__ import annotations

import time
from pathlib import Path

from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, publish_raw
from tests.gitafter.test_flow import announce


def test_issue_with_comments_and_status(cli: Cli, project: Project, relay: ThreadRelay,
                                        people: dict[str, Person]) -> None:
    m, c, s = people["maintainer"], people["contributor"], people["stranger"]
    announce(cli, project, relay, m)
    cdir = ["-C", str(project.contributor), "--relay", relay.url]
    mdir = ["-C", str(project.maintainer)]
    issue = cli.ok("git", "issue", "create", "-s", "Crash on start", "-m", "Steps:\n1. run it",
                   "-l", "bug", *cdir, "--key-file", str(c.key_file), "--json")
    first = cli.ok("git", "issue", "comment", issue["id"][:8], "-m", "Which version?", *mdir,
                   "--key-file", str(m.key_file), "--json")
    second = cli.ok("git", "issue", "comment", issue["id"][:8], "-m", "0.1.0",
                    "--reply-to", first["id"][:8], *cdir, "--key-file", str(c.key_file),
                    "--json")

    shown = cli.ok("git", "issue", "show", issue["id"], *mdir, "--json")
    assert shown["subject"] == "Crash on start" and shown["labels"] == ["bug"]
    assert shown["status"] == "open" and shown["author"] == c.pubkey
    assert [x["id"] for x in shown["comments"]] == [first["id"], second["id"]]
    assert shown["comments"][0]["parent"] == issue["id"]
    assert shown["comments"][1]["parent"] == first["id"]
    assert [x["id"] for x in cli.ok("git", "issue", "list", *mdir, "--json")["issues"]] == \
        [issue["id"]]
    text = cli.ok("git", "issue", "show", issue["id"][:8], *mdir)
    assert "Crash on start" in text and "0.1.0" in text and "Which version?" in text

    cli.ok("git", "issue", "close", issue["id"][:8], "--resolved", *mdir, "--key-file",
           str(m.key_file), "--json")
    assert cli.ok("git", "issue", "list", *mdir, "--json")["issues"] == []
    resolved = cli.ok("git", "issue", "list", "--status", "resolved", *mdir, "--json")
    assert [i["status"] for i in resolved["issues"]] == ["resolved"]

    # A stranger's reopen is ignored; the author's counts.
    cli.ok("git", "issue", "reopen", issue["id"][:8], *mdir, "--key-file", str(s.key_file),
           "--force", "--json")
    assert cli.ok("git", "issue", "show", issue["id"], *mdir, "--json")["status"] == "resolved"
    cli.ok("git", "issue", "reopen", issue["id"][:8], *cdir, "--key-file", str(c.key_file),
           "--json")
    assert cli.ok("git", "issue", "show", issue["id"], *mdir, "--json")["status"] == "open"


def test_forged_status_from_non_maintainer_ignored(cli: Cli, project: Project,
                                                   relay: ThreadRelay,
                                                   people: dict[str, Person]) -> None:
    """A stranger's status, even newer and well-formed, never changes what readers see."""
    m, c, s = people["maintainer"], people["contributor"], people["stranger"]
    announce(cli, project, relay, m)
    issue = cli.ok("git", "issue", "create", "-s", "Docs typo", "-C", str(project.contributor),
                   "--relay", relay.url, "--key-file", str(c.key_file), "--json")
    publish_raw(relay.url, s.signer, 1632, "closing", [
        ["e", issue["id"], "", "root"], ["p", m.pubkey], ["a", f"30617:{m.pubkey}:demo"]],
        created_at=int(time.time()) + 600)  # newer than anything else, within the relay's window
    shown = cli.ok("git", "issue", "show", issue["id"], "-C", str(project.maintainer),
                   "--json")
    assert shown["status"] == "open" and shown["status_event"] is None


def test_bounty_needs_a_wallet(cli: Cli, project: Project, relay: ThreadRelay,
                               people: dict[str, Person], tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    issue = cli.ok("git", "issue", "create", "-s", "Feature", "-C", str(project.contributor),
                   "--relay", relay.url, "--key-file", str(c.key_file), "--json")
    msg = cli.fails("git", "issue", "bounty", issue["id"][:8], "21", "-C",
                    str(project.contributor), "--key-file", str(c.key_file))
    assert "wallet" in msg and "--config" in msg
    data = tmp_path / "node"
    data.mkdir()
    (data / "node.key").write_text(c.key_file.read_text())
    (data / "node.key").chmod(0o600)  # a key is refused when not 0600
    cfg = data / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{data}"\nrelays = ["{relay.url}"]\n')
    res = cli("git", "issue", "bounty", issue["id"][:8], "21", "-C", str(project.contributor),
              "--config", str(cfg))
    assert res.exit_code == 1, res.stdout
    assert "wallet" in str(res.exception).lower()
