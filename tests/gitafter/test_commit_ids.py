"""Commit ids survive the trip: empty commits (format-patch --always, am --empty=keep),
signed commits (the signature travels in `commit-pgp-sig`), CRLF and binary content."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import git
import pytest

from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run
from tests.gitafter.test_flow import announce, send_then_apply_elsewhere


def ssh_signing(repo: Path, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        why = "ssh-keygen (Debian: openssh-client) is needed to sign commits"
        if os.environ.get("CI"):  # CI must run every test, never skip one quietly
            pytest.fail(why)
        pytest.skip(why)
    key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    git_run(repo, "config", "gpg.format", "ssh")
    git_run(repo, "config", "user.signingkey", str(key))


def test_signed_and_empty_commits_keep_their_ids(cli: Cli, project: Project,
                                                 relay: ThreadRelay,
                                                 people: dict[str, Person],
                                                 tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    ssh_signing(project.contributor, tmp_path)
    commit_file(project.contributor, "s.txt", "signed\n", "a plain commit")
    git_run(project.contributor, "commit", "-q", "--allow-empty", "-m", "an empty commit")
    (project.contributor / "s.txt").write_text("signed twice\n")
    git_run(project.contributor, "commit", "-q", "-S", "-a", "-m", "a signed commit")
    crepo = git.Repo(project.contributor)
    signed = crepo.head.commit.hexsha
    assert "gpgsig" in crepo.git.cat_file("commit", signed)
    want = crepo.git.rev_list("--reverse", "HEAD~3..HEAD").split()

    sent = cli.ok("git", "send", "HEAD~3", "-C", str(project.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    shown = cli.ok("git", "show", sent["root"], "--patches", "-C", str(project.maintainer),
                   "--json")
    assert [p["commit"] for p in shown["patches"]] == want
    applied = cli.ok("git", "apply", sent["root"][:8], "-C", str(project.maintainer), "--json")
    assert applied["commits"] == want and applied["verified"]
    mrepo = git.Repo(project.maintainer)
    assert "gpgsig" in mrepo.git.cat_file("commit", signed)
    assert mrepo.commit(applied["branch"]).tree.hexsha == crepo.head.commit.tree.hexsha

    # Another sender's way: the signature tag ends in a newline; still the same commit.
    from oa_node.plugins.gitafter import nip34
    from tests.gitafter.conftest import publish_raw

    obj = nip34.parse_commit_object(signed, crepo.git.cat_file(
        "commit", signed, strip_newline_in_stdout=False))
    text = git_run(project.contributor, "format-patch", "--stdout", "-1", signed) + "\n"
    ident = publish_raw(relay.url, c.signer, 1617, text, [
        ["a", f"30617:{m.pubkey}:demo"], ["t", "root"], ["commit", signed],
        ["parent-commit", obj.parents[0]], ["commit-pgp-sig", obj.pgp_sig + "\n"],
        obj.committer.tag()])
    out = cli.ok("git", "apply", ident, "--branch", "resigned", "-C", str(project.maintainer),
                 "--json")
    assert out["commits"] == [signed] and out["verified"]


def test_rebased_series_is_applied_but_not_claimed_verified(cli: Cli, project: Project,
                                                            relay: ThreadRelay,
                                                            people: dict[str, Person]) -> None:
    """Applied on another base, ids must differ; the result says they were not compared."""
    sent, out = send_then_apply_elsewhere(cli, project, relay, people, ["r.txt"])
    assert out["verified"] is False and out["checks"][0]["ok"] is None
    assert out["commits"][0] != sent["commits"][0]
    assert (project.maintainer / "r.txt").read_text() == "r\n"
    assert git.Repo(project.maintainer).active_branch.name == "main"


def test_non_utf8_commit_keeps_its_id(cli: Cli, project: Project, relay: ThreadRelay,
                                      people: dict[str, Person], tmp_path: Path) -> None:
    """A message git keeps in ISO-8859-1 (an `encoding` header): format-patch sends it as
    UTF-8, the `commit-encoding` tag lets the receiver turn it back."""
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    msg = tmp_path / "msg.txt"
    msg.write_bytes("café latin\n\nnaïve body\n".encode("iso-8859-1"))
    (project.contributor / "l.txt").write_text("l\n")
    git_run(project.contributor, "add", "l.txt")
    git_run(project.contributor, "-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q",
            "-F", str(msg))
    want = git_run(project.contributor, "rev-parse", "HEAD")
    sent = cli.ok("git", "send", "HEAD~1", "-C", str(project.contributor), "--key-file",
                  str(c.key_file), "--relay", relay.url, "--json")
    out = cli.ok("git", "apply", sent["root"], "-C", str(project.maintainer), "--json")
    assert out["commits"] == [want] and out["verified"]
    raw = subprocess.run(["git", "cat-file", "commit", want], cwd=project.maintainer,
                         capture_output=True, check=True).stdout
    assert b"encoding ISO-8859-1\n" in raw and "café".encode("iso-8859-1") in raw


def test_a_commit_that_cannot_be_rebuilt_says_which_field(cli: Cli, project: Project,
                                                          relay: ThreadRelay,
                                                          people: dict[str, Person]) -> None:
    """A patch without a `committer` tag cannot reproduce the proposer's commit: apply
    refuses and says why; --no-verify keeps it and warns with the same reason."""
    from tests.gitafter.conftest import publish_raw

    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    sha = commit_file(project.contributor, "n.txt", "n\n", "add n")
    parent = git_run(project.contributor, "rev-parse", "HEAD~1")
    text = git_run(project.contributor, "format-patch", "--stdout", "-1", "HEAD") + "\n"
    ident = publish_raw(relay.url, c.signer, 1617, text,
                        [["a", f"30617:{m.pubkey}:demo"], ["t", "root"], ["commit", sha],
                         ["parent-commit", parent]])
    mdir = ["-C", str(project.maintainer)]
    msg = cli.fails("git", "apply", ident, *mdir)
    assert "no 'committer' tag" in msg
    res = cli("git", "apply", ident, "--no-verify", *mdir)
    assert res.exit_code == 0 and "no 'committer' tag" in res.stderr
