"""The sandbox_run executor end to end: real git repos, real Docker, verification, builds, CLI."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.wait import wait_until
from oa_node.executors.build import build_request, run_build
from oa_node.executors.hashing import input_sha256, output_sha256, verification_digest
from oa_node.executors.jobtype import ExecContext, ExecutorSettings
from oa_node.executors.sandbox_run import execute_sandbox_run, verify_sandbox_run
from oa_node.sandbox.docker import DockerSandbox

MakeRepo = Callable[[dict[str, str | bytes]], Path]

TESTS = """\
def test_ok():
    assert 1 + 1 == 2

def test_env():
    import os
    assert os.environ["MODE"] == "strict"
"""
FAILING = "def test_bad():\n    assert False\n"


@pytest.fixture
def ctx(settings: ExecutorSettings, docker_sandbox: DockerSandbox) -> ExecContext:
    return ExecContext(settings=settings, sandbox=docker_sandbox, provider_pubkey="ab" * 32)


def request(source: str, *commands: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "sandbox": {"provider": "docker", "network_policy": "none",
                    "resources": {"memory_mb": 256, "cpus": 1.0, "timeout_secs": 60}},
        "repo": {"source": source, "git_ref": "main", "mount_path": "/workspace"},
        "commands": [c if isinstance(c, dict) else {"cmd": c} for c in commands],
        "env": {"MODE": "strict"},
        **extra,
    }


def no_containers(sb: DockerSandbox) -> bool:
    sb.flush()
    return not sb.client.api.containers(all=True,
                                        filters=sb.label_filter())


@pytest.mark.docker
def test_pytest_job_passes_and_verifies(make_repo: MakeRepo, ctx: ExecContext,
                                        sandbox_image: str) -> None:
    repo = make_repo({"test_math.py": TESTS})
    req = request(str(repo), "python3 -m pytest -q -p no:cacheprovider")
    res = execute_sandbox_run(req, ctx)
    assert res.status == "success", (res.error, res.runs)
    assert "2 passed" in res.runs[0].stdout_preview
    assert res.env_info.image_digest == sandbox_image
    assert res.env_info.system_info["repo_commit"]
    assert res.provenance.input_sha256 == input_sha256(req)
    assert res.provenance.output_sha256 == output_sha256(res.to_dict())
    assert res.provenance.provider_pubkey == "ab" * 32
    verdict = verify_sandbox_run(req, res.to_dict())
    assert verdict.ok, verdict.problems
    # An independent re-run agrees on the verification digest though timings differ.
    again = execute_sandbox_run(req, ctx)
    assert verification_digest(again) == verdict.verification_digest
    assert not list(ctx.settings.workdir.glob("*")) and no_containers(ctx.sandbox)  # type: ignore[arg-type]


@pytest.mark.docker
def test_a_failing_suite_is_an_honest_failed_result(make_repo: MakeRepo, ctx: ExecContext) -> None:
    repo = make_repo({"test_x.py": FAILING})
    req = request(str(repo), "python3 -m pytest -q -p no:cacheprovider", "echo after")
    res = execute_sandbox_run(req, ctx)
    assert res.status == "failed" and len(res.runs) == 1 and res.runs[0].exit_code == 1
    assert verify_sandbox_run(req, res).ok
    lying = res.to_dict()
    lying["status"] = "success"
    verdict = verify_sandbox_run(req, lying)
    assert not verdict.ok and any("output_sha256" in p for p in verdict.problems)


@pytest.mark.docker
def test_continue_on_fail_and_artifacts(make_repo: MakeRepo, ctx: ExecContext,
                                        tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a"})
    ctx.artifacts_dir = tmp_path / "arts"
    req = request(str(repo), {"cmd": "false", "continue_on_fail": True},
                  "mkdir -p out && cp a.txt out/b.txt", artifacts=["out/*.txt"])
    res = execute_sandbox_run(req, ctx)
    assert res.status == "success" and [r.exit_code for r in res.runs] == [1, 0]
    assert [a.path for a in res.artifacts] == ["out/b.txt"]
    assert (ctx.artifacts_dir / "out/b.txt").read_text() == "a"


@pytest.mark.docker
@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["commands"][0].update(workdir="../../etc"), "commands[0].workdir"),
    (lambda r: r.update(artifacts=["../outside"]), "artifacts[0]"),
    (lambda r: r["repo"].update(source="ext::/usr/bin/id"), "scheme 'ext' is not allowed"),
    (lambda r: r["sandbox"].update(network_policy="full"), "network_policy 'full'"),
    (lambda r: r.update(commands=[]), "no commands"),
    (lambda r: r["sandbox"].update(image_digest="sha256:" + "1" * 64), "not present"),
], ids=["workdir", "artifact", "ext-url", "network", "empty", "image"])
def test_bad_jobs_are_rejected_before_anything_runs(
        make_repo: MakeRepo, ctx: ExecContext, mutate: Callable[[dict[str, Any]], None],
        message: str) -> None:
    repo = make_repo({"a": "a"})
    req = request(str(repo), "touch /workspace/ran")
    mutate(req)
    res = execute_sandbox_run(req, ctx)
    assert res.status == "error" and message in (res.error or ""), res.error
    assert res.runs == () and not ctx.settings.workdir.exists()


@pytest.mark.docker
def test_file_urls_only_when_the_provider_allows_them(make_repo: MakeRepo, ctx: ExecContext,
                                                      tmp_path: Path) -> None:
    repo = make_repo({"a": "a"})
    strict = ExecContext(settings=ExecutorSettings(allowed_url_schemes=("https",),
                                                   workdir=tmp_path / "strict"),
                         sandbox=ctx.sandbox)
    for url in (str(repo), f"file://{repo}"):
        res = execute_sandbox_run(request(url, "true"), strict)
        assert res.status == "error" and "'file' is not allowed" in (res.error or "")
    assert execute_sandbox_run(request(f"file://{repo}", "true"), ctx).status == "success"


@pytest.mark.docker
def test_timeout_and_cancel_statuses(make_repo: MakeRepo, ctx: ExecContext) -> None:
    repo = make_repo({"a": "a"})
    req = request(str(repo), "sleep 30", "echo never")
    req["sandbox"]["resources"]["timeout_secs"] = 1
    res = execute_sandbox_run(req, ctx)
    assert res.status == "timeout" and len(res.runs) == 1 and res.runs[0].timed_out
    assert verify_sandbox_run(req, res).ok
    req["sandbox"]["resources"]["timeout_secs"] = 60
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(execute_sandbox_run(req, ctx)))
    worker.start()
    sb = ctx.sandbox
    assert isinstance(sb, DockerSandbox)
    wait_until(lambda: sb.client.api.containers(
        filters=sb.label_filter()), 60,
        "the job's container to run (cancel must hit a running job)")
    ctx.cancel.cancel()
    worker.join(30)
    assert out and out[0].status == "cancelled"


@pytest.mark.docker
def test_provider_caps_limit_the_request(make_repo: MakeRepo, ctx: ExecContext) -> None:
    repo = make_repo({"a": "a"})
    req = request(str(repo), "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                             "|| cat /sys/fs/cgroup/memory.max")
    req["sandbox"]["resources"]["memory_mb"] = 64 * 1024
    res = execute_sandbox_run(req, ctx)
    assert res.status == "success"
    assert int(res.runs[0].stdout_preview) == ctx.settings.max_limits.memory_mb << 20
    assert res.env_info.system_info["limits"]["memory_mb"] == ctx.settings.max_limits.memory_mb


MAKEFILE = "all: dist/hello\n\ndist/hello: hello.c\n\tmkdir -p dist\n\tcc -O2 -o $@ hello.c\n"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
SETUP_PY = "from setuptools import setup\nsetup(name='demo', version='1.0', py_modules=['demo'])\n"


@pytest.mark.docker
def test_make_build_returns_the_binary(make_repo: MakeRepo, ctx: ExecContext,
                                       tmp_path: Path) -> None:
    repo = make_repo({"Makefile": MAKEFILE, "hello.c": HELLO_C})
    ctx.artifacts_dir = tmp_path / "built"
    res = run_build(str(repo), "main", "make", ctx)
    assert res.status == "success", (res.error, res.runs)
    assert [a.path for a in res.artifacts] == ["dist/hello"]
    binary = (ctx.artifacts_dir / "dist/hello").read_bytes()
    assert binary[:4] == b"\x7fELF" and res.artifacts[0].size_bytes == len(binary)


@pytest.mark.docker
def test_pip_wheel_build_offline(make_repo: MakeRepo, ctx: ExecContext, tmp_path: Path) -> None:
    repo = make_repo({"setup.py": SETUP_PY, "demo.py": "X = 1\n"})
    ctx.artifacts_dir = tmp_path / "built"
    res = run_build(str(repo), "main", "pip_wheel", ctx)
    assert res.status == "success", (res.error, [r.stderr_preview for r in res.runs])
    (art,) = res.artifacts
    assert art.path.startswith("dist/demo-1.0-") and art.path.endswith(".whl")
    with zipfile.ZipFile(ctx.artifacts_dir / art.path) as whl:
        assert "demo.py" in whl.namelist()
    assert build_request(str(repo), profile="pip_wheel").sandbox.network_policy == "none"


@pytest.mark.docker
def test_cli_run_prints_the_result(make_repo: MakeRepo, tmp_path: Path,
                                   sandbox_image: str) -> None:
    from oa_node.cli import make_app

    repo = make_repo({"a.txt": "from the repo\n"})
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n'
                   f'[sandbox]\nallowed_url_schemes = ["file"]\nimage = "{sandbox_image}"\n')
    req = tmp_path / "req.json"
    req.write_text(json.dumps(request(str(repo), "cat a.txt")))
    runner = CliRunner()
    app = make_app()
    out = runner.invoke(app, ["sandbox", "run", str(req), "--json", "-c", str(cfg)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["status"] == "success" and doc["runs"][0]["stdout_preview"] == "from the repo\n"
    req.write_text(json.dumps(request(str(repo), "exit 4")))
    out = runner.invoke(app, ["sandbox", "run", str(req), "-c", str(cfg)])
    assert out.exit_code == 1 and "failed" in out.stdout
    out = runner.invoke(app, ["sandbox", "doctor", "--json", "-c", str(cfg)])
    assert out.exit_code == 0 and json.loads(out.stdout)["ok"] is True


def test_cli_without_a_docker_daemon_explains_instead_of_crashing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    monkeypatch.chdir(tmp_path)
    exe = [sys.executable, "-c", "from oa_node.cli import main; main()"]
    doctor = subprocess.run([*exe, "sandbox", "doctor"], capture_output=True, text=True,
                            timeout=60)
    assert doctor.returncode == 1
    assert "does not answer" in doctor.stdout and "Traceback" not in doctor.stderr
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"commands": [{"cmd": "true"}]}))
    run = subprocess.run([*exe, "sandbox", "run", str(req)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "Docker daemon does not answer" in run.stderr.replace("\n", " ")
    # an invalid request is exit code 2 (nothing ran), a failed or unrunnable job 1 (#18)
    bad = subprocess.run([*exe, "sandbox", "run", "-"], input='{"commands": [{"cmd": 1}]}',
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "commands[0].cmd" in bad.stderr
