"""A NIP-34 patch producer that is not oa-node's: it builds series the way ngit does, so the
tests can check that ``oa-node git`` takes what other clients send.

Written from NIP-34 (tags) and the two patch formats clients put in the content:

* ``libgit2``: what ngit sends (libgit2's ``git_email_create_from_commit``): ``From <id>
  Mon Sep 17 00:00:00 2001``, ``From:`` (raw UTF-8, never RFC 2047), an RFC 2822 ``Date:``,
  ``Subject: [PATCH n/m] <summary>`` where the summary is the message's first paragraph
  squashed to one line, the body trimmed, then ``---`` straight after it (even for an
  empty commit), the diffstat, the diff, and ``--\\nlibgit2 <version>\\n\\n``;
* ``format-patch``: ``git format-patch --always --binary`` itself (what gitworkshop users
  paste and older clients send): RFC 2047 headers and a ``-- `` signature.

Tags as ngit writes them: ``a`` with a relay hint, ``r`` for the root commit and the commit,
``alt``, ``t root`` (and ``t root-revision`` plus ``e <original> "" reply`` on a revision's
first patch), ``e <first> <relay> root`` and ``e <previous> <relay> reply`` on the others,
``branch-name`` on the first, ``p`` maintainers, ``commit``, ``parent-commit``,
``commit-pgp-sig``, ``description`` (the raw message), ``author`` and ``committer``
(``name, email, unix time, offset in minutes``). Nothing here imports oa-node's sender.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Sequence
from pathlib import Path

from oa_node.signer import LocalSigner
from tests.gitafter.conftest import publish_raw

LIBGIT2_VERSION = "1.9.0"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SPACE = " \t\n\r\v\f"


def git_bytes(cwd: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout


def git_text(cwd: Path, *args: str) -> str:
    return git_bytes(cwd, *args).decode().strip()


def identity(cwd: Path, sha: str, which: str) -> list[str]:
    """``[name, email, unix time, offset minutes]`` of the author or committer."""
    fmt = {"author": "%an%x00%ae%x00%at%x00%ai", "committer": "%cn%x00%ce%x00%ct%x00%ci"}
    name, email, ts, iso = git_text(cwd, "log", "-1", f"--format={fmt[which]}", sha).split("\0")
    tz = iso.rsplit(" ", 1)[1]
    minutes = int(tz[1:3]) * 60 + int(tz[3:5])
    return [name, email, ts, str(-minutes if tz[0] == "-" else minutes)]


def raw_message(cwd: Path, sha: str) -> str:
    """The commit message as libgit2's ``git_commit_message`` gives it (leading newlines
    dropped)."""
    raw = git_bytes(cwd, "cat-file", "commit", sha).decode()
    return raw.partition("\n\n")[2].lstrip("\n")


def summary(message: str) -> str:
    """libgit2's ``git_commit_summary``: the first paragraph, whitespace runs that hold a
    newline squashed to one space, trailing whitespace dropped."""
    out: list[str] = []
    space = ""
    i = 0
    while i < len(message):
        ch = message[i]
        if ch == "\n":
            rest = message[i + 1:]
            line = rest.split("\n", 1)[0]
            if not rest or not line.strip(_SPACE):
                break
        if ch in _SPACE:
            space += ch
        else:
            if space:
                out.append(" " if "\n" in space else space)
                space = ""
            out.append(ch)
        i += 1
    return "".join(out)


def body(message: str) -> str:
    """libgit2's ``git_commit_body``: after the first blank line, trimmed."""
    i = 0
    while i < len(message):
        if message[i] == "\n" and (i + 1 == len(message) or message[i + 1] == "\n"):
            break
        i += 1
    return message[i:].strip(_SPACE)


