"""Pull requests (1618) and their updates (1619)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.gitafter.nip34.common import (
    PULL_REQUEST,
    PULL_REQUEST_UPDATE,
    Nip34Error,
    _newest,
    _pr_revision_of,
    first_value,
    is_commit_id,
    short,
    tag_values,
)
from oa_node.plugins.gitafter.nip34.repo import RepoRef, TrajectoryRef, parse_trajectory

# --- pull requests (1618) and their updates (1619) ---------------------------------------------



def _check_tip(tip: str, clone: Sequence[str], no_clone: str) -> None:
    """A PR and its update both name a commit and where to fetch it from."""
    if not is_commit_id(tip):
        raise Nip34Error(f"PR tip {tip!r} is not a commit id")
    if not clone:
        raise Nip34Error(no_clone)


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
    _check_tip(tip, clone, "a pull request needs at least one clone URL where its tip can be "
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
    _check_tip(tip, clone, "a pull request update needs a clone URL (--clone-url)")
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


