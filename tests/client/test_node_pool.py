"""``node.pool`` as plugins get it: built before the loop runs, closed when the node stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import ClientError, RelayPool, State
from oa_node.config import load
from oa_node.hookspecs import hookimpl
from oa_node.node import Node, core_sections
from oa_node.nostr.event import EventTemplate
from oa_node.plugin_manager import PluginHost
from oa_node.signer import LocalSigner

from .conftest import running_relay

pytestmark = pytest.mark.anyio


async def test_plugin_service_publishes_and_queries_through_node_pool(
        tmp_path: Path, signer: LocalSigner) -> None:
    got: dict[str, Any] = {}

    class Plugin:
        @hookimpl
        def register_services(self, node: Node, register: Any) -> None:
            async def service(node: Node) -> None:
                ev = await node.signer.sign(EventTemplate(kind=1, content="from a service"))
                got["published"] = await node.pool.publish(ev, timeout=5)
                got["found"] = await node.pool.query({"ids": [ev.id]}, timeout=5)
                got["id"] = ev.id
                node.stop()
                await anyio.sleep_forever()

            register("service", service)

    async with running_relay(tmp_path / "r.db") as url:
        host = PluginHost()
        host.register(Plugin(), "test")
        cfg = load(None, core_sections())
        cfg.data["node"]["data_dir"] = str(tmp_path)
        cfg.data["node"]["relays"] = [url]
        node = Node(cfg, host, signer=signer)
        node.collect_services()
        pool = node.pool
        assert isinstance(pool, RelayPool) and pool.relays == [url]
        conn = pool.connections[url]
        with anyio.fail_after(20):
            await node.run(handle_signals=False)
        assert got["published"].accepted_by == [url]
        assert [e.id for e in got["found"]] == [got["id"]]
        assert conn.state is State.CLOSED  # the node closed its pool on the way out
        with pytest.raises(ClientError, match="closed"):
            await pool.publish(got["found"][0])
