"""The ``web`` plugin: a read-only dashboard of this node in a local browser.

``oa-node web`` serves it alone (reading the ledgers the node's other roles keep in the data
dir, even when another process runs them); ``[web] enabled`` makes it a service of
``oa-node start``, where it also sees the live capabilities (the wallet's balance). It
listens on 127.0.0.1 by default and asks for a token kept 0600 in the data dir, printed as a
login URL at start. Nothing it serves changes the node: GET pages, and POST only to log in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from .settings import WebSettings

    register(WebSettings.section())


@hookimpl(trylast=True)  # after the roles it shows registered their services
def register_services(node: Node, register: Callable[..., None]) -> None:
    from .settings import WebSettings

    settings = WebSettings.from_section(node.config.get("web") or {})
    if settings.enabled:
        from .app import serve

        register("web", lambda node: serve(node, settings))


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from .cli import web_command

    app.command("web")(web_command)
