"""Executor and verifier of ``oa.repo_index.v1``.

Runs on the host, not in a container, on purpose: indexing only *reads* files (sha256,
``ast.parse`` without compiling or importing, TOML/JSON parsing), it never executes
repository code, and a container would add ~0.3 s and a Docker dependency to every index.
The exposure is bounded instead: the fetch is the hardened ``git_fetch``; symlinks are
never followed; files above a size cap are hashed but not parsed; every parser error
(including ``RecursionError``/``MemoryError`` from hostile nesting) becomes a per-file
error entry; the walk checks the cancel token and a deadline between files.

Each index is an artifact: the canonical JSON of its content, with its sha256 and size
(the ``digests`` artifact hash therefore equals ``tree_sha256``). When the context has an
``artifacts_dir`` the files are written there as ``<index_type>.json``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

from oa_node.canonical import CanonicalJSONError, canonical_bytes
from oa_node.executors.git_fetch import FetchError, check_url, fetch_repo
from oa_node.executors.hashing import (
    input_sha256,
    output_sha256,
    tree_digests,
    tree_sha256,
)
from oa_node.executors.jobtype import ExecContext, ExecutorSettings, Verdict, verify_start
from oa_node.executors.repo_index_schema import (
    FileDigest,
    IndexArtifact,
    RepoIndexRequest,
    RepoIndexResult,
)
from oa_node.executors.schema import Provenance, SchemaError

MAX_PARSE_BYTES = 1 << 20
_REQ_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


class _Stop(Exception):
    def __init__(self, status: str, message: str) -> None:
        self.status = status
        super().__init__(message)


def _read_small(root: Path, rel: str) -> bytes | None:
    path = root / rel
    try:
        st = path.lstat()
    except OSError:
        return None
    if not path.is_file() or path.is_symlink() or st.st_size > MAX_PARSE_BYTES:
        return None
    return path.read_bytes()


def python_symbols(source: bytes) -> list[dict[str, Any]]:
    """Top-level functions, classes, their methods and module-level names, with lines."""
    tree = ast.parse(source)
    out: list[dict[str, Any]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "async_function" if isinstance(node, ast.AsyncFunctionDef) else "function"
            out.append({"name": node.name, "kind": kind, "line": node.lineno})
        elif isinstance(node, ast.ClassDef):
            out.append({"name": node.name, "kind": "class", "line": node.lineno})
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.append({"name": f"{node.name}.{sub.name}", "kind": "method",
                                "line": sub.lineno})
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    out.append({"name": t.id, "kind": "variable", "line": node.lineno})
    return out


def symbols_index(root: Path, digests: list[dict[str, Any]], check: Any) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    for d in digests:
        if not d["path"].endswith(".py"):
            continue
        check()
        data = _read_small(root, d["path"])
        if data is None:
            files.append({"path": d["path"], "error": "not parsed (larger than 1 MiB)"})
            continue
        try:
            files.append({"path": d["path"], "symbols": python_symbols(data)})
        except SyntaxError as exc:
            files.append({"path": d["path"], "error": f"syntax error at line {exc.lineno}"})
        except (RecursionError, MemoryError, ValueError) as exc:
            files.append({"path": d["path"], "error": f"not parsed: {type(exc).__name__}"})
    return files


def _pep508(spec: str) -> tuple[str, str]:
    m = _REQ_LINE.match(spec)
    if not m:
        return spec.strip(), ""
    return m.group(1).lower().replace("_", "-"), (m.group(2) or "") + m.group(3).strip()


def dependencies_index(root: Path, digests: list[dict[str, Any]], check: Any
                       ) -> list[dict[str, Any]]:
    """Declared dependencies from pyproject.toml, requirements*.txt and package.json."""
    deps: list[dict[str, Any]] = []

    def add(file: str, ecosystem: str, scope: str, name: str, spec: str) -> None:
        deps.append({"file": file, "ecosystem": ecosystem, "scope": scope, "name": name,
                     "spec": spec})

    for d in digests:
        path, base = d["path"], d["path"].rsplit("/", 1)[-1]
        if base not in ("pyproject.toml", "package.json") and not (
                base.startswith("requirements") and base.endswith(".txt")):
            continue
        check()
        data = _read_small(root, path)
        if data is None:
            continue
        try:
            text = data.decode("utf-8")
            if base == "pyproject.toml":
                doc = tomllib.loads(text)
                project = doc.get("project", {})
                for spec in project.get("dependencies", []) or []:
                    add(path, "pypi", "runtime", *_pep508(str(spec)))
                for extra, specs in (project.get("optional-dependencies") or {}).items():
                    for spec in specs or []:
                        add(path, "pypi", f"extra:{extra}", *_pep508(str(spec)))
                poetry = doc.get("tool", {}).get("poetry", {})
                for name, spec in (poetry.get("dependencies") or {}).items():
                    if name.lower() != "python":
                        add(path, "pypi", "runtime", name.lower(), json.dumps(spec)
                            if not isinstance(spec, str) else spec)
            elif base == "package.json":
                doc = json.loads(text)
                for scope in ("dependencies", "devDependencies", "peerDependencies",
                              "optionalDependencies"):
                    for name, spec in (doc.get(scope) or {}).items():
                        add(path, "npm", scope, str(name), str(spec))
            else:
                for line in text.splitlines():
                    line = line.split(" #", 1)[0].strip()
                    if not line or line.startswith(("#", "-")):
                        continue
                    add(path, "pypi", "runtime", *_pep508(line))
        except (ValueError, TypeError, AttributeError, tomllib.TOMLDecodeError,
                RecursionError) as exc:
            deps.append({"file": path, "error": f"not parsed: {type(exc).__name__}: {exc}"[:300]})
    deps.sort(key=lambda e: (e["file"], e.get("scope", ""), e.get("name", "")))
    return deps


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
    started, t0 = time.time(), time.monotonic()
    if not isinstance(request, RepoIndexRequest):
        try:
            request = RepoIndexRequest.from_dict(request)
        except SchemaError as exc:
            return _finish(RepoIndexResult(status="error", error=f"invalid request: {exc}"),
                           request, ctx, started, t0)
    job_dir = ctx.settings.workdir / ctx.job_id
    try:
        result = _index(request, ctx, job_dir, t0)
    except _Stop as stop:
        result = RepoIndexResult(status=stop.status, error=str(stop))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    return _finish(result, request, ctx, started, t0)


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
                              timeout_secs=s.fetch_timeout_secs)
    except (FetchError, OSError) as exc:
        raise _Stop("error", str(exc)) from None
    check()
    root = checkout.path
    digests = tree_digests(root)
    tree = tree_sha256(digests)
    indexes: dict[str, Any] = {}
    for kind in req.index_types:
        check()
        if kind == "digests":
            indexes[kind] = digests
        elif kind == "symbols":
            indexes[kind] = symbols_index(root, digests, check)
        elif kind == "dependencies":
            indexes[kind] = dependencies_index(root, digests, check)
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
    return RepoIndexResult(
        tree_sha256=tree,
        digests=tuple(FileDigest(**d) for d in digests) if "digests" in req.index_types else (),
        artifacts=tuple(artifacts),
        status=status,
        error=error,
        commit=checkout.commit,
    )


def _finish(result: RepoIndexResult, request: Any, ctx: ExecContext, started: float,
            t0: float) -> RepoIndexResult:
    try:
        in_hash = input_sha256(request)
    except (CanonicalJSONError, TypeError, AttributeError):
        in_hash = "0" * 64
    body = result.to_dict()
    body["provenance"] = Provenance(
        provider_pubkey=ctx.provider_pubkey, input_sha256=in_hash,
        output_sha256=output_sha256(body), executed_at=int(started),
        duration_ms=int((time.monotonic() - t0) * 1000),
    ).to_dict()
    return RepoIndexResult.from_dict(body)


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
        digest_art = [a for a in res.artifacts if a.index_type == "digests"]
        if digest_art and digest_art[0].sha256 != res.tree_sha256:
            problems.append("the digests artifact hash differs from tree_sha256")
        paths = [d.path for d in res.digests]
        if paths != sorted(paths) or len(set(paths)) != len(paths):
            problems.append("digests are not sorted by path or contain duplicates")
    return Verdict(ok=not problems, problems=tuple(problems), verification_digest=digest)
