"""The ``oa-node`` command: a Typer shell that plugins extend with their own sub-apps.

Exit codes: 0 success; 1 a user error (bad config, missing key file, unreachable daemon,
refused input), printed as one line; 2 a usage error (unknown option, bad argument);
anything else is a bug and prints a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from oa_node import __version__
from oa_node.cli_kit import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    ConfigOption,
    JsonOption,
    cell,
    console,
    default_config_path,
    err_console,
    lazy_sub_app,
    markdown_help,
    print_json,
    render,
    run_main,
    say,
    sub_app,
    warn,
)
from oa_node.config import ConfigError, render_example
from oa_node.errors import UserError
from oa_node.plugin_manager import PluginHost, load_plugins
from oa_node.redact import install_log_redaction

__all__ = ["console", "default_config_path", "main", "make_app", "print_json", "sub_app"]


def setup_logging(level: str) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    install_log_redaction()


# --- core commands -------------------------------------------------------------------------


def _register_core_commands(app: typer.Typer, host: PluginHost) -> None:
    lazy_sub_app(app, "keys", "oa_node.keys_cli:app", "Create, show and import the node's key.")
    app.add_typer(_config_app(host), name="config")

    @app.command()
    def version(as_json: JsonOption = False) -> None:
        """Show the oa-node version."""
        _print_version(as_json=as_json)

    @app.command()
    def plugins(as_json: JsonOption = False) -> None:
        """List loaded plugins, where they come from and which hooks they implement."""
        if as_json:
            print_json({
                "loaded": [p.__dict__ | {"hooks": list(p.hooks)} for p in host.loaded],
                "failed": [f.__dict__ for f in host.failed],
            })
            return
        from rich.table import Table

        table = Table("name", "module", "distribution", "hooks")
        for p in host.loaded:
            table.add_row(cell(p.name), cell(p.module),
                          cell(f"{p.distribution} {p.version}".strip()),
                          cell(", ".join(h.removeprefix("register_") for h in p.hooks)))
        console.print(table)
        for f in host.failed:
            err_console.print(render("[red]failed to load plugin {} ({}): {}", f.name, f.module,
                                     f.error), soft_wrap=True)

    @app.command()
    def init(
        data_dir: Annotated[Path, typer.Argument(help="Folder for config, key and data.")] = Path(
            "~/.oa-node"),
        force: Annotated[bool, typer.Option(help="Overwrite an existing config and key.")] = False,
        relay: Annotated[list[str] | None, typer.Option(
            "--relay", "-r", help="A relay the node talks to ([node] relays); repeatable. A "
            "local one (127.0.0.1, localhost) also sets the port of the node's own relay, "
            "unless --relay-port or --no-relay is given.")] = None,
        relay_port: Annotated[int | None, typer.Option(
            min=1, max=65535, help="Port of the node's own relay ([relay] port); the node "
            "talks to it when no --relay is given.")] = None,
        no_relay: Annotated[bool, typer.Option(
            "--no-relay", help="Run no relay on this node ([relay] enabled = false), e.g. "
            "a second node on a host using the first one's relay.")] = False,
        signer: Annotated[str, typer.Option(
            help="[node] signer; other than 'local' (e.g. 'frost'), no node.key is written.")
        ] = "local",
        as_json: JsonOption = False,
    ) -> None:
        """Write a starter node.toml and a new key into DATA_DIR.

        Several nodes on one host: give each its own --relay-port, or run one relay and
        make the others with `--no-relay --relay ws://127.0.0.1:PORT`."""
        from oa_node.files import private_dir, write_private
        from oa_node.node import core_sections
        from oa_node.signer import LocalSigner, write_key_file

        data_dir = private_dir(data_dir.expanduser().resolve())
        cfg_path = data_dir / DEFAULT_CONFIG_NAME
        if cfg_path.exists() and not force:
            raise UserError(f"{cfg_path}: already exists (use --force to overwrite)")
        sections = core_sections() + host.registries.config_sections()  # type: ignore[operator]
        known = {"local", *host.registries.signers()}
        if signer not in known:
            raise UserError(f"--signer: no such signer {signer!r} (known: {', '.join(known)})")
        local = LocalSigner.generate() if signer == "local" else None
        key_path = (write_key_file(data_dir / "node.key", local.secret_key, force=force)
                    if local is not None else None)
        node_values: dict[str, Any] = {"data_dir": ".", "signer": signer}
        relay_values = _own_relay(relay or [], relay_port, no_relay)
        if relay:
            node_values["relays"] = list(relay)
        elif relay_port is not None:
            node_values["relays"] = [f"ws://127.0.0.1:{relay_port}"]
        text = render_example(sections, {"node": node_values, "relay": relay_values},
                              starter=True)
        write_private(  # 0600: a config may come to hold secrets (a DSN, a wallet URI)
            cfg_path, "# oa-node starter config, written by `oa-node init`. Every key is "
            "documented;\n# commented keys show their defaults.\n\n" + text, force=True)
        if as_json:
            print_json({"config": str(cfg_path), "key_file": key_path and str(key_path),
                        "public_key": local and local.public_key, "signer": signer})
            return
        from oa_node.nostr import nip19

        say("wrote {}", cfg_path)
        if local is not None:
            say("wrote {} (mode 0600)", key_path)
            say("node identity: {}", nip19.npub_encode(local.public_key))
        else:
            say("no node key: the identity comes from the {} signer (configure it)", signer)
        say("start it with: oa-node start --config {}", cfg_path)

    @app.command()
    def start(config: ConfigOption = None) -> None:
        """Load plugins, validate the config and run every enabled role until SIGINT/SIGTERM."""
        import anyio

        from oa_node.node import build_node

        node = build_node(default_config_path(config), host=host)  # entry points: once
        setup_logging(node.config["node"]["log_level"])
        log = logging.getLogger("oa_node")
        for line in node.config.warnings:
            log.warning("%s", line)
        log.info("oa-node %s, config %s, data dir %s", __version__,
                 node.config.path or "(embedded defaults)", node.data_dir)
        log.info("identity %s (%s signer)", node.signer.public_key,
                 node.config["node"]["signer"])
        log.info("services: %s", ", ".join(s.name for s in node.services) or "none")
        anyio.run(node.run)


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _own_relay(relays: list[str], port: int | None, off: bool) -> dict[str, Any]:
    """``[relay]`` values for ``init``: off, on ``port``, or on the port of the first local
    relay URL given (a node talking to ws://127.0.0.1:PORT must not listen elsewhere)."""
    from urllib.parse import urlsplit

    if off:
        return {"enabled": False}
    if port is not None:
        return {"port": port}
    for url in relays:
        try:
            parts = urlsplit(url)
            local_port = parts.port
        except ValueError:
            raise UserError(f"--relay {url!r}: not a ws:// or wss:// URL") from None
        host = (parts.hostname or "").lower()
        if parts.scheme == "ws" and local_port and (host in _LOCAL_HOSTS or host == "::1"):
            return {"port": local_port}
    return {}


def _config_app(host: PluginHost) -> typer.Typer:
    app = typer.Typer(help="Check and document node.toml.", no_args_is_help=True)

    def sections() -> list[Any]:
        from oa_node.node import core_sections

        return core_sections() + host.registries.config_sections()  # type: ignore[operator]

    @app.command()
    def check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Validate a config file: every error at once (one line each, exit 1), keys checked
        together (a DSN the storage needs, a wallet URI file that must exist); `--json`
        shows the resulting values (defaults filled in)."""
        from oa_node import config as config_mod

        path = default_config_path(config)
        cfg = config_mod.load(path, sections(), disabled=host.disabled, checks=True)
        if as_json:
            print_json({"path": str(path) if path else None, "config": cfg.redacted(),
                        "warnings": cfg.warnings})
            return
        for line in cfg.warnings:
            warn("{}", line)
        say("{}: ok", path or "(embedded defaults)")

    @app.command()
    def example() -> None:
        """Print a config documenting every key of every loaded plugin, with defaults."""
        sys.stdout.write(render_example(sections()))

    return app


# --- app assembly ----------------------------------------------------------------------------


def _disabled_from_config(argv: list[str]) -> frozenset[str]:
    """Honour ``[plugins] disable`` for CLI commands too, before Typer parses argv."""
    path: Path | None = None
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    path = default_config_path(path)
    if path is None or not path.exists():
        return frozenset()
    try:
        from oa_node.config import read_toml

        raw, _ = read_toml(path)
    except ConfigError:
        return frozenset()  # the command itself reports the broken file
    table = raw.get("plugins")
    disable = table.get("disable", []) if isinstance(table, dict) else []
    return frozenset(str(x) for x in disable) if isinstance(disable, list) else frozenset()


def make_app(host: PluginHost | None = None) -> typer.Typer:
    """The CLI with core commands and every loaded plugin's commands."""
    if host is None:
        host = load_plugins(_disabled_from_config(sys.argv[1:]))
    app = typer.Typer(
        name="oa-node",
        help="oa-node: relay, compute provider and buyer, payments, GitAfter, NIP-SA and FROSTR "
        "for an open agent marketplace over Nostr.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    _register_core_commands(app, host)
    lazy_sub_app(app, "relay", "oa_node.client.cli:app", "Inspect and use relays")
    for impl in host.hook.register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:  # one broken plugin must not take the whole CLI down
            host.fail(impl.plugin_name, f"register_commands: {type(exc).__name__}: {exc}")
            warn("plugin {}: commands not loaded ({})", impl.plugin_name, exc)
    markdown_help(app)
    # The root help is plain text (no markup in its texts): rendering it does not import
    # a Markdown parser, which `oa-node --help` would pay for at every start.
    app.rich_markup_mode = None
    return app


def main() -> None:
    run_main(lambda: make_app()())


def _print_version(*, as_json: bool) -> None:
    if as_json:
        print_json({"version": __version__})
    else:
        sys.stdout.write(f"oa-node {__version__}\n")


if __name__ == "__main__":  # pragma: no cover
    main()
