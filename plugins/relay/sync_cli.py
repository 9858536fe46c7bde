"""``oa-node relay sync URL``: reconcile the local relay with a remote one (NIP-77)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import typer

from oa_node.cli_kit import (
    ConfigOption,
    JsonOption,
    console,
    default_config_path,
    fail,
    print_json,
    render,
)


def _node(config: Any) -> Any:
    """The node (never started) over ``config``: its [relay] table, data dir and key."""
    from oa_node.plugins.relay.standalone import relay_config

    return relay_config(str(config) if config else None)


def _local_url(node: Any) -> str:
    """The node's own relay, from its ``[relay]`` host and port."""
    table = node.config["relay"]
    host = table["host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{table['port']}"


def _signer(node: Any) -> Any:
    """The node's signer for NIP-42, or None when it has no key yet (a relay that asks
    for auth then refuses with one line saying so)."""
    from oa_node.errors import UserError

    if node.config["node"]["signer"] == "local" and not node.key_path.exists():
        return None
    try:
        return node.signer
    except UserError as exc:
        fail(str(exc))


def _own_store(node: Any) -> Any:
    """The node relay's store, read directly for its ids (None: an SQLite file that does
    not exist yet, which opening would create; the relay is read instead)."""
    from pathlib import Path

    from oa_node.plugins.relay.standalone import store_from_config

    table = node.config["relay"]
    if table.get("storage", "sqlite") == "sqlite":
        path = Path(table.get("sqlite_path") or "relay.sqlite3").expanduser()
        if not (path if path.is_absolute() else Path(node.data_dir) / path).exists():
            return None
    return store_from_config(table, node.data_dir)


def sync_command(
    url: Annotated[str, typer.Argument(help="The remote relay (ws:// or wss://).")],
    filter_json: Annotated[str, typer.Option(
        "--filter", help='A NIP-01 filter (JSON, no limit), e.g. \'{"kinds":[1]}\'.')] = "{}",
    direction: Annotated[str, typer.Option(
        help="down: fetch what we lack; up: publish what the remote lacks; both.")] = "both",
    local: Annotated[str | None, typer.Option(
        help="The local relay URL (default: this node's [relay] host and port).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds to wait for each relay answer.")] = 30.0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reconcile the local relay with URL by NIP-77 (negentropy): only the differences
    cross the network; then fetch the events we lack and/or publish those it lacks.
    Either relay that requires NIP-42 auth gets the node's key. The node's own relay's
    ids are read from its store; another one's (--local) by paged REQs. At most
    [relay.limits] negentropy_max_records local events are reconciled at once."""
    # imported here: `oa-node --help` must not load the client (coincurve, websockets)
    from oa_node.client.errors import ClientError
    from oa_node.client.negsync import DIRECTIONS, MAX_LOCAL, sync
    from oa_node.client.urls import normalize_relay_url
    from oa_node.store import StoreError

    if direction not in DIRECTIONS:
        raise typer.BadParameter(f"must be one of {', '.join(DIRECTIONS)}",
                                 param_hint="--direction")
    try:
        filt = json.loads(filter_json)
    except ValueError:
        fail("--filter is not JSON")
    if not isinstance(filt, dict):
        fail("--filter must be a JSON object")
    node = _node(default_config_path(config))
    try:
        remote = normalize_relay_url(url)
        local_url = normalize_relay_url(local) if local else _local_url(node)
    except ClientError as exc:
        fail(str(exc))
    signer = _signer(node)
    # the node's own cap on one reconciliation bounds what the sync holds in memory too
    cap = node.config["relay"]["limits"]["negentropy_max_records"] or MAX_LOCAL
    # our own relay's store gives its ids in one scan; another relay (--local) is read
    store = None if local else _own_store(node)

    async def go() -> Any:
        if store is None:
            return await sync(local_url, remote, filt, direction, timeout, signer=signer,
                              max_local=cap)
        await store.open()
        try:
            return await sync(local_url, remote, filt, direction, timeout, signer=signer,
                              local_store=store, max_local=cap)
        finally:
            await store.close()

    try:
        res = anyio.run(go, backend="asyncio")
    except (ClientError, StoreError) as exc:
        fail(str(exc))
    out = res.as_dict() | {"local": local_url, "remote": remote, "direction": direction}
    if as_json:
        print_json(out)
        return
    console.print(render("[bold]{}[/] <-> [bold]{}[/]: {} local events, remote lacks {}, we "
                         "lack {}", local_url, remote, res.local_count, res.have, res.need))
    console.print(render("reconciliation: {} bytes in {} rounds; copying: {} bytes",
                         res.neg_bytes, res.rounds, res.transfer_bytes))
    if direction in ("down", "both"):
        console.print(render("fetched {}, stored locally {}", res.fetched, res.stored_locally))
    if direction in ("up", "both"):
        console.print(render("published to the remote {}", res.published))
    for line in res.refused[:10]:
        console.print(render("[yellow]refused[/] {}", line))
