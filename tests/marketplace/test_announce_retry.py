"""A provider whose relay is not listening yet (the node's own relay still starting) gets
its NIP-89 announcement out as soon as the relay is up, not one announce interval later."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from tests.marketplace.conftest import RelayProcess, free_port
from tests.marketplace.world import build, node_config, running, wait_announced

pytestmark = pytest.mark.anyio


async def test_announcement_retried_until_a_relay_takes_it(
        tmp_path: Path, sandbox_image: str, caplog: pytest.LogCaptureFixture) -> None:
    relay = RelayProcess(tmp_path / "late.sqlite3", port=free_port())
    cfg = node_config(tmp_path / "pylon", relay.url, sandbox_image,
                      provider={"announce_interval_secs": 3600})
    node = build(cfg)
    async with running(node):
        await wait_for(lambda: any("(kind 31990) reached no relay" in r.getMessage()
                                   for r in caplog.records), 30, "the first announcement to fail")
        await anyio.to_thread.run_sync(relay.start)
        try:
            # well within the retry backoff, far below the hour-long announce interval
            await wait_announced(relay.url, node.signer.public_key, timeout=30)
        finally:
            await anyio.to_thread.run_sync(relay.stop)
