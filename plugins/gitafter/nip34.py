"""NIP-34 (git over Nostr) events: building, parsing and status resolution, with no I/O.

Everything here takes and returns plain values and :class:`Event` objects so it can be
tested without git or relays. The rules follow NIP-34 plus what ngit and gitworkshop
actually read and write:

* A patch series is one kind-1617 event per commit. The first carries ``t root``; every
  later one carries ``e <first> "" root`` and ``e <previous> "" reply`` (send both even where
  NIP-34 only says SHOULD, because clients follow these chains). A revision's first patch
  carries ``t root``, ``t root-revision`` and ``e <original root> "" reply``.
* Patches carry ``a`` (the 30617 coordinate) and ``r`` (the earliest unique commit, without
  the ``euc`` marker, which only the announcement has), and per commit ``commit``,
  ``r <commit>``, ``parent-commit``, ``commit-pgp-sig`` and ``committer`` so the receiver can
  reproduce the proposer's commit ids; like ngit, also ``description`` (the exact message)
  and ``author``, which an e-mail cannot always carry, and ours ``commit-encoding`` for a
  message git keeps in another encoding.
* Any event of a proposal names it: a revision root leads to the original root by its
  ``e ... reply``, a later patch to its series' first by ``e ... root``, a PR update to its
  PR by ``E`` (:func:`proposal_root_of`).
* The status of a proposal or issue is the newest (``created_at``, then id) status event
  (1630-1633) from the root's author or a maintainer; anyone else's is ignored. A revision
  whose root is applied but which the 1631 event does not name is closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from oa_node.errors import UserError
from oa_node.nostr import kinds
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex

REPO = kinds.GIT_REPO_ANNOUNCEMENT
STATE = kinds.GIT_REPO_STATE
PATCH = kinds.GIT_PATCH
PULL_REQUEST = kinds.GIT_PULL_REQUEST
PULL_REQUEST_UPDATE = kinds.GIT_PULL_REQUEST_UPDATE
ISSUE = kinds.GIT_ISSUE
COMMENT = kinds.COMMENT
STATUS_OPEN = kinds.GIT_STATUS_OPEN
STATUS_APPLIED = kinds.GIT_STATUS_APPLIED
STATUS_CLOSED = kinds.GIT_STATUS_CLOSED
STATUS_DRAFT = kinds.GIT_STATUS_DRAFT
STATUS_KINDS = (STATUS_OPEN, STATUS_APPLIED, STATUS_CLOSED, STATUS_DRAFT)
STATUS_NAMES = {STATUS_OPEN: "open", STATUS_APPLIED: "applied", STATUS_CLOSED: "closed",
                STATUS_DRAFT: "draft"}
ISSUE_STATUS_NAMES = STATUS_NAMES | {STATUS_APPLIED: "resolved"}

#: NIP-34: "Patches SHOULD be used if each event is under 60kb, otherwise PRs SHOULD be used."
#: We measure the patch text in UTF-8 bytes; the tags add well under 1 KiB, so an event made
#: from a patch below this stays far below common relays' 128 KiB message limits.
MAX_PATCH_BYTES = 60 * 1024

#: Markers other clients put on a revision's first patch (NIP-34 says ``root-revision``,
#: older ngit wrote ``revision-root``); read both, write the NIP's.
REVISION_MARKERS = ("root-revision", "revision-root")

_FROM_LINE = re.compile(r"^From ([0-9a-f]{40}|[0-9a-f]{64}) ")
_COMMIT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_TZ = re.compile(r"^([+-])(\d{2})(\d{2})$")
# ASCII only: str.isdigit() also takes '²', which int() refuses; bounded so int() never meets
# Python's 4300-digit limit and a git date stays one git accepts
_KIND = re.compile(r"[0-9]{1,5}")
_UNIX_TIME = re.compile(r"-?[0-9]{1,12}")
_TZ_MINUTES = re.compile(r"-?[0-9]{1,4}")
#: A commit's ``encoding`` header value as a tag may carry it (nothing that could end a line)
_ENCODING = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")


class Nip34Error(UserError):
    """A NIP-34 event that cannot be used, or a request that makes no sense; the message
    names the event and what is wrong with it."""


def short(event_id: str) -> str:
    return event_id[:8]


def is_commit_id(value: str) -> bool:
    return bool(_COMMIT_ID.match(value))


# --- small tag helpers -------------------------------------------------------------------------


def tag_values(tags: Iterable[Sequence[str]], name: str) -> list[str]:
    """Every value of every ``name`` tag (multi-value tags such as ``clone`` flattened)."""
    out: list[str] = []
    for t in tags:
        if len(t) >= 2 and t[0] == name:
            out.extend(v for v in t[1:] if v)
    return out


def first_value(tags: Iterable[Sequence[str]], name: str) -> str | None:
    for t in tags:
        if len(t) >= 2 and t[0] == name:
            return t[1]
    return None


def hashtags(event: Event) -> set[str]:
    return {t[1].lower() for t in event.tags if len(t) >= 2 and t[0] == "t"}


def marked_e(event: Event, marker: str, name: str = "e") -> str | None:
    """The event id of the first ``e`` tag carrying NIP-10 ``marker`` (position 3)."""
    for t in event.tags:
        if len(t) >= 4 and t[0] == name and t[3] == marker and is_hex(t[1], 32):
            return t[1]
    return None


def parse_coordinate(value: str) -> tuple[int, str, str]:
    """``"30617:<pubkey>:<d>"`` -> ``(kind, pubkey, d)``."""
    parts = value.split(":", 2)
    if (len(parts) != 3 or not _KIND.fullmatch(parts[0]) or not is_hex(parts[1], 32)
            or not parts[2]):
        raise Nip34Error(f"not a repository address: {value!r} (expected 30617:<pubkey>:<id>)")
    return int(parts[0]), parts[1], parts[2]


# --- repository announcement (30617) and state (30618) ------------------------------------------


@dataclass(frozen=True)
class RepoRef:
    """A repository as its 30617 announcement describes it."""

    identifier: str
    owner: str
    name: str = ""
    description: str = ""
    clone: tuple[str, ...] = ()
    web: tuple[str, ...] = ()
    relays: tuple[str, ...] = ()
    maintainers: tuple[str, ...] = ()  # others besides the owner
    euc: str | None = None
    labels: tuple[str, ...] = ()
    personal_fork: bool = False

    @property
    def coordinate(self) -> str:
        return f"{REPO}:{self.owner}:{self.identifier}"

    @property
    def all_maintainers(self) -> frozenset[str]:
        """Whose statuses count: the owner (unless a personal fork) and listed maintainers."""
        base = set(self.maintainers)
        if not self.personal_fork:
            base.add(self.owner)
        return frozenset(base)

    def to_template(self, created_at: int | None = None) -> EventTemplate:
        tags: list[list[str]] = [["d", self.identifier]]
        if self.name:
            tags.append(["name", self.name])
        if self.description:
            tags.append(["description", self.description])
        if self.web:
            tags.append(["web", *self.web])
        if self.clone:
            tags.append(["clone", *self.clone])
        if self.relays:
            tags.append(["relays", *self.relays])
        if self.euc:
            tags.append(["r", self.euc, "euc"])
        if self.maintainers:
            tags.append(["maintainers", *self.maintainers])
        if self.personal_fork:
            tags.append(["t", "personal-fork"])
        tags.extend(["t", label] for label in self.labels)
        tags.append(["alt", f"git repository: {self.name or self.identifier}"])
        return EventTemplate(kind=REPO, content="", tags=tags, created_at=created_at)

    @classmethod
    def from_event(cls, event: Event) -> RepoRef:
        if event.kind != REPO:
            raise Nip34Error(f"event {short(event.id)} is kind {event.kind}, not a repository "
                             f"announcement ({REPO})")
        identifier = event.d_tag
        if not identifier:
            raise Nip34Error(f"repository announcement {short(event.id)} has no 'd' tag")
        euc = None
        for t in event.tags:
            if len(t) >= 3 and t[0] == "r" and t[2] == "euc" and is_commit_id(t[1]):
                euc = t[1]
                break
        labels = tuple(v for v in tag_values(event.tags, "t") if v != "personal-fork")
        return cls(
            identifier=identifier,
            owner=event.pubkey,
            name=first_value(event.tags, "name") or "",
            description=first_value(event.tags, "description") or "",
            clone=tuple(tag_values(event.tags, "clone")),
            web=tuple(tag_values(event.tags, "web")),
            relays=tuple(tag_values(event.tags, "relays")),
            maintainers=tuple(dict.fromkeys(
                m for m in tag_values(event.tags, "maintainers") if is_hex(m, 32))),
            euc=euc,
            labels=labels,
            personal_fork="personal-fork" in hashtags(event),
        )

    def repo_tags(self, relay_hint: str = "") -> list[list[str]]:
        """The ``a``/``r``/``p`` tags that tie an event to this repository."""
        a = ["a", self.coordinate, relay_hint] if relay_hint else ["a", self.coordinate]
        tags = [a]
        if self.euc:
            tags.append(["r", self.euc])
        tags.append(["p", self.owner])
        return tags


def state_template(identifier: str, refs: dict[str, str], head: str | None,
                   created_at: int | None = None) -> EventTemplate:
    """Kind 30618: one tag per ref (``refs/heads/x``, ``refs/tags/y``) and ``HEAD``."""
    tags: list[list[str]] = [["d", identifier]]
    for ref in sorted(refs):
        if not ref.startswith(("refs/heads/", "refs/tags/")) or not is_commit_id(refs[ref]):
            raise Nip34Error(f"bad ref for a state event: {ref} -> {refs[ref]!r}")
        tags.append([ref, refs[ref]])
    if head:
        tags.append(["HEAD", f"ref: {head}" if not head.startswith("ref: ") else head])
    return EventTemplate(kind=STATE, content="", tags=tags, created_at=created_at)


def parse_state(event: Event) -> tuple[dict[str, str], str | None]:
    if event.kind != STATE:
        raise Nip34Error(f"event {short(event.id)} is not a repository state ({STATE})")
    refs = {t[0]: t[1] for t in event.tags
            if len(t) >= 2 and t[0].startswith("refs/") and is_commit_id(t[1])}
    head = first_value(event.tags, "HEAD")
    return refs, head


# --- trajectories (NIP-SA references on patches and PRs) ---------------------------------------


@dataclass(frozen=True)
class TrajectoryRef:
    session: str
    relay: str = ""
    sha256: str | None = None

    def tags(self) -> list[list[str]]:
        tags = [["trajectory", self.session, self.relay] if self.relay
                else ["trajectory", self.session]]
        if self.sha256:
            tags.append(["trajectory_hash", self.sha256])
        return tags


def parse_trajectory(event: Event) -> TrajectoryRef | None:
    for t in event.tags:
        if len(t) >= 2 and t[0] == "trajectory" and t[1]:
            digest = first_value(event.tags, "trajectory_hash")
            if digest is not None and not is_hex(digest, 32):
                digest = None  # a malformed hash is shown as absent, never trusted
            return TrajectoryRef(t[1], t[2] if len(t) >= 3 else "", digest)
    return None


def check_trajectory_hash(value: str) -> str:
    value = value.strip().lower()
    if not is_hex(value, 32):
        raise Nip34Error(f"trajectory hash must be 64 hex characters (a sha256), got {value!r}")
    return value


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


def _newest(events: Iterable[Event]) -> Event | None:
    return max(events, key=lambda e: (e.created_at, e.id), default=None)


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


# --- pull requests (1618) and their updates (1619) ---------------------------------------------


def _pr_revision_of(event: Event) -> str | None:
    """A PR with an unmarked ``e`` tag names the root patch it revises (NIP-34)."""
    for t in event.tags:
        if len(t) >= 2 and t[0] == "e" and is_hex(t[1], 32) and (len(t) < 4 or t[3] in ("",)):
            return t[1]
    return None


def pr_template(
    repo: RepoRef,
    *,
    subject: str,
    description: str,
    tip: str,
    clone: Sequence[str],
    branch_name: str | None,
    merge_base: str | None,
    revision_of: str | None = None,
    labels: Iterable[str] = (),
    trajectory: TrajectoryRef | None = None,
    created_at: int | None = None,
) -> EventTemplate:
    if not is_commit_id(tip):
        raise Nip34Error(f"PR tip {tip!r} is not a commit id")
    if not clone:
        raise Nip34Error("a pull request needs at least one clone URL where its tip can be "
                         "fetched (--clone-url)")
    tags = repo.repo_tags()
    tags.append(["subject", subject])
    tags.extend(["t", label] for label in labels)
    tags.append(["c", tip])
    tags.append(["clone", *clone])
    if branch_name:
        tags.append(["branch-name", branch_name])
    if merge_base:
        tags.append(["merge-base", merge_base])
    if revision_of:
        tags.append(["e", revision_of])
    tags.append(["alt", f"git pull request: {subject}"])
    if trajectory is not None:
        tags.extend(trajectory.tags())
    return EventTemplate(kind=PULL_REQUEST, content=description, tags=tags,
                         created_at=created_at)


def pr_update_template(
    repo: RepoRef,
    pr: Event,
    *,
    tip: str,
    clone: Sequence[str],
    merge_base: str | None,
    trajectory: TrajectoryRef | None = None,
    created_at: int | None = None,
) -> EventTemplate:
    if not is_commit_id(tip):
        raise Nip34Error(f"PR tip {tip!r} is not a commit id")
    if not clone:
        raise Nip34Error("a pull request update needs a clone URL (--clone-url)")
    tags = repo.repo_tags()
    if pr.pubkey != repo.owner:
        tags.append(["p", pr.pubkey])
    tags.append(["E", pr.id])
    tags.append(["P", pr.pubkey])
    tags.append(["c", tip])
    tags.append(["clone", *clone])
    if merge_base:
        tags.append(["merge-base", merge_base])
    tags.append(["alt", "git pull request update"])
    if trajectory is not None:
        tags.extend(trajectory.tags())
    return EventTemplate(kind=PULL_REQUEST_UPDATE, content="", tags=tags,
                         created_at=created_at)


@dataclass(frozen=True)
class PullRequest:
    event: Event
    subject: str
    tip: str
    clone: tuple[str, ...]
    branch_name: str | None
    merge_base: str | None
    revision_of: str | None
    trajectory: TrajectoryRef | None
    updated_by: Event | None = None  # the 1619 that set ``tip``, if any

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def fetch_refs(self) -> list[str]:
        """Where the tip was pushed (``refs/nostr/<event id>``), newest first."""
        ids = [self.updated_by.id] if self.updated_by else []
        return [f"refs/nostr/{i}" for i in [*ids, self.event.id]]


def parse_pr(event: Event) -> PullRequest:
    where = f"pull request {short(event.id)}"
    if event.kind != PULL_REQUEST:
        raise Nip34Error(f"{where}: kind {event.kind} is not a pull request ({PULL_REQUEST})")
    tip = (first_value(event.tags, "c") or "").lower()
    if not is_commit_id(tip):
        raise Nip34Error(f"{where} is malformed: no valid 'c' (tip commit) tag")
    clone = tuple(tag_values(event.tags, "clone"))
    if not clone:
        raise Nip34Error(f"{where} is malformed: no 'clone' URL to fetch its tip from")
    merge_base = first_value(event.tags, "merge-base")
    return PullRequest(
        event=event,
        subject=first_value(event.tags, "subject") or "",
        tip=tip,
        clone=clone,
        branch_name=first_value(event.tags, "branch-name"),
        merge_base=merge_base.lower() if merge_base and is_commit_id(merge_base.lower())
        else None,
        revision_of=_pr_revision_of(event),
        trajectory=parse_trajectory(event),
    )


def apply_updates(pr: PullRequest, updates: Iterable[Event],
                  maintainers: Iterable[str]) -> PullRequest:
    """The PR with its tip moved by the newest valid 1619 (from the PR's author or a
    maintainer, naming the PR in ``E``, with a commit id in ``c``)."""
    allowed = set(maintainers) | {pr.event.pubkey}
    valid = []
    for u in updates:
        tip = (first_value(u.tags, "c") or "").lower()
        if (u.kind == PULL_REQUEST_UPDATE and u.pubkey in allowed and is_commit_id(tip)
                and pr.id in tag_values(u.tags, "E") and tag_values(u.tags, "clone")):
            valid.append(u)
    newest = _newest(valid)
    if newest is None:
        return pr
    tip = (first_value(newest.tags, "c") or "").lower()
    merge_base = first_value(newest.tags, "merge-base")
    traj = parse_trajectory(newest) or pr.trajectory
    return PullRequest(
        event=pr.event, subject=pr.subject, tip=tip,
        clone=tuple(dict.fromkeys([*tag_values(newest.tags, "clone"), *pr.clone])),
        branch_name=pr.branch_name,
        merge_base=merge_base.lower() if merge_base and is_commit_id(merge_base.lower())
        else pr.merge_base,
        revision_of=pr.revision_of, trajectory=traj, updated_by=newest,
    )


# --- statuses (1630-1633) ---------------------------------------------------------------------


def status_template(
    kind: int,
    root: Event,
    repo: RepoRef,
    *,
    content: str = "",
    revision: Event | None = None,
    merge_commit: str | None = None,
    applied_commits: Sequence[str] = (),
    applied_patches: Sequence[Event] = (),
    relay_hint: str = "",
    created_at: int | None = None,
) -> EventTemplate:
    if kind not in STATUS_KINDS:
        raise Nip34Error(f"kind {kind} is not a status kind ({STATUS_KINDS})")
    tags: list[list[str]] = [["e", root.id, "", "root"]]
    if revision is not None and revision.id != root.id:
        tags.append(["e", revision.id, "", "reply"])
    people = [repo.owner, root.pubkey] + ([revision.pubkey] if revision is not None else [])
    tags.extend(["p", p] for p in dict.fromkeys(people))
    tags.append(["a", repo.coordinate, relay_hint] if relay_hint else ["a", repo.coordinate])
    if repo.euc:
        tags.append(["r", repo.euc])
    if kind == STATUS_APPLIED:
        for p in applied_patches:
            tags.append(["q", p.id, relay_hint, p.pubkey])
        if merge_commit:
            if not is_commit_id(merge_commit):
                raise Nip34Error(f"merge commit {merge_commit!r} is not a commit id")
            tags.append(["merge-commit", merge_commit])
            tags.append(["r", merge_commit])
        if applied_commits:
            bad = [c for c in applied_commits if not is_commit_id(c)]
            if bad:
                raise Nip34Error(f"not commit ids: {', '.join(bad)}")
            tags.append(["applied-as-commits", *applied_commits])
            tags.extend(["r", c] for c in applied_commits)
    return EventTemplate(kind=kind, content=content, tags=tags, created_at=created_at)


@dataclass(frozen=True)
class Status:
    kind: int
    event: Event | None  # None: nobody set one, so the default "open"

    @property
    def name(self) -> str:
        return STATUS_NAMES[self.kind]

    @property
    def merge_commit(self) -> str | None:
        if self.event is None:
            return None
        return (first_value(self.event.tags, "merge-commit")
                or first_value(self.event.tags, "merge-commit-id"))  # ngit's spelling

    @property
    def applied_as(self) -> list[str]:
        return tag_values(self.event.tags, "applied-as-commits") if self.event else []

    def names(self, event_id: str) -> bool:
        """Whether this status event names ``event_id`` (``e`` or ``q`` tag)."""
        if self.event is None:
            return False
        return any(len(t) >= 2 and t[0] in ("e", "q") and t[1] == event_id
                   for t in self.event.tags)


def _targets(status: Event, root_id: str) -> bool:
    """A status is about ``root_id`` when an ``e`` tag marked ``root`` (or unmarked, as some
    clients write) names it."""
    for t in status.tags:
        if len(t) >= 2 and t[0] == "e" and t[1] == root_id:
            marker = t[3] if len(t) >= 4 else ""
            if marker in ("", "root"):
                return True
    return False


def valid_statuses(root: Event, statuses: Iterable[Event],
                   maintainers: Iterable[str]) -> list[Event]:
    """Status events about ``root`` from its author or a maintainer, oldest first."""
    allowed = set(maintainers) | {root.pubkey}
    out = [s for s in statuses
           if s.kind in STATUS_KINDS and s.pubkey in allowed and _targets(s, root.id)]
    return sorted(out, key=lambda e: (e.created_at, e.id))


def resolve_status(root: Event, statuses: Iterable[Event], maintainers: Iterable[str],
                   *, revision: Event | None = None) -> Status:
    """The status that counts: the newest valid one, else open. For a ``revision`` of an
    applied root that the 1631 event does not name, closed (NIP-34)."""
    valid = valid_statuses(root, statuses, maintainers)
    status = Status(valid[-1].kind, valid[-1]) if valid else Status(STATUS_OPEN, None)
    if (revision is not None and revision.id != root.id and status.kind == STATUS_APPLIED
            and not status.names(revision.id)):
        return Status(STATUS_CLOSED, status.event)
    return status


def next_created_at(now: int, existing: Iterable[Event]) -> int:
    """A timestamp later than every event in ``existing``, so a status published right
    after another (in the same second) still wins the "newest" comparison."""
    latest = max((e.created_at for e in existing), default=0)
    return max(now, latest + 1)


# --- proposals: a root, its revisions and its status --------------------------------------------


@dataclass
class Proposal:
    """A patch series or pull request with its current revision and status."""

    root: Event
    status: Status
    patches: list[PatchEvent] = field(default_factory=list)  # current revision, in order
    revision: Event | None = None  # the current revision's first event (None: the root)
    revisions: list[Event] = field(default_factory=list)  # all revision roots, oldest first
    pr: PullRequest | None = None  # set when the current revision is a pull request

    @property
    def id(self) -> str:
        return self.root.id

    @property
    def kind(self) -> str:
        return "pr" if self.pr is not None else "patch"

    @property
    def author(self) -> str:
        return self.root.pubkey

    @property
    def subject(self) -> str:
        if self.root.kind == PULL_REQUEST:
            return first_value(self.root.tags, "subject") or ""
        first = self.patches[0] if self.patches else parse_patch(self.root)
        return strip_patch_prefix(first.subject)

    @property
    def commit_patches(self) -> list[PatchEvent]:
        return [p for p in self.patches if not p.is_cover_letter]

    @property
    def trajectory(self) -> TrajectoryRef | None:
        if self.pr is not None and self.pr.trajectory is not None:
            return self.pr.trajectory
        for p in self.patches:
            if p.trajectory is not None:
                return p.trajectory
        return parse_trajectory(self.root)


def build_proposal(root: Event, events: Iterable[Event], maintainers: Iterable[str],
                   statuses: Iterable[Event] = (), *, revision: str | None = None) -> Proposal:
    """Assemble a proposal from ``events`` (patches, PRs, PR updates of the repo). Only
    revisions by the root's author or a maintainer are considered, so nobody else can swap
    the code a maintainer applies. The current revision is the newest, or ``revision``:
    ``1`` the original, ``2`` the first revision..., or a revision root's id (or prefix)."""
    maint = set(maintainers)
    allowed = maint | {root.pubkey}
    evs = list(events)
    revisions = sorted(
        (e for e in evs if e.pubkey in allowed and e.id != root.id and (
            (e.kind == PATCH and any(m in hashtags(e) for m in REVISION_MARKERS)
             and marked_e(e, "reply") == root.id)
            or (e.kind == PULL_REQUEST and _pr_revision_of(e) == root.id))),
        key=lambda e: (e.created_at, e.id))
    current = revisions[-1] if revisions else root
    if revision is not None:
        current = _pick_revision(root, revisions, revision)
    status = resolve_status(root, statuses, maint)
    prop = Proposal(root=root, status=status,
                    revision=current if current.id != root.id else None,
                    revisions=revisions)
    if current.kind == PULL_REQUEST:
        pr = parse_pr(current)
        prop.pr = apply_updates(pr, (e for e in evs if e.kind == PULL_REQUEST_UPDATE), maint)
    else:
        # Only the series author's own patches continue it: anyone can publish a patch that
        # replies into someone's series, and the newest child would otherwise win.
        chain = series(current, (e for e in evs
                                 if e.kind == PATCH and e.pubkey == current.pubkey))
        total = len(chain)
        prop.patches = [parse_patch(e, f"{i + 1}/{total}") for i, e in enumerate(chain)]
    return prop


