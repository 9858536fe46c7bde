"""The sandbox plugin inside a running node: shutdown removes the node's containers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import wait_for
from oa_node.node import build_node
from oa_node.plugins.sandbox.config import make_sandbox
from oa_node.sandbox.base import CommandSpec, Limits, RunSpec

pytestmark = pytest.mark.docker


def test_node_shutdown_removes_running_job_containers(
        tmp_path: Path, sandbox_image: str) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[sandbox]\nimage = "{sandbox_image}"\n')
    node = build_node(cfg)
    sandbox: Any = make_sandbox(node.config)
    assert make_sandbox(node.config) is sandbox  # one per loaded config
    label = sandbox.label_filter()
    results: list[Any] = []
    job = threading.Thread(target=lambda: results.append(sandbox.run(RunSpec(
        job_id="long", commands=(CommandSpec("sleep 120"),), limits=Limits(timeout_secs=120)))))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: node.run(handle_signals=False))
            job.start()
            await wait_for(lambda: sandbox.client.api.containers(filters=label), 30,
                           "the job's container")
            node.stop()

    anyio.run(main)
    job.join(30)
    assert results and results[0].status == "error"
    assert sandbox.client.api.containers(all=True, filters=label) == []
