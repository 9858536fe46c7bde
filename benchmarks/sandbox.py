"""Sandbox benchmark: executor overhead over a bare ``docker run``, and pytest jobs/minute.

Run: ``.venv/bin/python benchmarks/sandbox.py [--runs 15] [--jobs 20] [--json]``
(needs a Docker daemon; builds or reuses the base image first).

1. Per-job latency, interleaved in the same run so machine load hits both alike:
   - bare: ``docker run --rm IMAGE true`` (the docker CLI, default bridge network);
   - sandbox: ``DockerSandbox.run`` of the trivial command ``true`` with all the hardening;
   - executor: ``execute_sandbox_run`` of ``true`` on a one-file local git repo (schema
     validation, host-side fetch, workspace tar, hashing, provenance included).
   Printed as medians and the ratio to bare (target <= 1.3x for the trivial command).
2. Throughput: ``--jobs`` small pytest jobs (a repo with 5 tests, ``python3 -m pytest -q``)
   through the executor at concurrency 1 and 2: jobs per minute and median job latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from oa_node.executors.jobtype import ExecContext, ExecutorSettings
from oa_node.executors.sandbox_run import execute_sandbox_run
from oa_node.sandbox.base import CommandSpec, Limits, RunSpec, SandboxUnavailable
from oa_node.sandbox.docker import DockerSandbox, connect
from oa_node.sandbox.image import build_base_image

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
TESTS = "\n".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n" for i in range(5))


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=GIT_ENV,
                       capture_output=True)
    return root


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def request(repo: Path, cmd: str) -> dict[str, Any]:
    return {"repo": {"source": str(repo), "git_ref": "main"}, "commands": [{"cmd": cmd}],
            "sandbox": {"resources": {"memory_mb": 512, "cpus": 1.0, "timeout_secs": 120}}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="latency samples per variant")
    ap.add_argument("--jobs", type=int, default=20, help="pytest jobs per concurrency level")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args()
    say = (lambda *a: None) if args.json else print
    try:
        client = connect()
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    image = build_base_image(client, progress=lambda line: say("  " + line))
    sandbox = DockerSandbox(client, default_image=image, namespace="benchmark")
    work = Path(tempfile.mkdtemp(prefix="oa-sandbox-bench-"))
    try:
        settings = ExecutorSettings(allowed_url_schemes=("file",), workdir=work / "jobs")
        tiny = make_repo(work / "tiny", {"README": "bench\n"})
        tests_repo = make_repo(work / "tests", {"test_bench.py": TESTS})

        def bare() -> None:
            subprocess.run(["docker", "run", "--rm", image, "true"], check=True,
                           capture_output=True)

        def sandbox_true() -> None:
            out = sandbox.run(RunSpec(job_id="bench", commands=(CommandSpec("true"),),
                                      limits=Limits()))
            assert out.status == "success", out.error

        def executor_true() -> None:
            res = execute_sandbox_run(request(tiny, "true"),
                                      ExecContext(settings=settings, sandbox=sandbox))
            assert res.status == "success", res.error

        say(f"image {image}")
        say(f"latency: {args.runs} interleaved samples each (after one warm-up)")
        for fn in (bare, sandbox_true, executor_true):
            fn()
        samples: dict[str, list[float]] = {"bare": [], "sandbox": [], "executor": []}
        for _ in range(args.runs):
            samples["bare"].append(timed(bare))
            samples["sandbox"].append(timed(sandbox_true))
            samples["executor"].append(timed(executor_true))
        sandbox.flush()
        med = {k: statistics.median(v) for k, v in samples.items()}
        report: dict[str, Any] = {
            "image": image,
            "latency_median_s": {k: round(v, 4) for k, v in med.items()},
            "ratio_sandbox_vs_bare": round(med["sandbox"] / med["bare"], 3),
            "ratio_executor_vs_bare": round(med["executor"] / med["bare"], 3),
            "throughput": {},
        }
        say(f"  bare docker run --rm IMAGE true : {med['bare'] * 1000:7.1f} ms median")
        say(f"  DockerSandbox.run('true')       : {med['sandbox'] * 1000:7.1f} ms median "
            f"({report['ratio_sandbox_vs_bare']:.2f}x bare)")
        say(f"  executor, git repo + 'true'     : {med['executor'] * 1000:7.1f} ms median "
            f"({report['ratio_executor_vs_bare']:.2f}x bare)")

        def pytest_job() -> float:
            t = time.perf_counter()
            res = execute_sandbox_run(request(tests_repo, "python3 -m pytest -q -p "
                                              "no:cacheprovider"),
                                      ExecContext(settings=settings, sandbox=sandbox))
            assert res.status == "success" and "5 passed" in res.runs[0].stdout_preview, res
            return time.perf_counter() - t

        for conc in (1, 2):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=conc) as pool:
                lat = list(pool.map(lambda _: pytest_job(), range(args.jobs)))
            sandbox.flush()
            elapsed = time.perf_counter() - t0
            jpm = args.jobs / elapsed * 60
            report["throughput"][f"concurrency_{conc}"] = {
                "jobs": args.jobs, "elapsed_s": round(elapsed, 2),
                "jobs_per_minute": round(jpm, 1),
                "job_latency_median_s": round(statistics.median(lat), 3)}
            say(f"pytest jobs, concurrency {conc}: {args.jobs} in {elapsed:.1f} s = "
                f"{jpm:.0f} jobs/min (median job {statistics.median(lat):.2f} s)")
        c1 = report["throughput"]["concurrency_1"]["jobs_per_minute"]
        c2 = report["throughput"]["concurrency_2"]["jobs_per_minute"]
        report["throughput"]["ratio_c2_vs_c1"] = round(c2 / c1, 2)
        say(f"  concurrency 2 vs 1: {c2 / c1:.2f}x")
        if args.json:
            print(json.dumps(report, indent=2))
        return 0
    finally:
        sandbox.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
