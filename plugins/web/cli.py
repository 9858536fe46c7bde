"""``oa-node web``: the dashboard alone, over the data dir of a node that may run elsewhere."""

from __future__ import annotations

from typing import Annotated

import typer

from oa_node.cli_kit import ConfigOption, default_config_path


def web_command(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default [web] "
                                             "host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default [web] port; 0 = any "
                                             "free one).")] = None,
) -> None:
    """Serve the read-only dashboard (node, jobs, providers, wallet) on 127.0.0.1 and print
    its login URL; Ctrl-C stops it. The token is kept 0600 in the data dir."""
    import dataclasses
    import logging

    import anyio

    from oa_node.cli import setup_logging
    from oa_node.node import build_node

    from .app import serve
    from .settings import WebSettings

    node = build_node(default_config_path(config), services=False)
    setup_logging(node.config["node"]["log_level"])
    settings = WebSettings.from_section(node.config.get("web") or {})
    changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    logging.getLogger("oa_node").info("dashboard only; roles run by `oa-node start`")
    node.add_service("web", lambda node: serve(node, settings))
    anyio.run(node.run)