def rfc2822(ts: int, offset_minutes: int) -> str:
    when = dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    m = abs(offset_minutes)
    return (f"{_DAYS[when.weekday()]}, {when.day} {_MONTHS[when.month - 1]} {when.year:04d} "
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{m // 60:02d}{m % 60:02d}")


def libgit2_email(cwd: Path, sha: str, n: int, total: int) -> str:
    """One patch the way ngit makes it (libgit2's e-mail format, rename detection on)."""
    message = raw_message(cwd, sha)
    name, email, ts, off = identity(cwd, sha, "author")
    prefix = f"[PATCH {n}/{total}] " if total > 1 else "[PATCH] "
    parents = git_text(cwd, "rev-list", "--parents", "-n1", sha).split()[1:]
    base = parents[0] if parents else "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # empty tree
    stat = git_bytes(cwd, "diff", "--stat", "--summary", "-M", base, sha).decode()
    diff = git_bytes(cwd, "diff", "--binary", "--full-index", "-M", base, sha).decode()
    out = [f"From {sha} Mon Sep 17 00:00:00 2001\n", f"From: {name} <{email}>\n",
           f"Date: {rfc2822(int(ts), int(off))}\n", f"Subject: {prefix}{summary(message)}\n",
           "\n"]
    b = body(message)
    if b:
        out.append(b if b.endswith("\n") else b + "\n")
    out += ["---\n", stat, "\n", diff, f"--\nlibgit2 {LIBGIT2_VERSION}\n\n"]
    return "".join(out)


def format_patch_email(cwd: Path, sha: str, n: int, total: int) -> str:
    """``git format-patch`` of one commit (numbered like a series)."""
    prefix = f"--subject-prefix=PATCH {n}/{total}" if total > 1 else "--subject-prefix=PATCH"
    args = ["format-patch", "--stdout", "--always", "--binary", prefix, "-1", sha]
    return git_bytes(cwd, *args).decode("utf-8", "surrogateescape")


def publish_series(relay: str, signer: LocalSigner, coordinate: str, maintainer: str,
                   cwd: Path, shas: Sequence[str], *, style: str = "libgit2",
                   revision_of: str | None = None, branch_name: str | None = "feature",
                   cover_letter: tuple[str, str] | None = None,
                   created_at: int | None = None) -> list[str]:
    """Publish ``shas`` (oldest first) as a patch series the way ngit does (after a cover
    letter ``(title, description)`` when given); the event ids."""
    maker = libgit2_email if style == "libgit2" else format_patch_email
    root_commit = git_text(cwd, "rev-list", "--max-parents=0", shas[0])
    ids: list[str] = []
    t0 = created_at
    if cover_letter is not None:
        # ngit's cover letter: no From:/Date:, no trailing newline
        title, text = cover_letter
        content = (f"From {shas[-1]} Mon Sep 17 00:00:00 2001\n"
                   f"Subject: [PATCH 0/{len(shas)}] {title}\n\n{text}")
        tags = [["a", coordinate, relay], ["r", root_commit], ["t", "cover-letter"],
                ["alt", f"git patch cover letter: {title}"]]
        tags += ([["t", "root"], ["t", "root-revision"], ["e", revision_of, "", "reply"]]
                 if revision_of else [["t", "root"]])
        tags.append(["p", maintainer])
        ids.append(publish_raw(relay, signer, 1617, content, tags, created_at=t0))
        t0 = None if t0 is None else t0 + 1
    for i, sha in enumerate(shas):
        content = maker(cwd, sha, i + 1, len(shas))
        parent = git_text(cwd, "rev-parse", f"{sha}^")
        message = raw_message(cwd, sha)
        tags: list[list[str]] = [["a", coordinate, relay], ["r", root_commit], ["r", sha],
                                 ["alt", f"git patch: {summary(message)}"]]
        if ids:
            tags.append(["e", ids[0], relay, "root"])
        elif revision_of:
            tags += [["t", "root"], ["t", "root-revision"], ["e", revision_of, "", "reply"]]
        else:
            tags.append(["t", "root"])
        if ids:
            tags.append(["e", ids[-1], relay, "reply"])
        if not ids and branch_name:
            tags.append(["branch-name", branch_name])
        tags += [["p", maintainer], ["commit", sha], ["parent-commit", parent],
                 ["commit-pgp-sig", ""], ["description", message],
                 ["author", *identity(cwd, sha, "author")],
                 ["committer", *identity(cwd, sha, "committer")]]
        ids.append(publish_raw(relay, signer, 1617, content, tags,
                               created_at=None if t0 is None else t0 + i))
    return ids
