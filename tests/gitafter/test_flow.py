"""End to end over a real relay and real git: announce, send a series, list, apply, merge."""

from __future__ import annotations

import git

from oa_node.plugins.gitafter import nip34
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run


def announce(cli: Cli, project: Project, relay: ThreadRelay, maintainer: Person) -> dict:
    return cli.ok("git", "init", "-C", str(project.maintainer), "--key-file",
                  str(maintainer.key_file), "--relay", relay.url, "-d", "demo", "--name", "Demo",
                  "--description", "a demo project", "--clone", str(project.origin), "--json")


def send_then_apply_elsewhere(cli: Cli, project: Project, relay: ThreadRelay,
                              people: dict[str, Person], files: list[str]) -> tuple[dict, dict]:
    """The contributor sends one commit per file; the maintainer commits something else, then
    applies the series `--here`: on another base, so the commit ids differ."""
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    for name in files:
        commit_file(project.contributor, name, f"{name[0]}\n", f"add {name[0]}")
    sent = cli.ok("git", "send", f"HEAD~{len(files)}", "-C", str(project.contributor),
                  "--key-file", str(c.key_file), "--relay", relay.url, "--json")
    commit_file(project.maintainer, "other.txt", "o\n", "maintainer moved on")
    out = cli.ok("git", "apply", sent["root"][:8], "--here", "-C", str(project.maintainer),
                 "--json")
    return sent, out


def three_commits(path) -> list[str]:
    shas = [
        commit_file(path, "README.md", "# demo\n\nline one\nline two changed\n", "README: edit"),
        commit_file(path, "win.txt", "dos line\r\nanother\r\n", "add a CRLF file"),
        commit_file(path, "data.bin", bytes(range(256)) * 4, "add binary data"),
    ]
    return shas