def proposal_root_of(event: Event, events: Iterable[Event]) -> Event | None:
    """The proposal root an event belongs to: itself for a root; the original for a
    revision root (its ``e ... reply``) or a PR revising a patch set; the series' first
    patch (then its original, if that is a revision) for any later patch; the PR for a PR
    update (``E``). None when the chain leads to no root among ``events``."""
    by_id = {e.id: e for e in events}
    current: Event | None = event
    for _ in range(4):  # patch -> revision root -> original root; bounded
        if current is None:
            return None
        if is_proposal_root(current):
            return current
        nxt: str | None = None
        if current.kind == PATCH:
            marks = hashtags(current)
            if "root" in marks and any(r in marks for r in REVISION_MARKERS):
                nxt = marked_e(current, "reply")
            else:
                nxt = marked_e(current, "root")
        elif current.kind == PULL_REQUEST:
            nxt = _pr_revision_of(current)
        elif current.kind == PULL_REQUEST_UPDATE:
            nxt = next(iter(tag_values(current.tags, "E")), None)
        current = by_id.get(nxt) if nxt else None
    return None


def _pick_revision(root: Event, revisions: list[Event], wanted: str) -> Event:
    every = [root, *revisions]
    value = wanted.strip().lower()
    if value.isdigit() and len(value) < 6:
        n = int(value)
        if not 1 <= n <= len(every):
            raise Nip34Error(f"proposal {short(root.id)} has {len(every)} revision(s): "
                             f"--revision {wanted} is not one of 1..{len(every)}")
        return every[n - 1]
    found = [e for e in every if e.id.startswith(value)] if len(value) >= 4 else []
    if len(found) != 1:
        names = ", ".join(f"{i + 1}={short(e.id)}" for i, e in enumerate(every))
        raise Nip34Error(f"--revision {wanted[:70]!r} names no single revision of proposal "
                         f"{short(root.id)} ({names})")
    return found[0]


