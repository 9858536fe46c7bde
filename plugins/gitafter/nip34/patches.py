"""Commits and patches (1617): git identities, raw commit objects, patch events and series."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.gitafter.nip34.common import (
    _ENCODING,
    _FROM_LINE,
    _TZ,
    _TZ_MINUTES,
    _UNIX_TIME,
    PATCH,
    PULL_REQUEST,
    REVISION_MARKERS,
    Nip34Error,
    _newest,
    _pr_revision_of,
    first_value,
    hashtags,
    is_commit_id,
    marked_e,
    short,
)
from oa_node.plugins.gitafter.nip34.repo import RepoRef, TrajectoryRef, parse_trajectory

# --- commits and patches (1617) ---------------------------------------------------------------


@dataclass(frozen=True)
class Committer:
    """The committer identity of a commit, as NIP-34's ``committer`` tag carries it."""

    name: str
    email: str
    timestamp: int
    tz_minutes: int  # offset east of UTC, e.g. +0130 -> 90

    def tag(self) -> list[str]:
        return ["committer", self.name, self.email, str(self.timestamp), str(self.tz_minutes)]

    @property
    def git_date(self) -> str:
        """The form ``GIT_COMMITTER_DATE`` accepts: ``"<unix> +hhmm"``."""
        sign = "-" if self.tz_minutes < 0 else "+"
        m = abs(self.tz_minutes)
        return f"{self.timestamp} {sign}{m // 60:02d}{m % 60:02d}"


def parse_git_identity(line: str) -> Committer:
    """``"Name <email> 1700000000 +0100"`` (an author/committer header) -> :class:`Committer`."""
    m = re.match(r"^(.*) <([^>]*)> (\d+) ([+-]\d{4})$", line.strip())
    if not m:
        raise Nip34Error(f"cannot read git identity {line!r}")
    tz = _TZ.match(m.group(4))
    assert tz is not None
    minutes = int(tz.group(2)) * 60 + int(tz.group(3))
    return Committer(m.group(1), m.group(2), int(m.group(3)),
                     -minutes if tz.group(1) == "-" else minutes)


@dataclass(frozen=True)
class CommitObject:
    """The headers of a raw commit object (``git cat-file commit``) that NIP-34 needs."""

    commit: str
    tree: str
    parents: tuple[str, ...]
    committer: Committer
    pgp_sig: str  # "" when unsigned
    author: Committer | None = None
    message: str | None = None  # None when not UTF-8 text (an ``encoding`` header)
    encoding: str | None = None  # the ``encoding`` header (a non-UTF-8 message)


def parse_commit_object(commit_id: str, raw: str) -> CommitObject:
    header, _, message = raw.partition("\n\n")
    tree = ""
    author: Committer | None = None
    encoding: str | None = None
    encoded = False
    parents: list[str] = []
    committer: Committer | None = None
    sig_lines: list[str] = []
    in_sig = False
    for line in header.split("\n"):
        if in_sig and line.startswith(" "):
            sig_lines.append(line[1:])
            continue
        in_sig = False
        key, _, value = line.partition(" ")
        if key == "tree":
            tree = value
        elif key == "parent":
            parents.append(value)
        elif key == "committer":
            committer = parse_git_identity(value)
        elif key == "author":
            author = parse_git_identity(value)
        elif key == "encoding":
            encoded = True
            encoding = value
        elif key == "gpgsig":
            sig_lines = [value]
            in_sig = True
    if not tree or committer is None:
        raise Nip34Error(f"commit {commit_id}: not a commit object")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        encoded = True
    return CommitObject(commit_id, tree, tuple(parents), committer, "\n".join(sig_lines),
                        author, None if encoded else message,
                        encoding if encoding and _ENCODING.fullmatch(encoding) else None)


