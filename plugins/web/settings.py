"""``[web]``: where the dashboard listens and where its login token is kept."""

from __future__ import annotations

from dataclasses import dataclass

from oa_node.config import port
from oa_node.settings import Settings, setting


@dataclass(frozen=True)
class WebSettings(
    Settings, section="web",
    help="The read-only dashboard (`oa-node web`): node, jobs, wallet, in a local browser.",
):
    enabled: bool = setting(False, "Serve the dashboard as a service of `oa-node start`.")
    host: str = setting("127.0.0.1", "Address to listen on; the default keeps it to this "
                        "machine (anything else exposes it: put a TLS proxy in front).")
    port: int = setting(8790, "Port to listen on (0 = any free port).", check=port)
    token_file: str = setting("web.token", "The login token (made 0600 on first start), "
                              "relative to [node] data_dir.")
