"""Bringing proposals into a repository: apply a patch series (rebuilding the proposer's
exact commits where it can), fetch and check out a PR's tip, and tell whether a proposal's
commits already reached a branch.

Everything that changes a working tree (``apply``, ``checkout``) first checks the tree is
clean, remembers where HEAD was, and on any failure aborts ``git am``, returns to the
original branch and deletes the branch it created, so a failed apply leaves the repository
exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import git

from oa_node import gitsafe
from oa_node.plugins.gitafter.gitops import (
    _QUIET_ENV,
    NETWORK_TIMEOUT,
    GitError,
    _git_message,
    current_branch,
    has_commit,
    resolve_commit,
)
from oa_node.plugins.gitafter.nip34 import (
    Committer,
    PatchEvent,
    short,
)

# --- bringing proposals in ----------------------------------------------------------------------


@dataclass
class CommitCheck:
    expected: str | None
    actual: str
    ok: bool | None  # None: nothing to compare (no commit tag, or applied on another base)
    differs: str = ""  # when not ok: the fields that could not be rebuilt


@dataclass
class ApplyResult:
    branch: str
    base: str
    commits: list[str] = field(default_factory=list)
    checks: list[CommitCheck] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


class _Restore:
    """Remembers HEAD and puts it back, deleting a branch made along the way."""

    def __init__(self, repo: git.Repo) -> None:
        self.repo = repo
        self.branch = current_branch(repo)
        self.head = repo.head.commit.hexsha if repo.head.is_valid() else None
        self.created: str | None = None
        self.moved: tuple[str, str] | None = None  # (branch, old sha) of a forced branch

    def restore(self) -> None:
        g = self.repo.git
        if (Path(self.repo.git_dir) / "rebase-apply").exists():
            try:
                g.am("--abort")
            except git.GitCommandError:
                pass
        if self.branch and self.head:
            # the branch may hold commits made before the failure (--here): put it back
            # where it was, not only check out its name
            g.update_ref(f"refs/heads/{self.branch}", self.head)
        target = self.branch or self.head
        if target:
            g.checkout("--force", "--quiet", target)
        if self.created and self.created != self.branch:
            try:
                g.branch("-D", self.created)
            except git.GitCommandError:
                pass
        if self.moved:
            g.update_ref(f"refs/heads/{self.moved[0]}", self.moved[1])


def ensure_clean(repo: git.Repo) -> None:
    if (Path(repo.git_dir) / "rebase-apply").exists():
        raise GitError("a `git am` or rebase is in progress: finish or abort it first")
    if repo.is_dirty(index=True, working_tree=True, untracked_files=False):
        raise GitError("the working tree has uncommitted changes: commit or stash them first")


def _start_branch(repo: git.Repo, st: _Restore, branch: str, base: str, force: bool) -> None:
    g = repo.git
    exists = bool(g.branch("--list", branch).strip())
    if exists and not force:
        raise GitError(f"branch {branch!r} already exists: delete it, or pass --force to "
                       "replace it")
    if exists:
        if st.branch == branch:
            raise GitError(f"branch {branch!r} is checked out: switch away first")
        st.moved = (branch, resolve_commit(repo, branch))
        g.checkout("--quiet", "-B", branch, base)
    else:
        g.checkout("--quiet", "-b", branch, base)
        st.created = branch


def _has_diff(content: str) -> bool:
    return any(ln.startswith(("diff --git ", "GIT binary patch")) for ln in content.split("\n"))


def am_input(content: str) -> str:
    """The text ``git am`` should read for a patch. An empty commit's patch has no diff, so
    what follows its message is no patch but e-mail trailer that ``git am`` would keep in
    the message (git format-patch's ``-- `` signature) or refuse as an invalid patch
    (libgit2's, as ngit sends it: ``---`` then ``--``/``libgit2 <version>``): cut it."""
    if _has_diff(content):
        return content
    header, sep, rest = content.partition("\n\n")
    lines = rest.split("\n")
    cut = next((i for i, ln in enumerate(lines) if ln == "---"), None)
    if cut is None:
        cut = next((i for i in range(len(lines) - 1, -1, -1) if lines[i] == "-- "), None)
    if cut is None:
        return content
    return header + sep + "".join(ln + "\n" for ln in lines[:cut])


def _am(repo: git.Repo, patch: PatchEvent, committer: Committer | None) -> None:
    env = dict(_QUIET_ENV)
    if committer is not None:
        env.update(GIT_COMMITTER_NAME=committer.name, GIT_COMMITTER_EMAIL=committer.email,
                   GIT_COMMITTER_DATE=committer.git_date)
    fd, path = tempfile.mkstemp(prefix="oa-patch-", suffix=".patch")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(am_input(patch.event.content))
        repo.git.am("--keep-cr", "--empty=keep", "--quiet", path, env=env)
    finally:
        os.unlink(path)


def _identity_line(who: Committer) -> bytes | None:
    """``Name <email> 1700000000 +0100`` for a commit header; None for a name or e-mail
    that cannot be in one (a line break or angle bracket would forge other headers)."""
    if any(c in who.name + who.email for c in "<>\n\0"):
        return None
    return f"{who.name} <{who.email}> {who.git_date}".encode()


def _object_id(raw: bytes, length: int) -> str:
    algo = hashlib.sha1 if length == 40 else hashlib.sha256
    return algo(b"commit %d\0" % len(raw) + raw).hexdigest()


def _commit_bytes(tree: bytes, parents: list[bytes], author: bytes, committer: bytes,
                  extra: list[bytes], pgp_sig: str, message: bytes) -> bytes:
    lines = [b"tree " + tree, *(b"parent " + p for p in parents), b"author " + author,
             b"committer " + committer, *extra]
    if pgp_sig:
        sig = pgp_sig.encode().split(b"\n")
        lines.append(b"gpgsig " + sig[0])
        lines += [b" " + ln for ln in sig[1:]]
    return b"\n".join(lines) + b"\n\n" + message


def reproduce_commit(repo: git.Repo, sha: str, patch: PatchEvent) -> tuple[str, str]:
    """Rebuild commit ``sha`` (what ``git am`` made of ``patch``) as the proposer's commit.

    ``git am`` rebuilds the tree and the author and message as the e-mail carries them;
    what an e-mail cannot carry comes from the tags: the committer (``committer``), the
    signature (``commit-pgp-sig``), the exact message (``description``: a message git am
    would reflow or cut) and author (``author``). A candidate is kept only when its id is
    the ``commit`` tag's, so a tag can never put anything but the proposer's exact commit
    into the repository. Returns the commit to keep and, when it is not the proposer's,
    which fields could not be rebuilt."""
    want = patch.commit
    if want is None or sha == want:
        return sha, ""
    raw = repo.git.cat_file("commit", sha, stdout_as_string=False,
                            strip_newline_in_stdout=False)
    header, _, am_message = raw.partition(b"\n\n")
    tree, parents, author, committer, extra = b"", [], b"", b"", []
    for line in header.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value
        elif key == b"parent":
            parents.append(value)
        elif key == b"author":
            author = value
        elif key == b"committer":
            committer = value
        elif key == b"encoding":
            extra.append(line)
    messages = [(am_message, extra)]
    if patch.description is not None and patch.description.encode() != am_message:
        messages.append((patch.description.encode(), extra))
    if patch.encoding and not extra:
        # git format-patch made the message UTF-8; the commit held it in this encoding
        try:
            recoded = am_message.decode("utf-8").encode(patch.encoding)
        except (LookupError, UnicodeError):
            pass
        else:
            messages.append((recoded, [b"encoding " + patch.encoding.encode()]))
    authors = [author]
    tagged = _identity_line(patch.author) if patch.author is not None else None
    if tagged is not None and tagged != author:
        authors.append(tagged)
    if patch.committer is not None:
        committer = _identity_line(patch.committer) or committer
    # a signature as extracted by libgit2 (ngit) may end in a newline the header has not
    signatures = list(dict.fromkeys([patch.pgp_sig, patch.pgp_sig.rstrip("\n")]))
    for message, headers in messages:
        for who in authors:
            for sig in signatures:
                new = _commit_bytes(tree, parents, who, committer, headers, sig, message)
                if _object_id(new, len(want)) == want:
                    return _write_commit(repo, new), ""
    if patch.committer is None:
        return sha, "committer (the patch has no 'committer' tag)"
    if patch.description is None or patch.author is None:
        return sha, "message, author or tree (as the patch text carries them)"
    return sha, "tree (its 'description', 'author' and 'committer' tags do not complete it)"


def _write_commit(repo: git.Repo, new: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="oa-commit-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(new)
        return repo.git.hash_object("-t", "commit", "-w", path).strip()
    finally:
        os.unlink(path)


def apply_series(repo: git.Repo, patches: Sequence[PatchEvent], branch: str | None, *,
                 onto: str | None = None, force: bool = False,
                 verify: bool = True) -> ApplyResult:
    """Apply ``patches`` with ``git am`` on a new ``branch`` (or the current branch when
    ``branch`` is None). The base is ``onto``, else the first patch's parent commit when this
    repository has it, else HEAD. Where a patch names its commit and was applied on its own
    parent, the resulting id must match (unless ``verify`` is off); any failure restores the
    repository as it was."""
    commits = [p for p in patches if not p.is_cover_letter]
    if not commits:
        raise GitError("the proposal has no patches to apply")
    ensure_clean(repo)
    st = _Restore(repo)
    if onto is not None:
        base = resolve_commit(repo, onto)
    elif branch is not None and commits[0].parent_commit and has_commit(
            repo, commits[0].parent_commit):
        base = commits[0].parent_commit
    else:
        if not repo.head.is_valid():
            raise GitError(f"branch {st.branch or 'HEAD'} has no commits yet, so there is "
                           "nothing to apply the patches onto: pass --onto REV")
        base = repo.head.commit.hexsha
    result = ApplyResult(branch=branch or (st.branch or "HEAD"), base=base)
    try:
        if branch is not None:
            _start_branch(repo, st, branch, base, force)
        for i, patch in enumerate(commits):
            parent_before = repo.head.commit.hexsha
            where = f"patch {i + 1}/{len(commits)} ({short(patch.id)}: " \
                    f"{patch.subject[:60]})"
            try:
                _am(repo, patch, patch.committer)
            except git.GitCommandError as exc:
                raise GitError(f"{where} does not apply: {_git_message(exc)}") from None
            actual = repo.head.commit.hexsha
            comparable = patch.commit is not None and patch.parent_commit == parent_before
            why = ""
            if comparable:
                rebuilt, why = reproduce_commit(repo, actual, patch)
                if rebuilt != actual:
                    repo.git.update_ref("HEAD", rebuilt)
                    actual = rebuilt
            ok = (actual == patch.commit) if comparable else None
            if ok is False and verify:
                raise GitError(
                    f"{where} applied as commit {actual[:12]} but the proposal says "
                    f"{patch.commit[:12] if patch.commit else '?'}: its {why} differs "
                    "(pass --no-verify to keep it anyway)")
            result.commits.append(actual)
            result.checks.append(CommitCheck(patch.commit, actual, ok, why if ok is False else ""))
    except BaseException:
        st.restore()
        raise
    return result


#: Transports ``checkout`` fetches a pull request's tip over unless the user allows more.
DEFAULT_FETCH_SCHEMES = ("https", "ssh", "git")


def fetch_tip(repo: git.Repo, urls: Sequence[str], tip: str, refs: Sequence[str], *,
              allowed_schemes: Sequence[str] = DEFAULT_FETCH_SCHEMES) -> str:
    """Make ``tip`` present locally by fetching from ``urls``: first the ``refs/nostr/<id>``
    refs a PR is pushed to, then the commit itself; returns the URL that had it.

    The URLs come from a stranger's event: each must pass :func:`oa_node.gitsafe.check_url`
    (an option-like or ``ext::`` URL would run a program), is passed after ``--``, and git
    runs with its own transport allow-list, so nothing but a fetch can happen."""
    if has_commit(repo, tip):
        return "(local)"
    allowed = tuple(allowed_schemes)
    errors: list[str] = []
    usable: list[str] = []
    for url in urls:
        try:
            gitsafe.check_url(url, allowed)
        except gitsafe.UnsafeURL as exc:
            errors.append(str(exc))
            continue
        usable.append(url)
    env = {**_QUIET_ENV, **gitsafe.protocol_env(allowed)}
    config = gitsafe.protocol_config(allowed)
    for url in usable:
        for what in [*refs, tip]:
            try:
                repo.git.execute(["git", *config, "fetch", "--quiet", "--no-tags",
                                  "--no-recurse-submodules", "--", url, what],
                                 env=env, kill_after_timeout=NETWORK_TIMEOUT)
            except git.GitCommandError as exc:
                errors.append(f"{url} {what}: {_git_message(exc)}")
                continue
            if has_commit(repo, tip):
                return url
    detail = "; ".join(errors[-3:])
    shown = ", ".join(gitsafe.shown(u, redact=True) for u in urls)
    raise GitError(f"cannot fetch commit {tip[:12]} from {shown}"
                   + (f" ({detail})" if detail else ""))


def checkout_commit(repo: git.Repo, tip: str, branch: str, *, force: bool = False) -> str:
    """Create ``branch`` at ``tip`` and switch to it; restores on failure."""
    ensure_clean(repo)
    st = _Restore(repo)
    try:
        _start_branch(repo, st, branch, tip, force)
    except BaseException:
        st.restore()
        raise
    return branch


def ancestors_in(repo: git.Repo, shas: Sequence[str], head: str = "HEAD") -> bool:
    """Whether every commit in ``shas`` is reachable from ``head``."""
    for sha in shas:
        if not has_commit(repo, sha):
            return False
        try:
            repo.git.merge_base("--is-ancestor", sha, head)
        except git.GitCommandError:
            return False
    return True


#: How far back in the target branch ``merge`` looks for a proposal's changes by patch-id.
PATCH_ID_DEPTH = 1000


def _patch_ids(repo: git.Repo, text: str) -> list[tuple[str, str]]:
    """``git patch-id --stable`` of ``text`` (log -p or e-mail patches): (patch-id, id)."""
    with tempfile.TemporaryFile() as f:
        f.write(text.encode("utf-8", "surrogateescape"))
        f.seek(0)
        try:
            out = repo.git.execute(["git", "patch-id", "--stable"], istream=f)
        except git.GitCommandError:
            return []
    pairs = [ln.split() for ln in str(out).splitlines()]
    return [(p[0], p[1]) for p in pairs if len(p) == 2]


def applied_by_patch_id(repo: git.Repo, patches: Sequence[str], target: str) -> list[str]:
    """The commits of ``target`` (its last :data:`PATCH_ID_DEPTH`) that carry the same
    changes as ``patches`` (patch texts, in order), found by ``git patch-id``: how a series
    applied on another base, or rebased, is recognised. Empty when any patch with a diff
    has no such commit (patches without a diff, empty commits, are not looked for)."""
    try:
        log = repo.git.log("-p", "--no-merges", "--format=commit %H", f"-n{PATCH_ID_DEPTH}",
                           target)
    except git.GitCommandError:
        return []
    in_target: dict[str, str] = {}
    for pid, sha in _patch_ids(repo, log):
        in_target.setdefault(pid, sha)
    found: list[str] = []
    for text in patches:
        ids = _patch_ids(repo, text)
        if not ids:
            continue  # no diff: an empty commit
        sha = in_target.get(ids[0][0])
        if sha is None:
            return []
        found.append(sha)
    return found
