"""What a stranger's repository may cost the provider's host, on real git repositories:
bytes received (stopped while fetching), history searched for a short id, files and their
size (refused before checkout), and the parser's memory and time (a child process)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from oa_node.executors.git_fetch import FetchError, FetchLimits, TooLarge, dir_bytes, fetch_repo
from oa_node.executors.jobtype import ExecContext
from oa_node.executors.repo_index import execute_repo_index
from oa_node.executors.repo_parse import ParseLimitError, parse_files

MakeRepo = Callable[[dict[str, str | bytes]], Path]
Git = Callable[..., str]
MiB = 1 << 20


@contextmanager
def observed(dest: Path) -> Iterator[dict[str, int]]:
    """Samples ``dest`` every millisecond while the block runs: the largest size its
    ``.git`` reached and how many work-tree files ever appeared."""
    seen = {"git_peak": 0, "worktree_files": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if (dest / ".git").exists():
                seen["git_peak"] = max(seen["git_peak"], dir_bytes(dest / ".git"))
            if dest.exists():
                names = [n for n in os.listdir(dest) if n != ".git"]
                seen["worktree_files"] = max(seen["worktree_files"], len(names))
            time.sleep(0.001)

    t = threading.Thread(target=watch)
    t.start()
    try:
        yield seen
    finally:
        done.set()
        t.join()


def test_a_repository_over_the_byte_cap_is_stopped_while_it_is_received(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"blob.bin": os.urandom(40 * MiB), "a.py": "x = 1\n"})
    dest = tmp_path / "c"
    with observed(dest) as seen, pytest.raises(TooLarge, match="larger than the 4 MiB"):
        fetch_repo(str(repo), "main", dest, allowed_schemes=("file",),
                   limits=FetchLimits(max_fetch_bytes=4 * MiB))
    # git never held more than the cap (plus its small bookkeeping files) on disk
    assert 0 < seen["git_peak"] <= 4 * MiB + 256 * 1024, seen
    assert seen["worktree_files"] == 0 and not dest.exists()
    # the same repository under a cap it fits in is fetched whole
    ok = fetch_repo(str(repo), "main", tmp_path / "d", allowed_schemes=("file",),
                    limits=FetchLimits(max_fetch_bytes=64 * MiB))
    assert (ok.path / "blob.bin").stat().st_size == 40 * MiB and ok.files == 2


def test_the_executor_turns_the_cap_into_an_error_result(
        make_repo: MakeRepo, host_ctx: ExecContext) -> None:
    repo = make_repo({"blob.bin": os.urandom(6 * MiB)})
    host_ctx.settings = replace(host_ctx.settings, max_fetch_mb=2)
    res = execute_repo_index({"repo_url": str(repo), "git_ref": "main"}, host_ctx)
    assert res.status == "error" and "larger than the 2 MiB" in (res.error or "")
    assert not list(host_ctx.settings.workdir.glob("*"))


def test_too_many_files_are_refused_before_checkout(make_repo: MakeRepo,
                                                    tmp_path: Path) -> None:
    repo = make_repo({f"f{i:03}.py": f"x{i} = {i}\n" for i in range(60)})
    dest = tmp_path / "c"
    with observed(dest) as seen, pytest.raises(TooLarge, match="more than 50 files"):
        fetch_repo(str(repo), "main", dest, allowed_schemes=("file",),
                   limits=FetchLimits(max_files=50))
    assert seen["worktree_files"] == 0  # nothing was checked out, so nothing was parsed
    assert len(list(fetch_repo(str(repo), "main", tmp_path / "d", allowed_schemes=("file",),
                               limits=FetchLimits(max_files=60)).path.glob("*.py"))) == 60


def test_a_small_pack_that_expands_past_the_checkout_cap_is_refused_before_checkout(
        make_repo: MakeRepo, tmp_path: Path, host_ctx: ExecContext) -> None:
    repo = make_repo({"zeros.bin": bytes(64 * MiB), "a.py": "def f(): pass\n"})
    dest = tmp_path / "c"
    with observed(dest) as seen, pytest.raises(TooLarge, match="more than 16 MiB of files"):
        fetch_repo(str(repo), "main", dest, allowed_schemes=("file",),
                   limits=FetchLimits(max_checkout_bytes=16 * MiB))
    assert seen["worktree_files"] == 0 and seen["git_peak"] < 4 * MiB
    host_ctx.settings = replace(host_ctx.settings, max_repo_mb=16)
    res = execute_repo_index({"repo_url": str(repo), "git_ref": "main",
                              "index_types": ["symbols"]}, host_ctx)
    assert res.status == "error" and "more than 16 MiB of files" in (res.error or "")


def test_short_commit_ids_are_looked_up_in_recent_history_only(
        make_repo: MakeRepo, git: Git, tmp_path: Path) -> None:
    repo = make_repo({"n.txt": "0\n"})
    first = git(repo, "rev-parse", "HEAD")
    for i in range(1, 8):
        (repo / "n.txt").write_text(f"{i}\n")
        git(repo, "commit", "-qam", f"c{i}")
    recent = git(repo, "rev-parse", "HEAD~2")
    limits = FetchLimits(short_id_depth=5)
    got = fetch_repo(str(repo), recent[:9], tmp_path / "a", allowed_schemes=("file",),
                     limits=limits)
    assert got.commit == recent and (got.path / "n.txt").read_text() == "5\n"
    # shallow: only the searched depth came over, not the whole history
    assert int(git(got.path, "rev-list", "--count", "--all")) <= 5
    with pytest.raises(FetchError, match="not among the last 5 commits"):
        fetch_repo(str(repo), first[:9], tmp_path / "b", allowed_schemes=("file",),
                   limits=limits)
    with pytest.raises(FetchError, match="too short"):
        fetch_repo(str(repo), recent[:5], tmp_path / "c", allowed_schemes=("file",),
                   limits=limits)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


HOSTILE = {
    "parens.py": "x = " + "(" * 100_000 + "\n",
    "unary.py": "x = " + "-" * 100_000 + "1\n",
    "chain.py": "x = a" + ".b" * 300_000 + "\n",
    "big_list.py": "x = [" + "1," * 450_000 + "]\n",  # ~900 kB: a big AST
    "huge.py": "y = 1\n" * 200_000,  # 1.2 MB: over the parse cap, hashed only
    "nested.toml/pyproject.toml": "[project]\ndependencies = " + "[" * 50_000 + "\n",
    "package.json": "[" * 200_000,
    "good.py": "def fine(): pass\nclass Ok: pass\n",
}


def test_hostile_files_get_error_entries_and_the_rest_is_indexed(
        make_repo: MakeRepo, host_ctx: ExecContext, tmp_path: Path) -> None:
    repo = make_repo(HOSTILE)
    host_ctx.artifacts_dir = tmp_path / "out"
    host_ctx.settings = replace(host_ctx.settings, index_memory_mb=96)
    t0 = time.monotonic()
    res = execute_repo_index({"repo_url": str(repo), "git_ref": "main",
                              "index_types": ["digests", "symbols", "dependencies"]}, host_ctx)
    assert time.monotonic() - t0 < 60  # bounded, not a hang (the bound is the per-file limit)
    assert res.status == "success", res.error
    assert {d.path for d in res.digests} == set(HOSTILE)
    symbols = {f["path"]: f for f in json.loads((tmp_path / "out/symbols.json").read_text())}
    assert set(symbols) == {p for p in HOSTILE if p.endswith(".py")}
    assert [s["name"] for s in symbols["good.py"]["symbols"]] == ["fine", "Ok"]
    for name in ("parens.py", "unary.py", "chain.py", "huge.py"):
        assert "error" in symbols[name], symbols[name]
    deps = json.loads((tmp_path / "out/dependencies.json").read_text())
    assert {d["file"] for d in deps if "error" in d} == {"nested.toml/pyproject.toml",
                                                         "package.json"}


def test_the_parser_runs_in_a_child_with_memory_and_time_limits(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    root = make_repo(HOSTILE)
    tasks = [("symbols", p) for p in sorted(HOSTILE) if p.endswith(".py")]
    tasks += [("dependencies", "nested.toml/pyproject.toml"), ("dependencies", "package.json")]
    # a small address space: the big AST cannot be built, everything else is answered
    out = dict(zip([p for _, p in tasks], parse_files(
        root, tasks, deadline=time.monotonic() + 60, memory_mb=64), strict=True))
    assert out["good.py"]["symbols"] == [{"name": "fine", "kind": "function", "line": 1},
                                         {"name": "Ok", "kind": "class", "line": 2}]
    assert "not parsed" in out["big_list.py"]["error"] or "stopped" in out["big_list.py"][
        "error"]
    for name in ("parens.py", "unary.py", "chain.py"):
        assert "error" in out[name], out[name]
    assert "larger than 1 MiB" in out["huge.py"]["error"]
    assert "not parsed" in out["nested.toml/pyproject.toml"][0]["error"]
    assert "not parsed" in out["package.json"][0]["error"]
    # a file that takes longer than the per-file limit is cut, and a fresh child goes on
    slow = [("symbols", "good.py"), ("symbols", "big_list.py"), ("symbols", "good.py")]
    cut = parse_files(root, slow, deadline=time.monotonic() + 60, memory_mb=512,
                      file_secs=0.05)
    assert cut[0]["symbols"][0]["name"] == "fine"
    assert cut[1]["error"] == "not parsed: took longer than 0.05s"
    assert cut[2]["symbols"][0]["name"] == "fine"
    # past max_failures such files, the index is refused as a whole
    with pytest.raises(ParseLimitError, match="more than 1 files"):
        parse_files(root, [("symbols", "good.py")] + [("symbols", "big_list.py")] * 3,
                    deadline=time.monotonic() + 60,
                    memory_mb=512, file_secs=0.05, max_failures=1)


def test_the_caps_are_read_from_the_sandbox_section(tmp_path: Path) -> None:
    from oa_node.plugins.sandbox.config import SandboxSettings

    table = {**SandboxSettings().__dict__, "max_fetch_mb": 7, "max_repo_mb": 11,
             "max_repo_files": 9, "index_memory_mb": 13}
    # [sandbox] is read in one place: the settings the sandbox plugin offers as Execution
    for got in (SandboxSettings.from_section(table).executor_settings(tmp_path),):
        assert got.index_memory_mb == 13
        assert got.fetch_limits() == FetchLimits(max_fetch_bytes=7 * MiB,
                                                 max_checkout_bytes=11 * MiB, max_files=9)
        assert got.fetch_limits(disk_mb=5).max_checkout_bytes == 5 * MiB
