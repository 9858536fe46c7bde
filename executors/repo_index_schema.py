"""``oa.repo_index.v1``: index a repository at a ref (digests, Python symbols, dependencies).

Request and result: the models below. oa-node additions to the result (optional):
``status`` (success | error | timeout | cancelled), ``error``, ``commit`` (the commit id
that ``git_ref`` resolved to), and ``symbols`` / ``dependencies``: the index itself when
requested (the artifact of that type is the SHA-256 of its canonical JSON, so a buyer
checks what it received against the hash the result commits to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oa_node.executors.schema import (
    Obj,
    Provenance,
    SchemaError,
    Verification,
    check_str,
    git_ref,
    relative_path,
    repo_url,
    sha256_hex,
)

SCHEMA_ID = "oa.repo_index.v1"
INDEX_TYPES = ("digests", "symbols", "dependencies")
STATUSES = ("success", "error", "timeout", "cancelled")


@dataclass(frozen=True)
class RepoIndexRequest:
    repo_url: str
    git_ref: str = "HEAD"
    expected_tree_sha256: str | None = None
    index_types: tuple[str, ...] = ("digests",)
    verification: Verification = field(default_factory=Verification)
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    FIELDS = ("repo_url", "git_ref", "expected_tree_sha256", "index_types", "verification")

    @classmethod
    def from_dict(cls, value: Any, path: str = "") -> RepoIndexRequest:
        o = Obj(value, path, cls.FIELDS)
        expected = o.raw("expected_tree_sha256", None)
        if expected is not None:
            expected = sha256_hex(expected, o.at("expected_tree_sha256"))
        types = o.list("index_types", lambda v, p: check_str(v, p, choices=INDEX_TYPES),
                       ["digests"], max_items=len(INDEX_TYPES), min_items=1)
        if len(set(types)) != len(types):
            raise SchemaError(o.at("index_types"), "each index type at most once")
        return cls(
            repo_url=o.sub("repo_url", repo_url),
            git_ref=o.sub("git_ref", git_ref, "HEAD"),
            expected_tree_sha256=expected,
            index_types=tuple(types),
            verification=o.sub("verification", Verification.parse, Verification()),
            raw=dict(value),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repo_url": self.repo_url, "git_ref": self.git_ref,
            "index_types": list(self.index_types), "verification": self.verification.to_dict(),
        }
        if self.expected_tree_sha256 is not None:
            out["expected_tree_sha256"] = self.expected_tree_sha256
        return out


@dataclass(frozen=True)
class FileDigest:
    path: str
    sha256: str
    bytes: int

    @classmethod
    def parse(cls, value: Any, path: str) -> FileDigest:
        o = Obj(value, path, ("path", "sha256", "bytes"))
        return cls(path=o.sub("path", relative_path), sha256=o.sub("sha256", sha256_hex),
                   bytes=o.int("bytes", lo=0))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class IndexArtifact:
    index_type: str
    sha256: str
    bytes: int

    @classmethod
    def parse(cls, value: Any, path: str) -> IndexArtifact:
        o = Obj(value, path, ("index_type", "sha256", "bytes"))
        return cls(index_type=o.str("index_type", choices=INDEX_TYPES),
                   sha256=o.sub("sha256", sha256_hex), bytes=o.int("bytes", lo=0))

    def to_dict(self) -> dict[str, Any]:
        return {"index_type": self.index_type, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class RepoIndexResult:
    tree_sha256: str = ""
    digests: tuple[FileDigest, ...] = ()
    artifacts: tuple[IndexArtifact, ...] = ()
    provenance: Provenance = field(default_factory=Provenance)
    status: str = "success"
    error: str | None = None
    commit: str = ""
    #: the delivered indexes (``None``: not delivered); entries are the parser's objects
    symbols: tuple[dict[str, Any], ...] | None = None
    dependencies: tuple[dict[str, Any], ...] | None = None
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    FIELDS = ("tree_sha256", "digests", "artifacts", "provenance", "status", "error", "commit",
              "symbols", "dependencies")

    @classmethod
    def from_dict(cls, value: Any, path: str = "") -> RepoIndexResult:
        o = Obj(value, path, cls.FIELDS)
        tree = o.str("tree_sha256", "")
        if tree:
            sha256_hex(tree, o.at("tree_sha256"))
        error = o.raw("error", None)
        if error is not None:
            check_str(error, o.at("error"), max_len=65536)
        return cls(
            tree_sha256=tree,
            digests=tuple(o.list("digests", FileDigest.parse, [], max_items=1_000_000)),
            artifacts=tuple(o.list("artifacts", IndexArtifact.parse, [], max_items=16)),
            provenance=o.sub("provenance", Provenance.parse, Provenance()),
            status=o.str("status", "success", choices=STATUSES),
            error=error,
            commit=o.str("commit", "", max_len=64),
            symbols=_entries(o, "symbols"),
            dependencies=_entries(o, "dependencies"),
            raw=dict(value),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_sha256": self.tree_sha256,
            "digests": [d.to_dict() for d in self.digests],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "provenance": self.provenance.to_dict(),
            "status": self.status,
            "error": self.error,
            "commit": self.commit,
        } | {k: list(v) for k, v in (("symbols", self.symbols),
                                     ("dependencies", self.dependencies)) if v is not None}


def _entries(o: Obj, key: str) -> tuple[dict[str, Any], ...] | None:
    """An index delivered in the result: a list of JSON objects (checked against its
    artifact's hash by the verifier), or ``None`` when absent."""
    value = o.raw(key, None)
    if value is None:
        return None

    def entry(v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise SchemaError(path, "expected an object")
        return v

    return tuple(o.list(key, entry, [], max_items=1_000_000))
