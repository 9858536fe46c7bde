"""The git side of GitAfter, through GitPython's ``repo.git``: patches out, patches in.

Everything that changes a working tree (``apply``, ``checkout``) first checks the tree is
clean, remembers where HEAD was, and on any failure aborts ``git am``, returns to the
original branch and deletes the branch it created, so a failed apply leaves the repository
exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import git

from oa_node import gitsafe
from oa_node.errors import UserError
from oa_node.plugins.gitafter.nip34 import (
    CommitObject,
    Committer,
    PatchEvent,
    is_commit_id,
    parse_commit_object,
    short,
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
