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

The package splits by event family (``common`` for kinds and tag helpers, ``repo``,
``patches``, ``pulls``, ``status``, ``proposals``, ``issues``); callers import from here.
"""

from __future__ import annotations

from oa_node.plugins.gitafter.nip34.common import (
    COMMENT,
    ISSUE,
    ISSUE_STATUS_NAMES,
    MAX_PATCH_BYTES,
    PATCH,
    PULL_REQUEST,
    PULL_REQUEST_UPDATE,
    REPO,
    REVISION_MARKERS,
    STATE,
    STATUS_APPLIED,
    STATUS_CLOSED,
    STATUS_DRAFT,
    STATUS_KINDS,
    STATUS_NAMES,
    STATUS_OPEN,
    Nip34Error,
    first_value,
    hashtags,
    is_commit_id,
    marked_e,
    parse_coordinate,
    short,
    tag_values,
)
from oa_node.plugins.gitafter.nip34.issues import (
    Issue,
    comment_parent,
    comment_template,
    comments_for,
    issue_template,
    parse_issue,
)
from oa_node.plugins.gitafter.nip34.patches import (
    CommitObject,
    Committer,
    PatchEvent,
    is_proposal_root,
    parse_commit_object,
    parse_git_identity,
    parse_patch,
    patch_subject,
    patch_template,
    series,
    strip_patch_prefix,
)
from oa_node.plugins.gitafter.nip34.proposals import (
    Proposal,
    build_proposal,
    find_roots,
    proposal_root_of,
)
from oa_node.plugins.gitafter.nip34.pulls import (
    PullRequest,
    apply_updates,
    parse_pr,
    pr_template,
    pr_update_template,
)
from oa_node.plugins.gitafter.nip34.repo import (
    RepoRef,
    TrajectoryRef,
    check_trajectory_hash,
    parse_state,
    parse_trajectory,
    state_template,
)
from oa_node.plugins.gitafter.nip34.status import (
    Status,
    next_created_at,
    resolve_status,
    status_template,
    valid_statuses,
)

__all__ = [
    "COMMENT",
    "ISSUE",
    "ISSUE_STATUS_NAMES",
    "MAX_PATCH_BYTES",
    "PATCH",
    "PULL_REQUEST",
    "PULL_REQUEST_UPDATE",
    "REPO",
    "REVISION_MARKERS",
    "STATE",
    "STATUS_APPLIED",
    "STATUS_CLOSED",
    "STATUS_DRAFT",
    "STATUS_KINDS",
    "STATUS_NAMES",
    "STATUS_OPEN",
    "CommitObject",
    "Committer",
    "Issue",
    "Nip34Error",
    "PatchEvent",
    "Proposal",
    "PullRequest",
    "RepoRef",
    "Status",
    "TrajectoryRef",
    "apply_updates",
    "build_proposal",
    "check_trajectory_hash",
    "comment_parent",
    "comment_template",
    "comments_for",
    "find_roots",
    "first_value",
    "hashtags",
    "is_commit_id",
    "is_proposal_root",
    "issue_template",
    "marked_e",
    "next_created_at",
    "parse_commit_object",
    "parse_coordinate",
    "parse_git_identity",
    "parse_issue",
    "parse_patch",
    "parse_pr",
    "parse_state",
    "parse_trajectory",
    "patch_subject",
    "patch_template",
    "pr_template",
    "pr_update_template",
    "proposal_root_of",
    "resolve_status",
    "series",
    "short",
    "state_template",
    "status_template",
    "strip_patch_prefix",
    "tag_values",
    "valid_statuses",
]
