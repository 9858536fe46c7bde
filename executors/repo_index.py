"""Executor and verifier of ``oa.repo_index.v1``.

Runs on the host, not in a container: indexing only *reads* files (sha256, ``ast.parse``
without compiling or importing, TOML/JSON parsing), it never executes repository code, and
a container would add a Docker dependency and ~0.3 s to every index. The exposure is
bounded instead: the fetch is the hardened ``git_fetch`` (bytes received, file count and
checkout size capped before anything is written to the work tree, see
:class:`~oa_node.executors.git_fetch.FetchLimits`); hashing streams each file; symlinks are
never followed; parsing runs in a child Python process with ``RLIMIT_AS``/``RLIMIT_CPU``
and a per-file time limit (:mod:`oa_node.executors.repo_parse`), files above 1 MiB are
hashed but not parsed, and a file that exhausts a limit (or crashes the parser) gets an
error entry instead of a symbol list; the job's deadline and cancel token bound the rest.

Each index is an artifact: the canonical JSON of its content, with its sha256 and size
(the ``digests`` artifact hash therefore equals ``tree_sha256``). When the context has an
``artifacts_dir`` the files are written there as ``<index_type>.json``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from oa_node.canonical import CanonicalJSONError, canonical_bytes
from oa_node.executors.git_fetch import FetchError, check_url, fetch_repo
from oa_node.executors.hashing import (
    tree_digests,
    tree_sha256,
)
from oa_node.executors.jobtype import (
    ExecContext,
    ExecutorSettings,
    Verdict,
    execute_with_provenance,
    verify_start,
)
from oa_node.executors.repo_index_schema import (
    FileDigest,
    IndexArtifact,
    RepoIndexRequest,
    RepoIndexResult,
)
from oa_node.executors.repo_parse import (
    ParseLimitError,
    is_dependency_file,
    parse_files,
)


class _Stop(Exception):
    def __init__(self, status: str, message: str) -> None:
        self.status = status
        super().__init__(message)


def admit_repo_index(req: RepoIndexRequest, s: ExecutorSettings) -> str | None:
    """Why this provider refuses ``req`` before any work (a URL scheme it does not allow);
    ``None`` when it takes it."""
    try:
        check_url(req.repo_url, s.allowed_url_schemes)
    except FetchError as exc:
        return str(exc)
    return None


def execute_repo_index(request: RepoIndexRequest | dict[str, Any],
                       ctx: ExecContext) -> RepoIndexResult:
    """Index one repository; always returns a result (``status`` says how it went)."""
    return execute_with_provenance(
        request, ctx, RepoIndexRequest, _index_in_job_dir,
        lambda message: RepoIndexResult(status="error", error=message))


def _index_in_job_dir(request: RepoIndexRequest, ctx: ExecContext) -> RepoIndexResult:
    """Index in a fresh per-job folder, always removed; a stop is a result, not an error."""
    job_dir = ctx.settings.workdir / ctx.job_id
    try:
        return _index(request, ctx, job_dir, time.monotonic())
    except _Stop as stop:
        return RepoIndexResult(status=stop.status, error=str(stop))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _index(req: RepoIndexRequest, ctx: ExecContext, job_dir: Path, t0: float
           ) -> RepoIndexResult:
    s = ctx.settings
    deadline = t0 + s.max_limits.timeout_secs + s.fetch_timeout_secs

    def check() -> None:
        if ctx.cancel.cancelled:
            raise _Stop("cancelled", "the job was cancelled")
        if time.monotonic() > deadline:
            raise _Stop("timeout", "indexing took longer than the time limit")

    check()
    try:
        checkout = fetch_repo(req.repo_url, req.git_ref, job_dir / "repo",
                              allowed_schemes=s.allowed_url_schemes,
                              timeout_secs=s.fetch_timeout_secs,
                              limits=s.fetch_limits(), cancel=ctx.cancel)
    except (FetchError, OSError) as exc:
        check()
        raise _Stop("error", str(exc)) from None
    check()
    root = checkout.path
    digests = tree_digests(root)
    tree = tree_sha256(digests)
    check()
    # parsing happens in a child process with memory, CPU and per-file time limits
    tasks = [("symbols", d["path"]) for d in digests
             if "symbols" in req.index_types and d["path"].endswith(".py")]
    tasks += [("dependencies", d["path"]) for d in digests
              if "dependencies" in req.index_types and is_dependency_file(d["path"])]
    try:
        parsed = parse_files(root, tasks, deadline=deadline, memory_mb=s.index_memory_mb,
                             check=check)
    except ParseLimitError as exc:
        raise _Stop("error", str(exc)) from None
    indexes: dict[str, Any] = {}
    for kind in req.index_types:
        if kind == "digests":
            indexes[kind] = digests
        elif kind == "symbols":
            indexes[kind] = [out for (k, _), out in zip(tasks, parsed, strict=True)
                             if k == "symbols"]
        elif kind == "dependencies":
            deps = [d for (k, _), out in zip(tasks, parsed, strict=True)
                    if k == "dependencies" for d in out]
            deps.sort(key=lambda e: (e["file"], e.get("scope", ""), e.get("name", "")))
            indexes[kind] = deps
    artifacts = []
    for kind, content in indexes.items():
        try:
            data = canonical_bytes(content)
        except CanonicalJSONError as exc:
            raise _Stop("error", f"{kind} index is not serialisable: {exc}") from None
        artifacts.append(IndexArtifact(index_type=kind, sha256=hashlib.sha256(data).hexdigest(),
                                       bytes=len(data)))
        if ctx.artifacts_dir is not None:
            ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
            (ctx.artifacts_dir / f"{kind}.json").write_bytes(data)
    status, error = "success", None
    if req.expected_tree_sha256 and req.expected_tree_sha256 != tree:
        status = "error"
        error = f"tree_sha256 {tree} differs from expected_tree_sha256 {req.expected_tree_sha256}"
    delivered = {k: tuple(indexes[k]) for k in ("symbols", "dependencies") if k in indexes}
    return RepoIndexResult(
        tree_sha256=tree,
        digests=tuple(FileDigest(**d) for d in digests) if "digests" in req.index_types else (),
        artifacts=tuple(artifacts),
        status=status,
        error=error,
        commit=checkout.commit,
        **delivered,
    )


def verify_repo_index(request: RepoIndexRequest | dict[str, Any],
                      result: RepoIndexResult | dict[str, Any]) -> Verdict:
    """Objective checks: hashes, tree hash recomputed from the digests, expected tree."""
    start = verify_start(request, result, RepoIndexRequest, RepoIndexResult)
    if isinstance(start, Verdict):
        return start
    req, res, problems, digest = start
    if res.status != "success":
        problems.append(f"status {res.status}: the repository was not indexed, there is no "
                        "work to pay for")
    elif not res.tree_sha256 or ("digests" in req.index_types and not res.digests):
        problems.append("status success without a tree hash or file digests: no work is shown")
    if res.status == "success":
        if res.digests and tree_sha256(res.digests) != res.tree_sha256:
            problems.append("tree_sha256 is not the hash of the reported digests")
        if req.expected_tree_sha256 and res.tree_sha256 != req.expected_tree_sha256:
            problems.append("tree_sha256 differs from expected_tree_sha256")
        kinds = [a.index_type for a in res.artifacts]
        if sorted(kinds) != sorted(req.index_types):
            problems.append(f"index artifacts {kinds} do not match index_types "
                            f"{list(req.index_types)}")
        for kind in ("symbols", "dependencies"):
            problems += _delivered_problems(kind, req.index_types, res)
        digest_art = [a for a in res.artifacts if a.index_type == "digests"]
        if digest_art and digest_art[0].sha256 != res.tree_sha256:
            problems.append("the digests artifact hash differs from tree_sha256")
        paths = [d.path for d in res.digests]
        if paths != sorted(paths) or len(set(paths)) != len(paths):
            problems.append("digests are not sorted by path or contain duplicates")
    return Verdict(ok=not problems, problems=tuple(problems), verification_digest=digest)


def _delivered_problems(kind: str, requested: tuple[str, ...], res: RepoIndexResult
                        ) -> list[str]:
    """A requested index must be in the result, and be what its artifact hash says."""
    delivered = getattr(res, kind)
    if kind not in requested:
        return [f"{kind} delivered but not requested"] if delivered is not None else []
    if delivered is None:
        return [f"{kind} requested but not delivered in the result"]
    art = [a for a in res.artifacts if a.index_type == kind]
    try:
        data = canonical_bytes(list(delivered))
    except CanonicalJSONError as exc:
        return [f"{kind} index is not canonical JSON: {exc}"]
    if not art or art[0].sha256 != hashlib.sha256(data).hexdigest():
        return [f"the {kind} delivered differ from the hash of its artifact"]
    return []
