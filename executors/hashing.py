"""The hashes buyers and providers compare: input, output, repo tree, verification digest.

All are hex sha256 over canonical JSON, so any implementation can recompute them.
- ``input_sha256``: the request document exactly as sent.
- ``output_sha256``: the result document without its ``provenance``.
- ``tree_sha256``: the digest list ``[{path, sha256, bytes}]`` sorted by path.
- ``verification_digest``: what must agree between honest providers of the same job:
  status, exit codes, artifact and index hashes. Timings, hostnames and raw logs (stdout and
  stderr differ with timing, e.g. "passed in 0.12s") are left out. It names no provider,
  so honest providers of one job agree on it, and the buyer computes it itself.
- ``attestation``: sha256(provider key (32 bytes) || verification digest (32 bytes)), which a
  provider puts in its result's provenance: the result's claim of *who* reached the digest,
  checked against the key that signed the result event. A copy re-signed under another key
  with the original's attestation fails; recomputing it needs the plaintext result.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oa_node.canonical import canonical_hash

READ_CHUNK = 1 << 20


def _doc(obj: Any) -> Mapping[str, Any]:
    """The document a model was parsed from, else its normalised ``to_dict()``."""
    if isinstance(obj, Mapping):
        return obj
    raw = getattr(obj, "raw", None)
    return raw if raw is not None else obj.to_dict()


def input_sha256(request: Any) -> str:
    """Canonical hash of the request (a dict, or a model: the document it came from)."""
    return canonical_hash(dict(_doc(request)))


def output_sha256(result: Any) -> str:
    """Canonical hash of the result without ``provenance`` (which carries this hash)."""
    doc = {k: v for k, v in _doc(result).items() if k != "provenance"}
    return canonical_hash(doc)


def tree_sha256(digests: Iterable[Any]) -> str:
    """sha256 of the canonical JSON of ``[{path, sha256, bytes}]`` sorted by path."""
    entries = [d if isinstance(d, Mapping) else d.to_dict() for d in digests]
    rows = sorted(({"path": e["path"], "sha256": e["sha256"], "bytes": e["bytes"]}
                   for e in entries), key=lambda e: e["path"])
    return canonical_hash(rows)


def file_sha256(path: Path | str) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks (never whole into memory)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def tree_digests(root: Path | str, *, exclude: tuple[str, ...] = (".git",)) -> list[dict[str, Any]]:
    """``[{path, sha256, bytes}]`` for every regular file under ``root``, sorted by path.

    Symlinks are neither followed nor listed (a link could point anywhere on the host);
    top-level names in ``exclude`` (the ``.git`` folder) are skipped.
    """
    root = os.fspath(root)
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(full).st_mode):
                continue
            digest, size = file_sha256(full)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            out.append({"path": rel, "sha256": digest, "bytes": size})
    out.sort(key=lambda e: e["path"])
    return out


def verification_digest(result: Any) -> str:
    """The reproducible part of a result of either built-in schema, hashed canonically.

    sandbox_run: status and per command (cmd, exit_code, timed_out), plus artifacts
    (path, sha256). repo_index: status, tree hash, index artifacts (index_type, sha256).
    """
    doc = _doc(result)
    if "runs" in doc or "env_info" in doc:
        core: dict[str, Any] = {
            "schema": "oa.sandbox_run.v1",
            "status": doc.get("status"),
            "runs": [{"cmd": r.get("cmd"), "exit_code": r.get("exit_code"),
                      "timed_out": bool(r.get("timed_out", False))}
                     for r in doc.get("runs", [])],
            "artifacts": sorted(({"path": a.get("path"), "sha256": a.get("sha256")}
                                 for a in doc.get("artifacts", [])),
                                key=lambda a: str(a["path"])),
        }
    else:
        core = {
            "schema": "oa.repo_index.v1",
            "status": doc.get("status", "success"),
            "tree_sha256": doc.get("tree_sha256"),
            "artifacts": sorted(({"index_type": a.get("index_type"), "sha256": a.get("sha256")}
                                 for a in doc.get("artifacts", [])),
                                key=lambda a: str(a["index_type"])),
        }
    return canonical_hash(core)


def attestation(provider_pubkey: str, digest: str) -> str:
    """The key-bound attestation of a verification digest (see the module docstring);
    ``provider_pubkey`` may be empty (a local run that names no provider)."""
    return hashlib.sha256(bytes.fromhex(provider_pubkey) + bytes.fromhex(digest)).hexdigest()
