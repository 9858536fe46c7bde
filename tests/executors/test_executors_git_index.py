"""Host-side git fetch hardening and the repo_index executor, on real git repositories."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from oa_node.canonical import canonical_bytes
from oa_node.executors.git_fetch import FetchError, check_url, fetch_repo
from oa_node.executors.hashing import output_sha256, tree_digests, tree_sha256
from oa_node.executors.jobtype import ExecContext
from oa_node.executors.repo_index import execute_repo_index, verify_repo_index
from oa_node.gitsafe import url_scheme

MakeRepo = Callable[[dict[str, str | bytes]], Path]
Git = Callable[..., str]


@pytest.mark.parametrize(("url", "scheme"), [
    ("https://github.com/a/b.git", "https"), ("http://h/x", "http"), ("git://h/x", "git"),
    ("ssh://git@h/x", "ssh"), ("git@github.com:a/b.git", "ssh"), ("git+ssh://h/x", "ssh"),
    ("file:///srv/x", "file"), ("/srv/x", "file"), ("./x", "file"), ("x", "file"),
    ("ext::sh -c touch% /tmp/pwned", "ext"), ("fd::17", "fd"), ("FILE:///x", "file"),
])
def test_url_schemes(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


@pytest.mark.parametrize("url", ["ext::sh -c id", "file:///etc", "/etc", "git@h:x",
                                 "-uhttps://x", "fd::3", "https://h/\nx"])
def test_disallowed_urls_are_rejected(url: str) -> None:
    with pytest.raises(FetchError):
        check_url(url, ("https", "git"))


def test_ext_is_refused_even_when_listed() -> None:
    with pytest.raises(FetchError):
        check_url("ext::sh -c id", ("https", "ext"))


def test_fetch_branch_tag_and_commit_ids(make_repo: MakeRepo, git: Git, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "one\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-qam", "two")
    allowed = ("file",)
    head = fetch_repo(str(repo), "main", tmp_path / "c1", allowed_schemes=allowed)
    assert (head.path / "a.txt").read_text() == "two\n"
    tag = fetch_repo(f"file://{repo}", "v1", tmp_path / "c2", allowed_schemes=allowed)
    assert tag.commit == first and (tag.path / "a.txt").read_text() == "one\n"
    full = fetch_repo(str(repo), first, tmp_path / "c3", allowed_schemes=allowed)
    short = fetch_repo(str(repo), first[:10], tmp_path / "c4", allowed_schemes=allowed)
    assert full.commit == short.commit == first
    with pytest.raises(FetchError, match="nope"):
        fetch_repo(str(repo), "nope", tmp_path / "c5", allowed_schemes=allowed)
    assert not (tmp_path / "c5").exists()


def test_file_urls_need_explicit_permission(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"a": "x"})
    for url in (str(repo), f"file://{repo}"):
        with pytest.raises(FetchError, match="not allowed"):
            fetch_repo(url, "HEAD", tmp_path / "c", allowed_schemes=("https",))
    assert not (tmp_path / "c").exists()


def test_user_config_hooks_and_ext_transport_never_run(
        make_repo: MakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host ~/.gitconfig with hooks (and ext allowed) is ignored by the fetch."""
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    for name in ("post-checkout", "reference-transaction", "fsmonitor"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        os.chmod(hooks / name, 0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {hooks}/fsmonitor\n"
        "[protocol \"ext\"]\n\tallow = always\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    repo = make_repo({"a": "x"})
    fetch_repo(str(repo), "HEAD", tmp_path / "c", allowed_schemes=("file",))
    assert not marker.exists()
    # Even if our own scheme check were bypassed, git's allow-list refuses ext.
    pwned = tmp_path / "pwned"
    from oa_node.executors import git_fetch

    monkeypatch.setattr(git_fetch, "check_url", lambda url, allowed: "ext")
    with pytest.raises(FetchError):
        fetch_repo(f"ext::sh -c touch% {pwned}", "HEAD", tmp_path / "c2",
                   allowed_schemes=("file",))
    assert not pwned.exists()


def test_tree_digests_skip_git_and_symlinks(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"b/x.txt": "x", "a.txt": "a"})
    os.symlink("/etc/passwd", repo / "link")
    digests = tree_digests(repo)
    assert [d["path"] for d in digests] == ["a.txt", "b/x.txt"]
    assert digests[0]["bytes"] == 1


PYPROJECT = """\
[project]
name = "demo"
dependencies = ["requests>=2", "Typing_Extensions"]
[project.optional-dependencies]
test = ["pytest>=8"]
"""
PACKAGE_JSON = json.dumps({"dependencies": {"left-pad": "^1.3.0"},
                           "devDependencies": {"jest": "29"}})
PY = """\
import os
VERSION = "1"
def top(a): return a
async def fetch(): pass
class Thing:
    def method(self): pass
"""


def test_repo_index_all_types(make_repo: MakeRepo, git: Git, host_ctx: ExecContext,
                              tmp_path: Path) -> None:
    repo = make_repo({"pyproject.toml": PYPROJECT, "web/package.json": PACKAGE_JSON,
                      "requirements-dev.txt": "# tools\nruff==0.6 ; python_version>'3'\n-r x.txt\n",
                      "pkg/mod.py": PY, "pkg/broken.py": "def (:\n",
                      "deep.py": "x = " + "(" * 5000 + ")" * 5000 + "\n"})
    host_ctx.artifacts_dir = tmp_path / "out"
    req = {"repo_url": str(repo), "git_ref": "main",
           "index_types": ["digests", "symbols", "dependencies"]}
    res = execute_repo_index(req, host_ctx)
    assert res.status == "success", res.error
    assert res.commit == git(repo, "rev-parse", "HEAD")
    assert res.tree_sha256 == tree_sha256(tree_digests(repo))
    arts = {a.index_type: a for a in res.artifacts}
    assert arts["digests"].sha256 == res.tree_sha256
    symbols = json.loads((tmp_path / "out/symbols.json").read_text())
    by_path = {f["path"]: f for f in symbols}
    names = [(s["name"], s["kind"]) for s in by_path["pkg/mod.py"]["symbols"]]
    assert names == [("VERSION", "variable"), ("top", "function"), ("fetch", "async_function"),
                     ("Thing", "class"), ("Thing.method", "method")]
    assert by_path["pkg/broken.py"]["error"].startswith("syntax error")
    assert "error" in by_path["deep.py"]
    deps = json.loads((tmp_path / "out/dependencies.json").read_text())
    got = {(d["ecosystem"], d["scope"], d["name"], d["spec"]) for d in deps}
    assert ("pypi", "runtime", "requests", ">=2") in got
    assert ("pypi", "runtime", "typing-extensions", "") in got
    assert ("pypi", "extra:test", "pytest", ">=8") in got
    assert ("npm", "devDependencies", "jest", "29") in got
    assert ("pypi", "runtime", "ruff", "==0.6 ; python_version>'3'") in got
    for kind, art in arts.items():
        data = (tmp_path / f"out/{kind}.json").read_bytes()
        assert len(data) == art.bytes and data == canonical_bytes(json.loads(data))
    # the index itself is in the result (#18), exactly what the artifact hashes
    assert [dict(e) for e in res.symbols or ()] == symbols
    assert [dict(e) for e in res.dependencies or ()] == deps
    assert res.to_dict()["symbols"] == symbols
    verdict = verify_repo_index(req, res)
    assert verdict.ok, verdict.problems
    assert not list((host_ctx.settings.workdir).glob("*"))  # per-job checkout removed

    # an altered delivery, or a missing one, is caught even with output_sha256 recomputed
    for kind, change in (("symbols", lambda d: d["symbols"][0].update(path="other.py")),
                         ("dependencies", lambda d: d.pop("dependencies"))):
        forged = res.to_dict()
        change(forged)
        forged["provenance"]["output_sha256"] = output_sha256(forged)
        verdict = verify_repo_index(req, forged)
        assert not verdict.ok and any(kind in p for p in verdict.problems), verdict.problems


def test_repo_index_expected_tree_mismatch_and_tampering(
        make_repo: MakeRepo, host_ctx: ExecContext) -> None:
    repo = make_repo({"a.py": "x = 1\n"})
    req = {"repo_url": str(repo), "expected_tree_sha256": "0" * 64}
    res = execute_repo_index(req, host_ctx)
    assert res.status == "error" and "differs" in (res.error or "")
    good_req = {"repo_url": str(repo)}
    good = execute_repo_index(good_req, host_ctx)
    assert verify_repo_index(good_req, good).ok
    forged = good.to_dict()
    forged["digests"][0]["sha256"] = "f" * 64
    verdict = verify_repo_index(good_req, forged)
    assert not verdict.ok
    assert any("output_sha256" in p for p in verdict.problems)
    assert any("tree_sha256" in p for p in verdict.problems)


def test_repo_index_rejects_disallowed_urls_before_fetching(host_ctx: ExecContext) -> None:
    res = execute_repo_index({"repo_url": "ext::/usr/bin/id"}, host_ctx)
    assert res.status == "error" and "not allowed" in (res.error or "")
    res = execute_repo_index({"repo_url": "x", "index_types": ["bogus"]}, host_ctx)
    assert res.status == "error" and "index_types[0]" in (res.error or "")
