"""What other NIP-34 clients send, applied by a maintainer with ``oa-node git``.

One contributor history holds every kind of commit git can carry as a patch (a rename, a
binary file and a change to it, a unicode file name, a CRLF file, a non-ASCII author, empty
commits with and without a body, a mode change, a symbolic link, a deletion, a message git
am cannot rebuild, a committer and time zones unlike the author's). It is published by a
producer written from NIP-34 and the patch formats (tests/gitafter/foreign.py: ngit's
libgit2 e-mails, and git format-patch), as a revision, and by ``oa-node git send``; every
check is one commit, and ``apply`` must reproduce every commit id. With
``OA_INTEROP_REPORT=1`` (and ``-s``) the tests print their counts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from oa_node.nostr import nip19
from tests.gitafter import foreign
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run
from tests.gitafter.test_flow import announce


def contributor_history(path: Path) -> list[str]:
    """Fourteen commits, each an oddity a patch must carry; their ids, oldest first."""
    def commit(*args: str, env: dict[str, str] | None = None) -> str:
        git_run(path, "commit", "-q", *args, env=env)
        return git_run(path, "rev-parse", "HEAD")

    shas = []
    git_run(path, "mv", "README.md", "docs-README.md")
    shas.append(commit("-m", "rename the README"))
    shas.append(commit_file(path, "data.bin", bytes(range(256)) * 8, "add binary data"))
    shas.append(commit_file(path, "dïr/ファイル ü.txt", "unicode name\n",
                            "add a file with a unicode name"))
    shas.append(commit_file(path, "win.txt", "dos\r\nline two\r\n", "add a CRLF file"))
    (path / "greeting.txt").write_text("grüße\n")
    git_run(path, "add", "greeting.txt")
    shas.append(commit("--author", "Zoë Łukasiewicz-Ñúñez <zoe@example.org>", "-m",
                       "Grüße: naïve café ✓"))
    shas.append(commit("--allow-empty", "-m", "an empty commit", "-m",
                       "with a body that explains\nwhy it is empty"))
    shas.append(commit("--allow-empty", "-m", "an empty commit without a body"))
    git_run(path, "update-index", "--chmod=+x", "src/app.py")
    shas.append(commit("-m", "make app.py executable"))
    shas.append(commit_file(path, "data.bin", bytes(range(256)) * 7 + b"changed",
                            "edit the binary data (a delta)"))
    (path / "link").symlink_to("src/app.py")
    git_run(path, "add", "link")
    shas.append(commit("-m", "add a symbolic link"))
    git_run(path, "rm", "-q", "data.bin")
    shas.append(commit("-m", "delete the binary data"))
    (path / "notes.txt").write_text("notes\n")
    git_run(path, "add", "notes.txt")
    shas.append(commit("--cleanup=verbatim", "-m",
                       "a subject on\ntwo lines  \n\nbody with trailing spaces   \n---\n"
                       "a line git am reads as the end of the message\n\n\n"))
    (path / "notes.txt").write_text("notes\nmore\n")
    git_run(path, "add", "notes.txt")
    shas.append(commit("-m", "committer and time zones differ", env={
        "GIT_AUTHOR_DATE": "1600000000 +0545", "GIT_COMMITTER_DATE": "1700000000 -0330",
        "GIT_COMMITTER_NAME": "Çommitter Øther", "GIT_COMMITTER_EMAIL": "other@example.org"}))
    commit_file(path, "win.txt", "dos\r\nline 2\r\n", "edit the CRLF file")
    shas.append(git_run(path, "rev-parse", "HEAD"))
    return shas


def apply_count(cli: Cli, mdir: list[str], ident: str, want: list[str],
                branch: str) -> tuple[int, str]:
    """How many commits ``apply IDENT`` reproduced (0 when it failed), and why not all."""
    res = cli("git", "apply", ident, "--no-verify", "--branch", branch, *mdir, "--json")
    if res.exit_code != 0:
        return 0, f"failed: {res.exception}"
    import json

    got = json.loads(res.stdout)["commits"]
    same = sum(1 for a, b in zip(got, want, strict=False) if a == b)
    return same, "" if same == len(want) else f"got {got}"


@pytest.fixture
def series(cli: Cli, project: Project, relay: ThreadRelay,
           people: dict[str, Person]) -> dict:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    coord = f"30617:{m.pubkey}:demo"
    cdir = project.contributor
    git_run(cdir, "checkout", "-q", "-b", "feature")
    shas = contributor_history(cdir)
    now = int(time.time()) - 1000
    a = foreign.publish_series(relay.url, c.signer, coord, m.pubkey, cdir, shas,
                               created_at=now)
    b = foreign.publish_series(relay.url, c.signer, coord, m.pubkey, cdir, shas,
                               style="format-patch", created_at=now + 100)
    # A revision of the libgit2 series: one more commit on top.
    rev_shas = [*shas, commit_file(cdir, "notes.txt", "notes\nmore\nrevised\n",
                                   "revision: one more commit")]
    rev = foreign.publish_series(relay.url, c.signer, coord, m.pubkey, cdir, rev_shas,
                                 revision_of=a[0], created_at=now + 200,
                                 cover_letter=("v2: the series", "one more commit"))
    # oa-node's own sender, for the same commits.
    git_run(cdir, "checkout", "-q", "-b", "ours", shas[-1])
    ours = cli.ok("git", "send", "main", "-C", str(cdir), "--key-file", str(c.key_file),
                  "--relay", relay.url, "--json")
    return {"shas": shas, "rev_shas": rev_shas, "libgit2": a, "format-patch": b,
            "revision": rev, "ours": ours}


def test_apply_reproduces_every_commit(cli: Cli, project: Project, series: dict,
                                       relay: ThreadRelay) -> None:
    mdir = ["-C", str(project.maintainer)]
    shas, rev_shas = series["shas"], series["rev_shas"]
    checks = [  # (what, id given to apply, commits it must reproduce)
        ("ngit (libgit2 e-mails), revision root id", series["revision"][0], rev_shas),
        ("ngit, original root id: the newest revision", series["libgit2"][0], rev_shas),
        ("git format-patch series", series["format-patch"][0], shas),
        ("oa-node git send", series["ours"]["root"], shas),
    ]
    total = matched = 0
    report = []
    for i, (what, ident, want) in enumerate(checks):
        same, why = apply_count(cli, mdir, ident, want, f"check-{i}")
        total += len(want)
        matched += same
        report.append(f"{what}: {same}/{len(want)} {why}")
        git_run(project.maintainer, "checkout", "-q", "main")
    summary = f"interop: {matched}/{total} commits reproduced\n" + "\n".join(report)
    if os.environ.get("OA_INTEROP_REPORT"):
        print(summary)
    assert matched == total, summary


def test_apply_verifies_what_other_clients_send(cli: Cli, project: Project,
                                                series: dict) -> None:
    """Without --no-verify: every commit id is checked against its `commit` tag."""
    mdir = ["-C", str(project.maintainer)]
    for i, ident in enumerate([series["revision"][0], series["format-patch"][0],
                               series["ours"]["root"]]):
        out = cli.ok("git", "apply", ident, "--branch", f"v-{i}", *mdir, "--json")
        assert out["verified"] is True and all(c["ok"] for c in out["checks"])
        git_run(project.maintainer, "checkout", "-q", "main")


def test_any_event_id_names_the_proposal(cli: Cli, project: Project, series: dict,
                                         relay: ThreadRelay) -> None:
    """A revision root, any patch, an nevent or note: the proposal; the newest revision is
    applied unless --revision picks one; `list` and `show` name the revisions."""
    mdir = ["-C", str(project.maintainer)]
    root, rev = series["libgit2"][0], series["revision"]
    shown = cli.ok("git", "show", rev[0], *mdir, "--json")
    assert shown["id"] == root and shown["revisions"] == [rev[0]]
    assert shown["revision"] == rev[0] and len(shown["patches"]) == len(series["rev_shas"]) + 1
    assert shown["patches"][0]["cover_letter"] and shown["subject"] == "v2: the series"
    for ident in (rev[4], series["libgit2"][3], nip19.note_encode(rev[0]),
                  nip19.nevent_encode(rev[7], [relay.url]), rev[0][:10]):
        assert cli.ok("git", "show", ident, *mdir, "--json")["id"] == root, ident
    # The original revision on request, by number or by id.
    for i, pick in enumerate(("1", root[:8])):
        out = cli.ok("git", "apply", rev[0], "--revision", pick, "--branch", f"r-{i}", *mdir,
                     "--json")
        assert out["commits"] == series["shas"] and out["verified"]
        git_run(project.maintainer, "checkout", "-q", "main")
    msg = cli.fails("git", "apply", root, "--revision", "3", *mdir)
    assert "1..2" in msg
    listed = cli.ok("git", "list", *mdir, "--json")["proposals"]
    assert {p["id"] for p in listed} == {root, series["format-patch"][0],
                                          series["ours"]["root"]}
    assert [p["revisions"] for p in listed if p["id"] == root] == [[rev[0]]]
    out = cli.ok("git", "list", *mdir)
    assert "rev" in out


def test_send_in_reply_to_accepts_what_send_printed(cli: Cli, project: Project,
                                                    relay: ThreadRelay,
                                                    people: dict[str, Person]) -> None:
    """The id and nevent `send` prints name the proposal for `send --in-reply-to`, and the
    revision it makes resolves (was: "no proposal ...")."""
    c = people["contributor"]
    announce(cli, project, relay, people["maintainer"])
    cdir = project.contributor
    cargs = ["-C", str(cdir), "--key-file", str(c.key_file), "--relay", relay.url, "--json"]
    commit_file(cdir, "x.txt", "x\n", "add x")
    first = cli.ok("git", "send", "HEAD~1", *cargs)
    git_run(cdir, "commit", "-q", "--amend", "-m", "add x (v2)")
    second = cli.ok("git", "send", "HEAD~1", "--in-reply-to", first["nevent"], *cargs)
    assert second["revision_of"] == first["root"]
    git_run(cdir, "commit", "-q", "--amend", "-m", "add x (v3)")
    third = cli.ok("git", "send", "HEAD~1", "--in-reply-to", second["nevent"], *cargs)
    assert third["revision_of"] == first["root"]
    mdir = ["-C", str(project.maintainer)]
    for ident in (second["root"], second["nevent"], third["events"][0]):
        out = cli.ok("git", "apply", ident, "--branch", f"b-{ident[:6]}", *mdir, "--json")
        assert out["commits"] == [git_run(cdir, "rev-parse", "HEAD")] and out["verified"]
        git_run(project.maintainer, "checkout", "-q", "main")


def test_each_oddity_alone(cli: Cli, project: Project, series: dict, relay: ThreadRelay,
                           people: dict[str, Person]) -> None:
    """Each commit on its own, as a one-patch proposal in each of the three ways, applied
    on its parent: a check per (oddity, way), so one failure does not hide the others."""
    m, c = people["maintainer"], people["contributor"]
    coord = f"30617:{m.pubkey}:demo"
    cdir, mdir = project.contributor, ["-C", str(project.maintainer)]
    git_run(project.maintainer, "fetch", "-q", str(cdir), "feature")  # every parent
    now = int(time.time()) - 5000
    results = []
    for i, sha in enumerate(series["shas"]):
        what = git_run(cdir, "log", "-1", "--format=%s", sha)
        ways = {
            "ngit": foreign.publish_series(relay.url, c.signer, coord, m.pubkey, cdir, [sha],
                                           created_at=now + 10 * i)[0],
            "format-patch": foreign.publish_series(relay.url, c.signer, coord, m.pubkey, cdir,
                                                   [sha], style="format-patch",
                                                   created_at=now + 10 * i + 1)[0],
            "send": cli.ok("git", "send", f"{sha}~1..{sha}", "-C", str(cdir), "--key-file",
                           str(c.key_file), "--relay", relay.url, "--json")["root"],
        }
        for way, ident in ways.items():
            same, why = apply_count(cli, mdir, ident, [sha], f"alone-{i}-{way}")
            results.append((f"{what} ({way})", same == 1, why))
            git_run(project.maintainer, "checkout", "-q", "main")
    failed = [f"{w}: {why}" for w, ok, why in results if not ok]
    summary = f"interop, one commit at a time: {len(results) - len(failed)}/{len(results)}"
    if os.environ.get("OA_INTEROP_REPORT"):
        print("\n".join([summary, *failed]))
    assert not failed, "\n".join([summary, *failed])