def find_roots(events: Iterable[Event]) -> list[Event]:
    """Proposal roots among ``events``, newest first."""
    return sorted((e for e in events if is_proposal_root(e)),
                  key=lambda e: (e.created_at, e.id), reverse=True)


# --- issues (1621) and comments (NIP-22 1111) ----------------------------------------------------


def issue_template(repo: RepoRef, *, subject: str, content: str,
                   labels: Iterable[str] = (), created_at: int | None = None) -> EventTemplate:
    if not subject.strip():
        raise Nip34Error("an issue needs a subject")
    tags = repo.repo_tags()
    tags.append(["subject", subject.strip()])
    tags.extend(["t", label] for label in labels)
    tags.append(["alt", f"git issue: {subject.strip()}"])
    return EventTemplate(kind=ISSUE, content=content, tags=tags, created_at=created_at)


@dataclass(frozen=True)
class Issue:
    event: Event
    subject: str
    labels: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.event.id


def parse_issue(event: Event) -> Issue:
    if event.kind != ISSUE:
        raise Nip34Error(f"event {short(event.id)} is kind {event.kind}, not an issue ({ISSUE})")
    subject = first_value(event.tags, "subject") or event.content.strip().split("\n", 1)[0][:80]
    return Issue(event, subject, tuple(tag_values(event.tags, "t")))


