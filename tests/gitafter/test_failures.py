"""Bad input gets a clear error and leaves the maintainer's working tree as it was."""

from __future__ import annotations

import time
from pathlib import Path

import git
import pytest

from tests.gitafter.conftest import (
    Cli,
    Person,
    Project,
    ThreadRelay,
    commit_file,
    git_run,
    publish_raw,
)
from tests.gitafter.test_flow import announce


def snapshot(path: Path) -> tuple[str, str, str, str, bool]:
    """HEAD, the checked-out branch, the branch list, `git status`, am in progress."""
    return (git_run(path, "rev-parse", "HEAD"), git_run(path, "symbolic-ref", "HEAD"),
            git_run(path, "branch", "--list"), git_run(path, "status", "--porcelain"),
            (path / ".git" / "rebase-apply").exists())


@pytest.fixture
def announced(cli: Cli, project: Project, relay: ThreadRelay,
              people: dict[str, Person]) -> Project:
    announce(cli, project, relay, people["maintainer"])
    return project


def test_malformed_patch_event(cli: Cli, announced: Project, relay: ThreadRelay,
                               people: dict[str, Person]) -> None:
    m, c = people["maintainer"], people["contributor"]
    coord = f"30617:{m.pubkey}:demo"
    bad = publish_raw(relay.url, c.signer, 1617, "this is not a patch at all\n",
                      [["a", coord], ["p", m.pubkey], ["t", "root"]])
    mdir = ["-C", str(announced.maintainer)]
    before = snapshot(announced.maintainer)

    msg = cli.fails("git", "show", bad[:10], *mdir)
    assert f"patch {bad[:8]}" in msg and "not `git format-patch` output" in msg
    msg = cli.fails("git", "apply", bad[:10], *mdir)
    assert "malformed" in msg
    assert snapshot(announced.maintainer) == before

    # The list still works, and says which proposal it could not read.
    listed = cli.ok("git", "list", *mdir, "--json")
    assert listed["proposals"] == [] and any(bad[:8] in w for w in listed["warnings"])

    # A commit tag that contradicts the patch text is refused too.
    commit_file(announced.contributor, "c.txt", "c\n", "add c")
    text = git_run(announced.contributor, "format-patch", "--stdout", "-1", "HEAD") + "\n"
    lying = publish_raw(relay.url, c.signer, 1617, text,
                        [["a", coord], ["t", "root"], ["commit", "ab" * 20]])
    msg = cli.fails("git", "apply", lying[:10], *mdir)
    assert "'commit' tag says abababababab" in msg
    assert snapshot(announced.maintainer) == before