def patch_subject(content: str) -> str:
    """The ``Subject:`` header of ``git format-patch`` output (folded lines joined)."""
    lines = content.split("\n")
    for i, line in enumerate(lines):
        if line == "":
            break
        if line.startswith("Subject:"):
            subject = line[len("Subject:"):].strip()
            for cont in lines[i + 1:]:
                if cont.startswith((" ", "\t")):
                    subject += " " + cont.strip()
                else:
                    break
            return subject
    return ""


def strip_patch_prefix(subject: str) -> str:
    """``"[PATCH 2/3] fix"`` -> ``"fix"`` (what ``git am`` does to the subject)."""
    return re.sub(r"^\[[^\]]*\]\s*", "", subject)


def patch_template(
    repo: RepoRef,
    content: str,
    *,
    commit: CommitObject | None,
    thread_root: str | None = None,
    reply_to: str | None = None,
    revision_of: str | None = None,
    cover_letter: bool = False,
    trajectory: TrajectoryRef | None = None,
    mention: Iterable[str] = (),
    created_at: int | None = None,
) -> EventTemplate:
    """One kind-1617 event. With no ``thread_root`` this is the series' first event (``t root``,
    plus ``t root-revision`` and ``e <revision_of> "" reply`` for a revision)."""
    tags = repo.repo_tags()
    for p in mention:
        if p != repo.owner:
            tags.append(["p", p])
    if thread_root is None:
        tags.append(["t", "root"])
        if revision_of:
            tags.append(["t", "root-revision"])
            tags.append(["e", revision_of, "", "reply"])
    else:
        tags.append(["e", thread_root, "", "root"])
        tags.append(["e", reply_to or thread_root, "", "reply"])
    if cover_letter:
        tags.append(["t", "cover-letter"])
    if commit is not None:
        tags.append(["commit", commit.commit])
        tags.append(["r", commit.commit])
        if commit.parents:
            tags.append(["parent-commit", commit.parents[0]])
        tags.append(["commit-pgp-sig", commit.pgp_sig])
        # ngit's: the exact message and author, which an e-mail may not carry (a message
        # with a "---" line, a first paragraph of several lines, trailing whitespace)
        if commit.message is not None:
            tags.append(["description", commit.message])
        if commit.author is not None:
            tags.append(["author", *commit.author.tag()[1:]])
        if commit.encoding:
            # ours: git format-patch turns the message into UTF-8; the receiver needs the
            # encoding to turn it back (no NIP-34 tag says it)
            tags.append(["commit-encoding", commit.encoding])
        tags.append(commit.committer.tag())
    subject = strip_patch_prefix(patch_subject(content))
    tags.append(["alt", f"git patch: {subject}" if subject else "git patch"])
    if trajectory is not None:
        tags.extend(trajectory.tags())
    return EventTemplate(kind=PATCH, content=content, tags=tags, created_at=created_at)


@dataclass(frozen=True)
class PatchEvent:
    """A parsed, validated kind-1617 event."""

    event: Event
    subject: str
    commit: str | None
    parent_commit: str | None
    committer: Committer | None
    pgp_sig: str
    is_root: bool
    is_revision_root: bool
    is_cover_letter: bool
    thread_root: str | None  # e ... root
    reply_to: str | None  # e ... reply
    trajectory: TrajectoryRef | None
    author: Committer | None = None  # ngit's ``author`` tag
    description: str | None = None  # ngit's ``description`` tag: the exact commit message
    encoding: str | None = None  # ``commit-encoding``: the commit's non-UTF-8 encoding

    @property
    def id(self) -> str:
        return self.event.id


def _identity_tag(event: Event, name: str, where: str) -> Committer | None:
    """A ``committer`` or ``author`` tag: ``[name, who, email, unix time, tz minutes]``."""
    for t in event.tags:
        if t and t[0] == name:
            if (len(t) < 5 or not _UNIX_TIME.fullmatch(t[3]) or not _TZ_MINUTES.fullmatch(t[4])
                    or abs(int(t[4])) >= 100 * 60):
                raise Nip34Error(f"{where} is malformed: '{name}' tag must be "
                                 f"[{name}, name, email, timestamp, tz-minutes]")
            return Committer(t[1], t[2], int(t[3]), int(t[4]))
    return None


