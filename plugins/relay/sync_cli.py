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


def _local_url(config: Any) -> str:
    """The node's own relay, from its ``[relay]`` host and port."""
    from oa_node.plugins.relay.standalone import relay_config

    node = relay_config(str(config) if config else None)
    table = node.config["relay"]
    host = table["host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{table['port']}"


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
    cross the network; then fetch the events we lack and/or publish those it lacks."""
    # imported here: `oa-node --help` must not load the client (coincurve, websockets)
    from oa_node.client.errors import ClientError
    from oa_node.client.negsync import DIRECTIONS, sync
    from oa_node.client.urls import normalize_relay_url

    if direction not in DIRECTIONS:
        raise typer.BadParameter(f"must be one of {', '.join(DIRECTIONS)}",
                                 param_hint="--direction")
    try:
        filt = json.loads(filter_json)
    except ValueError:
        fail("--filter is not JSON")
    if not isinstance(filt, dict):
        fail("--filter must be a JSON object")
    try:
        remote = normalize_relay_url(url)
        local_url = normalize_relay_url(local) if local else _local_url(default_config_path(config))
    except ClientError as exc:
        fail(str(exc))

    async def go() -> Any:
        return await sync(local_url, remote, filt, direction, timeout)

    try:
        res = anyio.run(go, backend="asyncio")
    except ClientError as exc:
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
