"""``oa-node sandbox run`` as a user runs it (#18): absolute workdirs inside the mount,
escapes refused; ``--json`` always prints a result, exit 2 for an invalid request and 1 for
a job that failed; SIGTERM and SIGINT cancel cleanly (container and checkout removed, the
cancelled result printed); ``doctor`` checks the image has python3. Real Docker, real git."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest

from harness.marketplace import make_repo
from harness.wait import wait_until
from oa_node.executors.sandbox_run_schema import SandboxRunRequest
from oa_node.executors.schema import SchemaError
from oa_node.sandbox.docker import LABEL_OWNER

REPO = {"sub/hello.txt": "hi\n", "test_x.py": "def test_x():\n    assert True\n"}


@pytest.mark.parametrize("workdir, expected", [
    ("/workspace", "."), ("/workspace/", "."), ("/workspace/sub", "sub"),
    ("/workspace/sub/../sub", None), ("/etc", None), ("/workspacex", None), ("/", None),
    ("sub", "sub"), ("../x", None)])
def test_workdir_absolute_inside_the_mount(workdir: str, expected: str | None) -> None:
    doc = {"commands": [{"cmd": "true", "workdir": workdir}]}
    if expected is None:
        with pytest.raises(SchemaError) as err:
            SandboxRunRequest.from_dict(doc)
        assert "commands[0].workdir" in str(err.value)
    else:
        assert SandboxRunRequest.from_dict(doc).commands[0].workdir == expected
    other = {"repo": {"source": "https://example.org/r.git", "mount_path": "/src"},
             "commands": [{"cmd": "true", "workdir": "/src/a"}]}
    assert SandboxRunRequest.from_dict(other).commands[0].workdir == "a"


def sandbox_config(folder: Path, image: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "."\n[sandbox]\nimage = "{image}"\n'
                   'allowed_url_schemes = ["file"]\n')
    return cfg


def request(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "req.json"
    path.write_text(json.dumps(doc))
    return path


def sandbox_run(cfg: Path, req: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", "sandbox", "run", str(req),
                           "-c", str(cfg), *extra], capture_output=True, text=True,
                          timeout=300, cwd=cfg.parent)


@pytest.mark.docker
def test_run_in_an_absolute_workdir_and_exit_codes(tmp_path: Path, sandbox_image: str) -> None:
    cfg = sandbox_config(tmp_path / "n", sandbox_image)
    repo = make_repo(tmp_path / "repo", REPO)
    ok = sandbox_run(cfg, request(tmp_path, {
        "repo": {"source": repo, "git_ref": "main"},
        "commands": [{"cmd": "pwd && cat hello.txt", "workdir": "/workspace/sub"}]}), "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["status"] == "success"
    assert result["runs"][0]["stdout_preview"] == "/workspace/sub\nhi\n"

    failed = sandbox_run(cfg, request(tmp_path, {
        "repo": {"source": repo, "git_ref": "main"}, "commands": [{"cmd": "exit 3"}]}), "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["status"] == "failed"

    escape = sandbox_run(cfg, request(tmp_path, {
        "commands": [{"cmd": "true", "workdir": "/etc"}]}), "--json")
    assert escape.returncode == 2 and "Traceback" not in escape.stderr
    shown = json.loads(escape.stdout)
    assert shown["status"] == "error" and "outside the workspace" in shown["error"]

    (tmp_path / "bad.json").write_text("{not json")
    bad = sandbox_run(cfg, tmp_path / "bad.json", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["status"] == "error"
    human = sandbox_run(cfg, tmp_path / "bad.json")
    assert human.returncode == 2 and human.stderr.startswith("error:") and not human.stdout


@pytest.mark.docker
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_cleanly(tmp_path: Path, sandbox_image: str, docker_client: Any,
                                  signum: int) -> None:
    cfg = sandbox_config(tmp_path / "n", sandbox_image)
    repo = make_repo(tmp_path / "repo", REPO)
    req = request(tmp_path, {"repo": {"source": repo, "git_ref": "main"},
                             "sandbox": {"resources": {"timeout_secs": 300}},
                             "commands": [{"cmd": "sleep 240"}]})
    proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "sandbox", "run", str(req),
                             "-c", str(cfg), "--json"], cwd=cfg.parent, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    owner = f"{socket.gethostname()}:{proc.pid}"

    def containers() -> list[dict[str, Any]]:
        """Raw listing (no per-container lookup). Docker 20.10 answers a listing that
        races with a removal with 404 "No such container": list again, a bounded number
        of times."""
        for _ in range(20):
            try:
                return docker_client.api.containers(
                    all=True, filters={"label": f"{LABEL_OWNER}={owner}"})
            except docker.errors.NotFound:
                continue
        raise AssertionError("docker kept failing to list containers")

    try:
        wait_until(lambda: any(c["State"] == "running" for c in containers()) or
                   proc.poll() is not None, 120, "the job's container running")
        assert proc.poll() is None, proc.communicate()
        checkouts = list((tmp_path / "n" / "sandbox-jobs").iterdir())
        assert checkouts, "the checkout exists while the job runs"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["status"] == "cancelled", result
    assert "cancelling" in err and "Traceback" not in err
    assert containers() == []
    assert list((tmp_path / "n" / "sandbox-jobs").iterdir()) == []


@pytest.mark.docker
def test_doctor_checks_python3_in_the_image(tmp_path: Path, sandbox_image: str,
                                            docker_client: Any) -> None:
    cfg = sandbox_config(tmp_path / "n", sandbox_image)
    res = subprocess.run([sys.executable, "-m", "oa_node.cli", "sandbox", "doctor", "--json",
                          "-c", str(cfg)], capture_output=True, text=True, timeout=120)
    checks = {c["check"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["python3 in image"]["ok"] and "Python 3" in checks["python3 in image"]["detail"]
    # an image without python3 fails the check (imported from a one-file tar)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"no\n"))
    answer = docker_client.api.import_image_from_data(
        data.getvalue(), repository=f"oa-node-test/no-python-{tmp_path.name}")
    digest = json.loads(answer.strip().splitlines()[-1])["status"]
    try:
        cfg.write_text(cfg.read_text().replace(sandbox_image, digest))
        res = subprocess.run([sys.executable, "-m", "oa_node.cli", "sandbox", "doctor",
                              "--json", "-c", str(cfg)], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 1
        checks = {c["check"]: c for c in json.loads(res.stdout)["checks"]}
        assert not checks["python3 in image"]["ok"]
    finally:
        docker_client.images.remove(digest, force=True)