def test_series_round_trip(cli: Cli, project: Project, relay: ThreadRelay,
                           people: dict[str, Person]) -> None:
    m, c, s = people["maintainer"], people["contributor"], people["stranger"]
    ann = announce(cli, project, relay, m)
    assert ann["accepted_by"] == [relay.url]
    mrepo = git.Repo(project.maintainer)
    assert mrepo.git.config("--local", "nostr.repo").startswith("naddr1")
    assert mrepo.git.config("--local", "nostr.relays") == relay.url
    assert ann["euc"] == git_run(project.maintainer, "rev-list", "--max-parents=0", "HEAD")

    # The contributor's clone finds the announcement by its earliest unique commit.
    shas = three_commits(project.contributor)
    sent = cli.ok("git", "send", "HEAD~3", "-C", str(project.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    assert sent["kind"] == "patches" and len(sent["events"]) == 3
    assert sent["commits"] == shas
    crepo = git.Repo(project.contributor)
    assert crepo.git.config("--local", "nostr.repo") == mrepo.git.config("--local", "nostr.repo")

    # The maintainer lists it.
    listed = cli.ok("git", "list", "-C", str(project.maintainer), "--json")
    assert [p["id"] for p in listed["proposals"]] == [sent["root"]]
    prop = listed["proposals"][0]
    assert prop["status"] == "open" and prop["kind"] == "patch" and prop["author"] == c.pubkey
    assert [x["commit"] for x in prop["patches"]] == shas
    assert prop["subject"] == "README: edit"

    # Applies it: same tree and the same commit ids as the contributor's.
    applied = cli.ok("git", "apply", sent["root"][:8], "-C", str(project.maintainer), "--json")
    assert applied["verified"] is True
    assert applied["commits"] == shas
    branch = applied["branch"]
    assert branch.startswith("pr/readme-edit-")
    assert mrepo.commit(branch).tree.hexsha == crepo.head.commit.tree.hexsha
    assert (project.maintainer / "win.txt").read_bytes() == b"dos line\r\nanother\r\n"
    assert mrepo.active_branch.name == branch

    # Merges (fast-forward) and publishes 1631 naming the applied commits.
    git_run(project.maintainer, "checkout", "-q", "main")
    git_run(project.maintainer, "merge", "-q", "--ff-only", branch)
    merged = cli.ok("git", "merge", sent["root"][:10], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file), "--json")
    assert merged["status"] == "applied" and merged["applied_as"] == shas
    shown = cli.ok("git", "show", sent["root"], "-C", str(project.maintainer), "--json")
    assert shown["status"] == "applied" and shown["status_by"] == m.pubkey
    assert shown["applied_as"] == shas
    assert cli.ok("git", "list", "-C", str(project.maintainer), "--json")["proposals"] == []
    assert len(cli.ok("git", "list", "--status", "applied", "-C", str(project.maintainer),
                      "--json")["proposals"]) == 1

    # A stranger cannot change it: refused without --force, ignored by readers with it.
    msg = cli.fails("git", "close", sent["root"], "-C", str(project.contributor),
                    "--key-file", str(s.key_file))
    assert "neither a maintainer" in msg
    cli.ok("git", "close", sent["root"], "-C", str(project.contributor), "--key-file",
           str(s.key_file), "--force", "--json")
    shown = cli.ok("git", "show", sent["root"], "-C", str(project.contributor), "--json")
    assert shown["status"] == "applied" and shown["status_by"] == m.pubkey

    # The author may close their own proposal; that counts.
    cli.ok("git", "close", sent["root"], "-C", str(project.contributor), "--key-file",
           str(c.key_file), "--json")
    shown = cli.ok("git", "show", sent["root"], "-C", str(project.maintainer), "--json")
    assert shown["status"] == "closed" and shown["status_by"] == c.pubkey

    # Status events carry the NIP-34 tags.
    assert nip34.STATUS_APPLIED == 1631


def test_revision_replaces_series(cli: Cli, project: Project, relay: ThreadRelay,
                                  people: dict[str, Person]) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    commit_file(project.contributor, "a.txt", "first try\n", "add a")
    # No range: the commits since the branch's upstream (origin/main).
    first = cli.ok("git", "send", "-C", str(project.contributor), "--key-file",
                   str(c.key_file), "--relay", relay.url, "--json")
    assert len(first["commits"]) == 1
    git_run(project.contributor, "commit", "-q", "--amend", "-m", "add a (v2)")
    (project.contributor / "a.txt").write_text("second try\n")
    git_run(project.contributor, "commit", "-q", "-a", "--amend", "--no-edit")
    commit_file(project.contributor, "b.txt", "b\n", "add b")
    second = cli.ok("git", "send", "HEAD~2", "--in-reply-to", first["root"][:8],
                    "--cover-letter", "--title", "a and b", "--description", "v2 of the series",
                    "-C", str(project.contributor), "--key-file", str(c.key_file), "--json")
    assert second["revision_of"] == first["root"] and len(second["events"]) == 3

    listed = cli.ok("git", "list", "-C", str(project.maintainer), "--json")["proposals"]
    assert len(listed) == 1 and listed[0]["id"] == first["root"]
    assert listed[0]["revision"] == second["root"]
    assert [x["cover_letter"] for x in listed[0]["patches"]] == [True, False, False]

    applied = cli.ok("git", "apply", first["root"][:8], "-C", str(project.maintainer),
                     "--json")
    assert applied["verified"] and len(applied["commits"]) == 2
    crepo = git.Repo(project.contributor)
    assert applied["commits"][-1] == crepo.head.commit.hexsha

    # Still on the proposal's branch and not merged into main: refused (it used to publish
    # an "applied" status naming no commits), unless --force.
    msg = cli.fails("git", "merge", first["root"][:8], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file))
    assert "are not in main" in msg and "--force" in msg
    assert cli.ok("git", "show", first["root"][:8], "-C", str(project.maintainer),
                  "--json")["status"] == "open"
    merged = cli.ok("git", "merge", first["root"][:8], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file), "--force", "--json")
    assert merged["into"] == "main" and merged["applied_as"] == [] and not merged["merge_commit"]
    git_run(project.maintainer, "checkout", "-q", "main")
    git_run(project.maintainer, "merge", "-q", "--ff-only", applied["branch"])
    merged = cli.ok("git", "merge", first["root"][:8], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file), "--json")
    assert merged["applied_as"] == applied["commits"]
    shown = cli.ok("git", "show", first["root"][:8], "-C", str(project.maintainer), "--json")
    assert shown["status"] == "applied" and shown["applied_as"] == applied["commits"]


def test_merge_finds_a_rebased_series_by_patch_id(cli: Cli, project: Project,
                                                  relay: ThreadRelay,
                                                  people: dict[str, Person]) -> None:
    """Applied on another base the ids differ; the same changes are found by patch-id."""
    m = people["maintainer"]
    sent, out = send_then_apply_elsewhere(cli, project, relay, people, ["p.txt", "q.txt"])
    assert out["commits"] != sent["commits"]
    merged = cli.ok("git", "merge", sent["root"][:8], "-C", str(project.maintainer),
                    "--key-file", str(m.key_file), "--json")
    assert merged["applied_as"] == out["commits"]