def test_patch_that_does_not_apply(cli: Cli, announced: Project, relay: ThreadRelay,
                                   people: dict[str, Person]) -> None:
    c = people["contributor"]
    commit_file(announced.contributor, "README.md", "# demo\n\nline one\nline 2 by them\n",
                "README: their edit")
    commit_file(announced.contributor, "other.txt", "o\n", "add other")
    sent = cli.ok("git", "send", "HEAD~2", "-C", str(announced.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    # The maintainer changed the same line meanwhile.
    commit_file(announced.maintainer, "README.md", "# demo\n\nline one\nline 2 by us\n",
                "README: our edit")
    mdir = ["-C", str(announced.maintainer)]
    before = snapshot(announced.maintainer)

    msg = cli.fails("git", "apply", sent["root"][:8], "--here", *mdir)
    assert "patch 1/2" in msg and "does not apply" in msg
    assert snapshot(announced.maintainer) == before

    msg = cli.fails("git", "apply", sent["root"][:8], "--onto", "main", *mdir)
    assert "does not apply" in msg
    assert snapshot(announced.maintainer) == before  # the new branch is gone again

    # On its own parent it applies; applying again refuses to clobber the branch.
    out = cli.ok("git", "apply", sent["root"][:8], *mdir, "--json")
    assert out["verified"]
    git_run(announced.maintainer, "checkout", "-q", "main")
    before = snapshot(announced.maintainer)
    msg = cli.fails("git", "apply", sent["root"][:8], *mdir)
    assert "already exists" in msg
    assert snapshot(announced.maintainer) == before

    # A dirty tree is never touched.
    (announced.maintainer / "README.md").write_text("uncommitted\n")
    msg = cli.fails("git", "apply", sent["root"][:8], "--here", *mdir)
    assert "uncommitted changes" in msg
    assert (announced.maintainer / "README.md").read_text() == "uncommitted\n"


def test_unknown_and_ambiguous_ids(cli: Cli, announced: Project) -> None:
    mdir = ["-C", str(announced.maintainer)]
    assert "no proposal starting with" in cli.fails("git", "show", "abcdef12", *mdir)
    assert "not an event id" in cli.fails("git", "show", "xyz", *mdir)
    assert "no issue" in cli.fails("git", "issue", "show", "0" * 64, *mdir)


def test_not_a_repository_and_no_relays(cli: Cli, tmp_path: Path,
                                        people: dict[str, Person]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not inside a git repository" in cli.fails("git", "list", "-C", str(plain))
    repo = git.Repo.init(tmp_path / "empty")
    msg = cli.fails("git", "init", "-C", str(repo.working_tree_dir), "--key-file",
                    str(people["maintainer"].key_file))
    assert "no relays" in msg
    msg = cli.fails("git", "init", "-C", str(repo.working_tree_dir))
    assert "--key-file" in msg


def test_unannounced_repository(cli: Cli, project: Project, relay: ThreadRelay,
                                people: dict[str, Person]) -> None:
    msg = cli.fails("git", "send", "HEAD~1", "-C", str(project.contributor), "--key-file",
                    str(people["contributor"].key_file), "--relay", relay.url)
    assert "no repository announcement" in msg and "oa-node git init" in msg


def test_bad_relay_urls_and_addresses(cli: Cli, project: Project,
                                      people: dict[str, Person]) -> None:
    mdir = ["-C", str(project.maintainer)]
    assert "invalid relay URL" in cli.fails("git", "list", *mdir, "--relay", "notaurl")
    assert "invalid relay URL" in cli.fails("git", "init", *mdir, "--relay", "http://x",
                                            "--key-file", str(people["maintainer"].key_file))
    assert "--repo" in cli.fails("git", "list", *mdir, "--repo", "naddr1bad")
    assert "repository address" in cli.fails("git", "list", *mdir, "--repo", "30617:x:y")


def test_here_failure_resets_the_branch(cli: Cli, announced: Project, relay: ThreadRelay,
                                        people: dict[str, Person]) -> None:
    """Patch 1 applies, patch 2 does not: `apply --here` leaves HEAD, the branch and the
    tree exactly as they were (the branch used to keep patch 1's commit)."""
    c = people["contributor"]
    commit_file(announced.contributor, "new.txt", "new\n", "add new")
    commit_file(announced.contributor, "README.md", "# demo\n\nline one\nline 2 by them\n",
                "README: their edit")
    sent = cli.ok("git", "send", "HEAD~2", "-C", str(announced.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    commit_file(announced.maintainer, "README.md", "# demo\n\nline one\nline 2 by us\n",
                "README: our edit")
    (announced.maintainer / "untracked.txt").write_text("mine\n")
    mdir = ["-C", str(announced.maintainer)]
    before = snapshot(announced.maintainer)
    msg = cli.fails("git", "apply", sent["root"][:8], "--here", *mdir)
    assert "patch 2/2" in msg and "does not apply" in msg
    assert snapshot(announced.maintainer) == before
    assert not (announced.maintainer / "new.txt").exists()
    assert (announced.maintainer / "untracked.txt").read_text() == "mine\n"
    # The new-branch mode: the branch is gone again, HEAD and the tree as they were.
    msg = cli.fails("git", "apply", sent["root"][:8], "--onto", "main", *mdir)
    assert "patch 2/2" in msg
    assert snapshot(announced.maintainer) == before


def test_send_on_an_unborn_branch(cli: Cli, announced: Project, relay: ThreadRelay,
                                  people: dict[str, Person]) -> None:
    """One clear line, not a traceback, when the branch has no commit yet."""
    git_run(announced.contributor, "checkout", "-q", "--orphan", "fresh")
    for args in ([], ["HEAD~1"], ["main..HEAD"]):
        msg = cli.fails("git", "send", *args, "-C", str(announced.contributor),
                        "--key-file", str(people["contributor"].key_file))
        assert "no commits yet" in msg or "bad revision range" in msg, msg
    # Applying onto an unborn branch says so too.
    c = people["contributor"]
    git_run(announced.contributor, "checkout", "-q", "main")
    commit_file(announced.contributor, "u.txt", "u\n", "add u")
    sent = cli.ok("git", "send", "HEAD~1", "-C", str(announced.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    git_run(announced.maintainer, "checkout", "-q", "--orphan", "fresh")
    git_run(announced.maintainer, "rm", "-rq", "--cached", ".")
    git_run(announced.maintainer, "clean", "-fdq")
    msg = cli.fails("git", "apply", sent["root"], "--here", "-C", str(announced.maintainer))
    assert "no commits yet" in msg


def test_a_strangers_patch_in_the_series_is_ignored(cli: Cli, announced: Project,
                                                    relay: ThreadRelay,
                                                    people: dict[str, Person]) -> None:
    """A patch by someone else replying into a series (newer than the author's next one)
    must not replace it: only the series author's patches continue a series."""
    c, s, m = people["contributor"], people["stranger"], people["maintainer"]
    commit_file(announced.contributor, "one.txt", "1\n", "one")
    commit_file(announced.contributor, "two.txt", "2\n", "two")
    sent = cli.ok("git", "send", "HEAD~2", "-C", str(announced.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    git_run(announced.contributor, "reset", "-q", "--hard", "HEAD~1")
    evil = commit_file(announced.contributor, "evil.txt", "evil\n", "two")
    text = git_run(announced.contributor, "format-patch", "--stdout", "-1", "HEAD") + "\n"
    publish_raw(relay.url, s.signer, 1617, text,
                [["a", f"30617:{m.pubkey}:demo"], ["e", sent["root"], "", "root"],
                 ["e", sent["root"], "", "reply"], ["commit", evil]],
                created_at=int(time.time()) + 60)
    out = cli.ok("git", "apply", sent["root"], "-C", str(announced.maintainer), "--json")
    assert out["commits"] == sent["commits"] and out["verified"]
    assert not (announced.maintainer / "evil.txt").exists()