def parse_patch(event: Event, position: str = "") -> PatchEvent:
    """Validate a kind-1617 event; a :class:`Nip34Error` names the event and the problem."""
    where = f"patch {short(event.id)}{f' ({position})' if position else ''}"
    if event.kind != PATCH:
        raise Nip34Error(f"{where}: kind {event.kind} is not a patch ({PATCH})")
    marks = hashtags(event)
    cover = "cover-letter" in marks
    content = event.content
    first_line = content.split("\n", 1)[0]
    m = _FROM_LINE.match(first_line)
    if not m:
        raise Nip34Error(f"{where} is malformed: its content is not `git format-patch` output "
                         f"(it must start with 'From <commit id> ...', got {first_line[:40]!r})")
    subject = patch_subject(content)
    if not subject:
        raise Nip34Error(f"{where} is malformed: no 'Subject:' header in the patch")
    commit = first_value(event.tags, "commit")
    if commit is not None:
        commit = commit.lower()
        if not is_commit_id(commit):
            raise Nip34Error(f"{where} is malformed: 'commit' tag {commit[:70]!r} is not a "
                             "commit id")
        if not cover and m.group(1) != commit:
            raise Nip34Error(f"{where} is malformed: its 'commit' tag says {commit[:12]} but "
                             f"the patch text is commit {m.group(1)[:12]}")
    parent = first_value(event.tags, "parent-commit")
    if parent is not None and not is_commit_id(parent.lower()):
        raise Nip34Error(f"{where} is malformed: 'parent-commit' {parent[:70]!r} is not a "
                         "commit id")
    committer = _identity_tag(event, "committer", where)
    author = _identity_tag(event, "author", where)
    description = first_value(event.tags, "description")
    encoding = first_value(event.tags, "commit-encoding")
    pgp = first_value(event.tags, "commit-pgp-sig") or ""
    return PatchEvent(
        event=event,
        subject=subject,
        commit=commit,
        parent_commit=parent.lower() if parent else None,
        committer=committer,
        pgp_sig=pgp,
        author=author,
        description=description,
        encoding=encoding if encoding and _ENCODING.fullmatch(encoding) else None,
        is_root="root" in marks,
        is_revision_root=any(r in marks for r in REVISION_MARKERS),
        is_cover_letter=cover,
        thread_root=marked_e(event, "root"),
        reply_to=marked_e(event, "reply"),
        trajectory=parse_trajectory(event),
    )


def is_proposal_root(event: Event) -> bool:
    """A pull request, or a first patch that is not a revision of another proposal."""
    if event.kind == PULL_REQUEST:
        return marked_e(event, "reply") is None and not _pr_revision_of(event)
    if event.kind != PATCH:
        return False
    marks = hashtags(event)
    return "root" in marks and not any(r in marks for r in REVISION_MARKERS)


def series(first: Event, patches: Iterable[Event]) -> list[Event]:
    """The patches of the series that starts at ``first``, in order, following the NIP-10
    ``reply`` chain and taking the newest child where a patch has several."""
    children: dict[str, list[Event]] = {}
    for p in patches:
        if p.kind != PATCH or p.id == first.id:
            continue
        root = marked_e(p, "root")
        parent = marked_e(p, "reply")
        if root != first.id or parent is None:
            continue
        children.setdefault(parent, []).append(p)
    out = [first]
    seen = {first.id}
    current = first
    for _ in range(len(children) + 1):  # bounded: a chain cannot be longer than its events
        nxt = _newest(c for c in children.get(current.id, []) if c.id not in seen)
        if nxt is None:
            break
        out.append(nxt)
        seen.add(nxt.id)
        current = nxt
    return out