def comment_template(root: Event, parent: Event, content: str, *, relay_hint: str = "",
                     created_at: int | None = None) -> EventTemplate:
    """A NIP-22 comment: uppercase ``E``/``K``/``P`` for the thread's root, lowercase
    ``e``/``k``/``p`` for the item answered (the root itself for a top-level comment)."""
    if not content.strip():
        raise Nip34Error("a comment needs some text")
    tags = [
        ["E", root.id, relay_hint, root.pubkey],
        ["K", str(root.kind)],
        ["P", root.pubkey],
        ["e", parent.id, relay_hint, parent.pubkey],
        ["k", str(parent.kind)],
        ["p", parent.pubkey],
    ]
    return EventTemplate(kind=COMMENT, content=content, tags=tags, created_at=created_at)


def comments_for(root: Event, events: Iterable[Event]) -> list[Event]:
    """NIP-22 comments in ``root``'s thread in thread order: depth first, siblings oldest
    first, so a reply always follows what it answers (even within the same second).
    Comments whose parent is unknown are treated as top-level."""
    found = {e.id: e for e in events
             if e.kind == COMMENT and root.id in tag_values(e.tags, "E")}
    children: dict[str, list[Event]] = {}
    for e in found.values():
        parent = comment_parent(e)
        key = parent if parent in found and parent != e.id else root.id
        children.setdefault(key, []).append(e)
    out: list[Event] = []
    stack = [root.id]
    seen: set[str] = set()
    while stack:  # bounded: each comment is pushed at most once
        node = stack.pop()
        kids = sorted(children.get(node, []), key=lambda e: (e.created_at, e.id))
        for kid in reversed(kids):
            if kid.id not in seen:
                seen.add(kid.id)
                stack.append(kid.id)
        if node != root.id:
            out.append(found[node])
    # Cycles (a -> b -> a) never reach the root: append them, oldest first.
    out += sorted((e for e in found.values() if e.id not in seen),
                  key=lambda e: (e.created_at, e.id))
    return out


def comment_parent(comment: Event) -> str | None:
    return first_value(comment.tags, "e")
