"""Sandbox containers whose owner died are removed; nobody else's are (real Docker).

An owner killed with SIGKILL (``oa-node sandbox run`` mid-job; a sandbox owner after its
job finished, its deferred removal not yet done) leaves its container behind. The next
start of a sandbox on that data dir (the node's runtime, as a provider or a buyer's audit
runs it) removes them, and a container whose owner PID now belongs to another process;
it leaves alone a container of another live owner of the same data dir, one of another
data dir and one without oa-node's labels. ``oa-node sandbox prune`` does the same by hand.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import wait_for, wait_until
from oa_node.node import build_node
from oa_node.sandbox.owners import (
    LABEL_DATA_DIR,
    LABEL_OWNER,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_SANDBOX,
    legacy_id,
    process_start,
)

pytestmark = pytest.mark.docker
TEST_LABEL = "oa-node.test"


@pytest.fixture
def node_dir(tmp_path: Path, sandbox_image: str, docker_client: Any) -> Iterator[Path]:
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "node.toml").write_text(
        f'[node]\ndata_dir = "."\n[sandbox]\nimage = "{sandbox_image}"\n')
    yield folder
    data_id = (folder / "sandbox-id").read_text().strip() if (
        folder / "sandbox-id").exists() else "none"
    for label in (f"{LABEL_DATA_DIR}={data_id}", f"{TEST_LABEL}={folder}"):
        for c in docker_client.api.containers(all=True, filters={"label": label}):
            docker_client.api.remove_container(c["Id"], force=True)


def cli(folder: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "oa_node.cli", "sandbox", *args,
                             "-c", str(folder / "node.toml")], cwd=folder, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def containers(client: Any, label: str) -> dict[str, dict[str, Any]]:
    return {c["Id"]: c for c in client.api.containers(all=True, filters={"label": label})}


def data_dir_id(folder: Path) -> str:
    return str(wait_until(lambda: (folder / "sandbox-id").exists() and (
        folder / "sandbox-id").read_text().strip(), 60, "the data dir's sandbox id"))


def fake_container(client: Any, image: str, folder: Path, labels: dict[str, str]) -> str:
    """A running container with the given owner labels (as another owner would make it)."""
    c = client.containers.create(image, ["sleep", "300"], network_disabled=True,
                                 labels={**labels, TEST_LABEL: str(folder)})
    c.start()
    return str(c.id)


def owner_labels(data_id: str, pid: int, start: str) -> dict[str, str]:
    return {LABEL_SANDBOX: "1", LABEL_DATA_DIR: data_id,
            LABEL_OWNER: f"{socket.gethostname()}:{pid}", LABEL_OWNER_PID: str(pid),
            LABEL_OWNER_START: start}


FINISHED_OWNER = textwrap.dedent("""\
    import sys
    from oa_node.node import build_node
    from oa_node.plugins.sandbox.config import make_sandbox
    from oa_node.sandbox.base import CommandSpec, RunSpec
    sb = make_sandbox(build_node(sys.argv[1]).config)
    held = []
    sb._remove_later = held.append  # the removal stays queued: the kill comes first
    out = sb.run(RunSpec(job_id="finished", commands=(CommandSpec("true"),)))
    print(out.status, held[0], flush=True)
    sys.stdin.read()
    """)


def test_restart_removes_containers_of_killed_owners_only(
        node_dir: Path, sandbox_image: str, docker_client: Any) -> None:
    client = docker_client
    req = node_dir / "long.json"
    req.write_text(json.dumps({"commands": [{"cmd": "sleep 300"}]}))
    finished_owner = subprocess.Popen(
        [sys.executable, "-c", FINISHED_OWNER, str(node_dir / "node.toml")], cwd=node_dir,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    running_owner: subprocess.Popen[str] | None = None
    keeper = subprocess.Popen(["sleep", "300"])  # another live owner of this data dir
    try:
        assert finished_owner.stdout is not None
        status, finished = finished_owner.stdout.readline().split()
        assert status == "success"
        data_id = data_dir_id(node_dir)
        mine = f"{LABEL_DATA_DIR}={data_id}"
        running_owner = cli(node_dir, "run", str(req), "--json")  # its start spares the other
        running = wait_until(lambda: [c for c, v in containers(client, mine).items()
                                      if v["State"] == "running"], 60, "the job's container")
        os.kill(running_owner.pid, signal.SIGKILL)  # mid-job: its container runs on
        os.kill(finished_owner.pid, signal.SIGKILL)  # its job done, the removal not yet
        running_owner.wait(10)
        finished_owner.wait(10)

        keeper_start = process_start(keeper.pid)
        assert keeper_start is not None
        live = fake_container(client, sandbox_image, node_dir,
                              owner_labels(data_id, keeper.pid, keeper_start))
        reused = fake_container(client, sandbox_image, node_dir,  # the PID went to another
                                owner_labels(data_id, keeper.pid, "boot:1"))
        other_node = fake_container(client, sandbox_image, node_dir,
                                    owner_labels("another-data-dir", running_owner.pid, ""))
        unlabelled = fake_container(client, sandbox_image, node_dir, {})
        left = containers(client, mine)
        assert running[0] in left and finished in left and left[finished]["State"] == "exited"

        node = build_node(node_dir / "node.toml")  # restart: the node's sandbox janitor

        async def restart() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: node.run(handle_signals=False))
                await wait_for(lambda: set(containers(client, mine)) == {live}, 60,
                               "the dead owners' containers to be removed")
                node.stop()

        anyio.run(restart)
        everything = containers(client, f"{TEST_LABEL}={node_dir}")
        assert set(everything) == {live, other_node, unlabelled}
        assert reused not in everything
        assert all(c["State"] == "running" for c in everything.values())
    finally:
        for proc in (running_owner, finished_owner, keeper):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_prune_lists_and_removes_orphans_by_hand(
        node_dir: Path, sandbox_image: str, docker_client: Any) -> None:
    client = docker_client
    listed = cli(node_dir, "prune", "--json")
    out, err = listed.communicate(timeout=120)
    assert listed.returncode == 0, err
    data_id = json.loads(out)["data_dir_id"]
    assert json.loads(out)["orphans"] == []

    gone = subprocess.Popen(["true"])
    gone.wait(10)
    orphan = fake_container(client, sandbox_image, node_dir,
                            owner_labels(data_id, gone.pid, ""))
    legacy = fake_container(client, sandbox_image, node_dir, {  # labelled by 0.x versions
        LABEL_SANDBOX: legacy_id(node_dir.resolve()),
        LABEL_OWNER: f"{socket.gethostname()}:{gone.pid}"})
    hostile = fake_container(client, sandbox_image, node_dir,
                             owner_labels(data_id, 10 ** 40, "x"))
    keeper = subprocess.Popen(["sleep", "300"])
    try:
        start = process_start(keeper.pid) or ""
        live = fake_container(client, sandbox_image, node_dir,
                              owner_labels(data_id, keeper.pid, start))
        dry = cli(node_dir, "prune", "--dry-run", "--json")
        out, err = dry.communicate(timeout=120)
        assert dry.returncode == 0, err
        found = json.loads(out)["orphans"]
        assert sorted((o["id"], o["removed"]) for o in found) == sorted(
            (c[:12], False) for c in (orphan, legacy, hostile))
        assert all("is gone" in o["reason"] for o in found)
        assert orphan in containers(client, f"{TEST_LABEL}={node_dir}")

        text = cli(node_dir, "prune")
        out, err = text.communicate(timeout=120)
        assert text.returncode == 0, err
        assert f"removed {orphan[:12]} (running, job ?): owner process {gone.pid} is gone" in out
        assert set(containers(client, f"{TEST_LABEL}={node_dir}")) == {live}

        helped = cli(node_dir, "prune", "--help")
        out, _ = helped.communicate(timeout=60)
        assert helped.returncode == 0 and "--dry-run" in out and "orphaned" in out
    finally:
        keeper.kill()
        keeper.wait(10)


def test_a_second_owner_of_the_data_dir_gets_the_same_id(tmp_path: Path) -> None:
    from oa_node.sandbox.owners import data_dir_id as make_id

    first = make_id(tmp_path / "d")
    assert make_id(tmp_path / "d") == first and len(first) == 32
    assert (tmp_path / "d" / "sandbox-id").stat().st_mode & 0o077 == 0
    assert make_id(tmp_path / "e") != first
    assert uuid.UUID(first)  # 128 random bits


CLEAN_EXIT = textwrap.dedent("""\
    import sys
    from oa_node.sandbox.base import CommandSpec, RunSpec
    from oa_node.sandbox.docker import DockerSandbox
    sb = DockerSandbox(default_image=sys.argv[1], namespace=sys.argv[2])
    for n in range(3):
        assert sb.run(RunSpec(job_id=f"quick-{n}", commands=(CommandSpec("true"),))
                      ).status == "success"
    """)  # exits without close(): the finished jobs' removals are still queued


def test_a_clean_exit_drains_the_removal_queue(sandbox_image: str, docker_client: Any) -> None:
    namespace = f"pytest-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, "-c", CLEAN_EXIT, sandbox_image, namespace],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    left = containers(docker_client, f"{LABEL_DATA_DIR}={namespace}")
    for cid in left:
        docker_client.api.remove_container(cid, force=True)
    assert left == {}
