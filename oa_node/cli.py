"""The ``oa-node`` command: a Typer shell that plugins extend with their own sub-apps.

Exit codes: 0 success; 1 a user error (bad config, missing key file, unreachable daemon,
refused input), printed as one line; 2 a usage error (unknown option, bad argument);
anything else is a bug and prints a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from oa_node import __version__
from oa_node.config import ConfigError, render_example
from oa_node.errors import UserError
from oa_node.plugin_manager import PluginHost, load_plugins
from oa_node.redact import install_log_redaction, redact

console = Console()
err_console = Console(stderr=True)

CONFIG_ENV = "OA_NODE_CONFIG"
DEFAULT_CONFIG_NAME = "node.toml"

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar=CONFIG_ENV,
        help="Config file (default: ./node.toml if present, else the embedded defaults).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def default_config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    candidate = Path.cwd() / DEFAULT_CONFIG_NAME
    return candidate if candidate.exists() else None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


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
    from oa_node import keys_cli

    app.add_typer(keys_cli.app, name="keys")
    app.add_typer(_config_app(host), name="config")

    @app.command()
    def version(as_json: JsonOption = False) -> None:
        """Show the oa-node version."""
        if as_json:
            print_json({"version": __version__})
        else:
            console.print(f"oa-node {__version__}")

    @app.command()
    def plugins(as_json: JsonOption = False) -> None:
        """List loaded plugins, where they come from and which hooks they implement."""
        if as_json:
            print_json({
                "loaded": [p.__dict__ | {"hooks": list(p.hooks)} for p in host.loaded],
                "failed": [f.__dict__ for f in host.failed],
            })
            return
        table = Table("name", "module", "distribution", "hooks")
        for p in host.loaded:
            table.add_row(p.name, p.module, f"{p.distribution} {p.version}".strip(),
                          ", ".join(h.removeprefix("register_") for h in p.hooks))
        console.print(table)
        for f in host.failed:
            err_console.print(f"[red]failed to load plugin {f.name} ({f.module}): {f.error}")

    @app.command()
    def init(
        data_dir: Annotated[Path, typer.Argument(help="Folder for config, key and data.")] = Path(
            "~/.oa-node"),
        force: Annotated[bool, typer.Option(help="Overwrite an existing config and key.")] = False,
        relay: Annotated[list[str] | None, typer.Option(
            "--relay", "-r", help="A relay the node talks to ([node] relays); repeatable.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Write a starter node.toml and a new key into DATA_DIR."""
        from oa_node.node import core_sections
        from oa_node.signer import LocalSigner, write_key_file

        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = data_dir / DEFAULT_CONFIG_NAME
        if cfg_path.exists() and not force:
            raise UserError(f"{cfg_path}: already exists (use --force to overwrite)")
        signer = LocalSigner.generate()
        key_path = write_key_file(data_dir / "node.key", signer.secret_key, force=force)
        sections = core_sections() + host.registries.config_sections()  # type: ignore[operator]
        node_values: dict[str, Any] = {"data_dir": "."}
        if relay:
            node_values["relays"] = list(relay)
        text = render_example(sections, {"node": node_values}, starter=True)
        cfg_path.write_text(
            "# oa-node starter config, written by `oa-node init`. Every key is documented;\n"
            "# commented keys show their defaults.\n\n" + text, encoding="utf-8")
        if as_json:
            print_json({"config": str(cfg_path), "key_file": str(key_path),
                        "public_key": signer.public_key})
            return
        from oa_node.nostr import nip19

        console.print(f"wrote {cfg_path}\nwrote {key_path} (mode 0600)")
        console.print(f"node identity: {nip19.npub_encode(signer.public_key)}")
        console.print(f"start it with: oa-node start --config {cfg_path}")

    @app.command()
    def start(config: ConfigOption = None) -> None:
        """Load plugins, validate the config and run every enabled role until SIGINT/SIGTERM."""
        import anyio

        from oa_node.node import build_node

        node = build_node(default_config_path(config))
        setup_logging(node.config["node"]["log_level"])
        log = logging.getLogger("oa_node")
        log.info("oa-node %s, config %s, data dir %s", __version__,
                 node.config.path or "(embedded defaults)", node.data_dir)
        log.info("identity %s (%s signer)", node.signer.public_key,
                 node.config["node"]["signer"])
        log.info("services: %s", ", ".join(s.name for s in node.services) or "none")
        anyio.run(node.run)


def _config_app(host: PluginHost) -> typer.Typer:
    app = typer.Typer(help="Check and document node.toml.", no_args_is_help=True)

    def sections() -> list[Any]:
        from oa_node.node import core_sections

        return core_sections() + host.registries.config_sections()  # type: ignore[operator]

    @app.command()
    def check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Validate a config file and show the resulting values (defaults filled in)."""
        from oa_node import config as config_mod

        path = default_config_path(config)
        cfg = config_mod.load(path, sections())
        if as_json:
            print_json({"path": str(path) if path else None, "config": cfg.redacted()})
        else:
            console.print(f"{path or '(embedded defaults)'}: ok")

    @app.command()
    def example() -> None:
        """Print a config documenting every key of every loaded plugin, with defaults."""
        sys.stdout.write(render_example(sections()))

    return app


# --- app assembly ----------------------------------------------------------------------------


def sub_app(app: typer.Typer, name: str) -> typer.Typer | None:
    """The sub-app registered as ``name`` (e.g. ``relay``), so a plugin can add a command
    to an existing group instead of creating a rival one."""
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    return None



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


def _markdown_help(app: typer.Typer) -> None:
    """Help texts name config sections like ``[node]``: render help as Markdown, which
    keeps them, instead of Rich markup, which would swallow them as style tags."""
    app.rich_markup_mode = "markdown"
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _markdown_help(group.typer_instance)


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
    from oa_node.client.cli import app as relay_app

    app.add_typer(relay_app, name="relay")
    for impl in host.hook.register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:  # one broken plugin must not take the whole CLI down
            host.fail(impl.plugin_name, f"register_commands: {type(exc).__name__}: {exc}")
            err_console.print(f"[yellow]warning:[/] plugin {impl.plugin_name}: commands not "
                              f"loaded ({escape(str(exc))})", soft_wrap=True)
    _markdown_help(app)
    return app


def main() -> None:
    try:
        make_app()()
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False,
                          soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
