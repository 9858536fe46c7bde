"""Pull requests: a patch too big for an event becomes a PR; checkout fetches its tip from the
clone URL; an update (1619) moves the tip; merge records the merge commit."""

from __future__ import annotations

from pathlib import Path

import git

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


def big_text(kib: int) -> str:
    line = "0123456789abcdef" * 4 + "\n"  # 65 bytes
    return "".join(f"{i:06d} {line}" for i in range(kib * 1024 // 72 + 1))


def test_pr_round_trip(cli: Cli, project: Project, relay: ThreadRelay,
                       people: dict[str, Person], tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    fork = tmp_path / "fork.git"
    git_run(tmp_path, "init", "-q", "--bare", str(fork))
    git_run(project.contributor, "checkout", "-q", "-b", "big-data")
    commit_file(project.contributor, "data/big.txt", big_text(80), "add a big data file")
    cargs = ["-C", str(project.contributor), "--key-file", str(c.key_file), "--relay", relay.url]

    # Too big for a patch event: a PR is needed, and a PR needs somewhere to push the tip.
    msg = cli.fails("git", "send", "HEAD~1", *cargs)
    assert "60kb" in msg and "--clone-url" in msg

    sent = cli.ok("git", "send", "HEAD~1", *cargs, "--clone-url", str(fork), "--json")
    assert sent["kind"] == "pr"
    tip = git_run(project.contributor, "rev-parse", "HEAD")
    assert sent["tip"] == tip
    # NIP-34: the tip was pushed to refs/nostr/<event id> before the event was signed.
    assert git_run(tmp_path, "--git-dir", str(fork), "rev-parse",
                   f"refs/nostr/{sent['root']}") == tip

    mdir = ["-C", str(project.maintainer)]
    listed = cli.ok("git", "list", *mdir, "--json")["proposals"]
    assert len(listed) == 1 and listed[0]["kind"] == "pr"
    assert listed[0]["pr"]["tip"] == tip and listed[0]["pr"]["branch_name"] == "big-data"
    assert listed[0]["subject"] == "add a big data file"

    out = cli.ok("git", "checkout", sent["root"][:8], *mdir, "--allow-scheme", "file", "--json")
    mrepo = git.Repo(project.maintainer)
    assert out["branch"] == f"pr/big-data-{sent['root'][:8]}"
    assert mrepo.head.commit.hexsha == tip and mrepo.active_branch.name == out["branch"]
    git_run(project.maintainer, "checkout", "-q", "main")

    # The contributor updates the PR (1619): the maintainer's next checkout gets the new tip.
    commit_file(project.contributor, "data/more.txt", "more\n", "add more data")
    upd = cli.ok("git", "send", "HEAD~2", "--in-reply-to", sent["root"][:8], *cargs,
                 "--clone-url", str(fork), "--json")
    assert upd["kind"] == "pr-update" and upd["root"] == sent["root"]
    new_tip = git_run(project.contributor, "rev-parse", "HEAD")
    shown = cli.ok("git", "show", sent["root"], *mdir, "--json")
    assert shown["pr"]["tip"] == new_tip and shown["pr"]["updated_by"] == upd["events"][0]
    # The update's own id names the PR too (any event of a proposal does).
    out = cli.ok("git", "checkout", upd["events"][0], *mdir, "--branch", "review",
                 "--allow-scheme", "file", "--json")
    assert out["id"] == sent["root"]
    assert mrepo.commit("review").hexsha == new_tip
    assert mrepo.commit("review").tree.hexsha == \
        git.Repo(project.contributor).head.commit.tree.hexsha

    # Merge with a merge commit; the 1631 names it.
    git_run(project.maintainer, "checkout", "-q", "main")
    git_run(project.maintainer, "merge", "-q", "--no-ff", "-m", "Merge PR", "review")
    merge_commit = git_run(project.maintainer, "rev-parse", "HEAD")
    merged = cli.ok("git", "merge", sent["root"][:8], *mdir, "--key-file", str(m.key_file),
                    "--json")
    assert merged["merge_commit"] == merge_commit
    shown = cli.ok("git", "show", sent["root"], *mdir, "--json")
    assert shown["status"] == "applied" and shown["merge_commit"] == merge_commit


def test_pr_update_only_by_author(cli: Cli, project: Project, relay: ThreadRelay,
                                  people: dict[str, Person], tmp_path: Path) -> None:
    m, c, s = people["maintainer"], people["contributor"], people["stranger"]
    announce(cli, project, relay, m)
    fork = tmp_path / "fork.git"
    git_run(tmp_path, "init", "-q", "--bare", str(fork))
    commit_file(project.contributor, "x.txt", "x\n", "add x")
    sent = cli.ok("git", "send", "HEAD~1", "--pr", "--title", "X", "-C",
                  str(project.contributor), "--key-file", str(c.key_file), "--relay",
                  relay.url, "--clone-url", str(fork), "--json")
    assert sent["kind"] == "pr"
    commit_file(project.contributor, "y.txt", "y\n", "add y")
    msg = cli.fails("git", "send", "HEAD~2", "--in-reply-to", sent["root"], "-C",
                    str(project.contributor), "--key-file", str(s.key_file),
                    "--clone-url", str(fork))
    assert "author or a maintainer" in msg
    # Written anyway, a stranger's update is ignored by readers.
    forged_tip = git_run(project.contributor, "rev-parse", "HEAD")
    publish_raw(relay.url, s.signer, 1619, "", [
        ["a", f"30617:{m.pubkey}:demo"], ["E", sent["root"]], ["P", c.pubkey],
        ["c", forged_tip], ["clone", str(fork)]])
    shown = cli.ok("git", "show", sent["root"], "-C", str(project.maintainer), "--json")
    assert shown["subject"] == "X" and shown["pr"]["updated_by"] is None
    assert shown["pr"]["tip"] == sent["tip"] != forged_tip
