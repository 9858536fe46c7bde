"""The git side of GitAfter, through GitPython's ``repo.git``: reading the repository and
sending patches out. Bringing proposals in (apply, rebuild, checkout, merge checks) is in
:mod:`oa_node.plugins.gitafter.gitapply`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from oa_node.errors import UserError
from oa_node.plugins.gitafter.nip34 import (
    CommitObject,
    is_commit_id,
    parse_commit_object,
)

CONFIG_REPO = "nostr.repo"
CONFIG_RELAYS = "nostr.relays"

#: Keep git from asking for credentials or editors in the middle of a command.
_QUIET_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no"}

#: Seconds a network git command (push, fetch) may take before it is killed.
NETWORK_TIMEOUT = 300


class GitError(UserError):
    """A git operation that failed for a reason the user can act on."""


def _git_message(exc: git.GitCommandError) -> str:
    text = (exc.stderr or exc.stdout or "").strip()
    text = re.sub(r"^\s*stderr: '?|'?\s*$", "", text, flags=re.S)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:6]) or str(exc)


def open_repo(path: str | Path = ".") -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{Path(path).resolve()}: not inside a git repository") from None


# --- config: where later commands find the repository --------------------------------------------


def config_get(repo: git.Repo, key: str) -> str | None:
    try:
        value = repo.git.config("--local", "--get", key)
    except git.GitCommandError:
        return None
    return value.strip() or None


def config_set(repo: git.Repo, key: str, value: str) -> None:
    repo.git.config("--local", key, value)


# --- reading the repository ---------------------------------------------------------------------


def earliest_unique_commit(repo: git.Repo, rev: str = "HEAD") -> str:
    """The root commit of ``rev`` (the oldest one if history has several roots)."""
    try:
        roots = repo.git.rev_list("--max-parents=0", "--date-order", "--reverse", rev).split()
    except git.GitCommandError as exc:
        raise GitError(f"cannot find the first commit of {rev}: {_git_message(exc)} "
                       "(does the repository have a commit yet?)") from None
    if not roots:
        raise GitError("the repository has no commits yet")
    return roots[0]


#: Local branches never published in a state event: review branches ``apply`` and
#: ``checkout`` make.
PRIVATE_BRANCH_PREFIXES = ("pr/",)
CONFIG_STATE_BRANCHES = "nostr.state-branches"


def default_branch(repo: git.Repo) -> str | None:
    """The branch a state event's ``HEAD`` names: main or master, else the current branch
    (unless it is a review branch)."""
    local = set(repo.git.for_each_ref("--format=%(refname:short)", "refs/heads").split())
    for name in ("main", "master"):
        if name in local:
            return name
    me = current_branch(repo)
    return me if me and not me.startswith(PRIVATE_BRANCH_PREFIXES) else None


def refs_state(repo: git.Repo, branches: Sequence[str] | None = None, *,
               all_branches: bool = False) -> tuple[dict[str, str], str | None]:
    """What a 30618 event publishes: the chosen ``branches`` (default: those remembered in
    ``nostr.state-branches``, else the default branch; ``all_branches``: every branch),
    never a review branch (``pr/...``), and every tag (peeled to commits); and ``HEAD``
    naming the default branch."""
    refs: dict[str, str] = {}
    out = repo.git.for_each_ref("--format=%(refname) %(objectname) %(*objectname)",
                                "refs/heads", "refs/tags")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            refs[parts[0]] = parts[2] if len(parts) >= 3 and parts[2] else parts[1]
    refs = {k: v for k, v in refs.items() if is_commit_id(v)}
    default = default_branch(repo)
    if branches is None and not all_branches:
        stored = config_get(repo, CONFIG_STATE_BRANCHES)
        branches = stored.split() if stored else [default] if default else []
    wanted = None if all_branches else {f"refs/heads/{b}" for b in branches or ()}
    missing = sorted(w for w in wanted or () if w not in refs)
    if missing:
        raise GitError(f"no such branch: {', '.join(m[len('refs/heads/'):] for m in missing)}")
    refs = {k: v for k, v in refs.items()
            if k.startswith("refs/tags/") or (
                not k[len("refs/heads/"):].startswith(PRIVATE_BRANCH_PREFIXES)
                and (wanted is None or k in wanted))}
    head = f"refs/heads/{default}" if default and f"refs/heads/{default}" in refs else None
    return refs, head


def commit_object(repo: git.Repo, rev: str) -> CommitObject:
    sha = resolve_commit(repo, rev)
    return parse_commit_object(sha, repo.git.cat_file("commit", sha, strip_newline_in_stdout=False))


def resolve_commit(repo: git.Repo, rev: str) -> str:
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except git.GitCommandError:
        raise GitError(f"{rev!r} is not a commit in this repository") from None


def has_commit(repo: git.Repo, sha: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{sha}^{{commit}}")
    except git.GitCommandError:
        return False
    return True


def current_branch(repo: git.Repo) -> str | None:
    try:
        return repo.git.symbolic_ref("--short", "-q", "HEAD").strip() or None
    except git.GitCommandError:
        return None


def default_base(repo: git.Repo) -> str:
    """Where a contribution starts when no range is given: the upstream of the current
    branch, else ``origin/HEAD``, else the first of main/master that is not checked out."""
    candidates = ["@{upstream}", "origin/HEAD", "origin/main", "origin/master", "main", "master"]
    me = current_branch(repo)
    for cand in candidates:
        if cand == me:
            continue
        try:
            sha = repo.git.rev_parse("--verify", "--quiet", f"{cand}^{{commit}}").strip()
        except git.GitCommandError:
            continue
        if sha and sha != repo.head.commit.hexsha:
            return cand
    raise GitError("no revision range given and no upstream/main branch to compare with: "
                   "pass one, e.g. `oa-node git send HEAD~3` or `main..feature`")


def commits_in_range(repo: git.Repo, revision_range: str | None) -> list[str]:
    """Commit ids of a range, oldest first. A single revision ``X`` means ``X..HEAD``, as for
    ``git format-patch``."""
    if not repo.head.is_valid():
        name = current_branch(repo) or "HEAD"
        raise GitError(f"branch {name} has no commits yet: nothing to send (commit first, "
                       "or switch to the branch that holds the work)")
    rng = revision_range or f"{default_base(repo)}..HEAD"
    if ".." not in rng:
        rng = f"{rng}..HEAD"
    try:
        shas = repo.git.rev_list("--reverse", "--topo-order", rng).split()
        merges = repo.git.rev_list("--merges", rng).split()
    except git.GitCommandError as exc:
        raise GitError(f"bad revision range {rng!r}: {_git_message(exc)}") from None
    if not shas:
        raise GitError(f"no commits in {rng}")
    if merges:
        raise GitError(f"{rng} contains merge commits ({', '.join(s[:10] for s in merges)}), "
                       "which patches cannot carry: send a pull request instead (--pr)")
    return shas


def merge_base(repo: git.Repo, a: str, b: str) -> str | None:
    try:
        return repo.git.merge_base(a, b).strip() or None
    except git.GitCommandError:
        return None


@dataclass
class FormattedSeries:
    patches: list[str]  # one format-patch text per commit, oldest first
    cover_letter: str | None = None


def format_patches(repo: git.Repo, shas: Sequence[str], *, cover_letter: bool = False,
                   title: str = "", description: str = "") -> FormattedSeries:
    """``git format-patch`` for a linear run of commits (``--always`` keeps empty commits,
    binary diffs included), one text per commit, plus an optional cover letter."""
    first = commit_object(repo, shas[0])
    tip = shas[-1]
    rng = [f"{first.parents[0]}..{tip}"] if first.parents else ["--root", tip]
    with tempfile.TemporaryDirectory(prefix="oa-git-") as out:
        args = ["--always", "--binary", "-o", out, "--thread=shallow"]
        if cover_letter:
            args.append("--cover-letter")
        if len(shas) > 1 or cover_letter:
            args.append("--numbered")
        try:
            files = repo.git.format_patch(*args, *rng).split("\n")
        except git.GitCommandError as exc:
            raise GitError(f"git format-patch failed: {_git_message(exc)}") from None
        texts = []
        for f in files:
            if f.strip():
                # newline="": keep CRLF exactly (git am --keep-cr needs it to rebuild the blob)
                with open(f, encoding="utf-8", errors="surrogateescape", newline="") as fh:
                    texts.append(fh.read())
    cover = None
    if cover_letter:
        cover = texts.pop(0)
        cover = cover.replace("*** SUBJECT HERE ***", title or "(no title)")
        cover = cover.replace("*** BLURB HERE ***", description or "")
    if len(texts) != len(shas):
        raise GitError(f"git format-patch made {len(texts)} patches for {len(shas)} commits")
    # A patch must be valid UTF-8 to travel in a Nostr event.
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise GitError(f"patch for {shas[i][:10]} is not valid UTF-8 (a non-UTF-8 commit "
                           "message or file): send it as a pull request (--pr)") from None
    return FormattedSeries(texts, cover)


def push_ref(repo: git.Repo, url: str, sha: str, ref: str) -> None:
    try:
        repo.git.push(url, f"{sha}:{ref}", env=_QUIET_ENV, kill_after_timeout=NETWORK_TIMEOUT)
    except git.GitCommandError as exc:
        raise GitError(f"cannot push {sha[:10]} to {url} as {ref}: {_git_message(exc)}") from None




def branch_commits(repo: git.Repo, branch: str, upstream: str) -> list[str]:
    try:
        return repo.git.rev_list("--reverse", f"{upstream}..{branch}").split()
    except git.GitCommandError:
        return []


def branch_exists(repo: git.Repo, branch: str) -> bool:
    return bool(repo.git.branch("--list", branch).strip())


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit].rstrip("-") or "proposal"
