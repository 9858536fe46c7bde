"""``make run`` and the README tour (#18): the setup ``make run`` does (scripts/run_local.py),
``oa-node start`` on the config it wrote, then in "a second terminal" the exact commands it
printed: a job on the example repository it made, ``--wait``, verified and paid, and
``oa-node job result ID`` showing it. Real relay, ledger wallet over NIP-47, Docker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.marketplace.conftest import REPO_ROOT, free_port
from tests.marketplace.test_cli import cli, poll, start, stop, wait_port
from tests.marketplace.world import make_repo

SCRIPT = REPO_ROOT / "scripts" / "run_local.py"


def run_local(data: Path, port: int, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(data), "--port", str(port),
                           "--setup-only"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_make_run_is_the_script() -> None:
    """What this file tests is what `make run` runs."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrun: ", 1)[1].split("\n\n", 1)[0]
    assert "scripts/run_local.py $(DATA_DIR)" in recipe


@pytest.mark.docker
def test_the_tour_after_make_run(tmp_path: Path, sandbox_image: str) -> None:
    data, port = tmp_path / "oa-home", free_port()
    setup = run_local(data, port)
    assert setup.returncode == 0, setup.stderr
    lines = setup.stdout.splitlines()
    tour = lines[lines.index(next(ln for ln in lines if "second terminal" in ln)) + 1:]
    tour = [ln.strip() for ln in tour if ln.strip()]
    export, submit, result = tour[:3]
    assert export.startswith("export OA_NODE_CONFIG=") and "--wait" in submit
    assert result.startswith("oa-node job result ID")
    for name in ("node.toml", "node.key", "buyer.uri", "provider.uri"):
        assert (data / name).stat().st_mode & 0o077 == 0, name

    log = tmp_path / "node.log"
    node = start(data / "node.toml", log)
    try:
        wait_port(port, node, log, timeout=60)
        poll(lambda: "starting service provider" in log.read_text(), 60, "the provider")
        bin_dir = str(Path(sys.executable).parent)  # the venv's oa-node, as after activate
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
        env.pop("OA_NODE_CONFIG", None)
        shell = subprocess.run(["bash", "-c", f"{export}\n{submit}"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300, env=env)
        assert shell.returncode == 0, (shell.stdout, shell.stderr, log.read_text()[-3000:])
        assert re.search(r"job [0-9a-f]{16}: paid", shell.stdout), shell.stdout
        job_id = re.search(r"submitted job\s+([0-9a-f]{64})", shell.stdout).group(1)  # type: ignore[union-attr]
        cmd = result.split("#")[0].replace("ID", job_id[:12])
        shown = subprocess.run(["bash", "-c", f"{export}\n{cmd}"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, env=env)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout
        assert f"job {job_id}" in out and ": paid" in out
        assert "verdict pass, paid 1000 msat" in out
        assert "-> exit 0" in out and "1 passed" in out

        # a job whose command fails is run honestly, verified and paid: exit code 3
        failing = submit.replace("'python3 -m pytest -q -p no:cacheprovider'",
                                 "'python3 -m pytest -q -p no:cacheprovider -k nothing_here'")
        assert failing != submit
        shell = subprocess.run(["bash", "-c", f"{export}\n{failing}"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300, env=env)
        assert shell.returncode == 3, (shell.stdout, shell.stderr)
        assert re.search(r"job [0-9a-f]{16}: paid \(failed\)", shell.stdout), shell.stdout
        listed = subprocess.run(["bash", "-c", f"{export}\noa-node job list --json"],
                                capture_output=True, text=True, timeout=60, env=env)
        outcomes = sorted(j["outcome"] for j in json.loads(listed.stdout))
        assert outcomes == ["failed", "success"], listed.stdout

        # job submit build: the make profile, its outputs come back as artifacts
        project = make_repo(tmp_path / "project", {
            "Makefile": "all:\n\tmkdir -p dist && printf 'built\\n' > dist/hello.txt\n"})
        built = subprocess.run(
            ["bash", "-c", f"{export}\noa-node job submit build --repo {project} --ref main "
             "--output 'dist/*' --wait"], capture_output=True, text=True, timeout=300, env=env)
        assert built.returncode == 0, (built.stdout, built.stderr)
        build_id = re.search(r"submitted job\s+([0-9a-f]{64})", built.stdout).group(1)  # type: ignore[union-attr]
        shown = subprocess.run(["bash", "-c", f"{export}\noa-node job result {build_id} --json"],
                               capture_output=True, text=True, timeout=60, env=env)
        (res,) = json.loads(shown.stdout)["results"]
        (artifact,) = res["result"]["artifacts"]
        assert artifact["path"] == "dist/hello.txt" and artifact["size_bytes"] == 6
    finally:
        code = stop(node)
    assert code == 0, log.read_text()[-3000:]
    balances = {c["name"]: c["balance_msat"] for c in json.loads(
        cli("wallet", "list", "--json", "-c", str(data / "node.toml")).stdout)}
    assert balances == {"provider": 3000, "buyer": 1_000_000 - 3000}


def test_without_docker_make_run_says_so_and_runs_the_relay_only(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}
    port, log = free_port(), tmp_path / "run.log"
    with open(log, "wb") as fh:  # the whole `make run`: set up, then exec oa-node start
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "n"), "--port",
                                 str(port)], cwd=REPO_ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, log, timeout=120)  # type: ignore[arg-type]
        poll(lambda: "starting service relay" in log.read_text(), 60, "the relay service")
    finally:
        code = stop(proc)  # type: ignore[arg-type]
    text = log.read_text()
    said = [ln for ln in text.splitlines() if "Docker is not reachable" in ln]
    assert len(said) == 1 and "relay and wallet only" in said[0], text
    assert "second terminal" not in text
    services = re.search(r"services: (.*)", text)
    assert services and "relay" in services.group(1), text
    assert "provider" not in services.group(1) and "buyer" not in services.group(1), text
    assert code == 0, text
