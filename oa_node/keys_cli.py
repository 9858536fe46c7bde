"""``oa-node keys``: create, show and import the node's secret key (mode 0600)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from oa_node.cli_kit import JsonOption, config_option, default_config_path, print_json, say
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import generate_secret_key, public_key_hex
from oa_node.signer import KeyFileError, parse_secret, read_key_file, write_key_file

if TYPE_CHECKING:
    from oa_node.config import Config

app = typer.Typer(help="Create, show and import the node's key.", no_args_is_help=True)

KeyFileOption = Annotated[
    Path | None,
    typer.Option("--key-file", "-k", help="Key file (default: [node] key_file of the config)."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")]


def _config_key_path(config: Path | None) -> Path:
    from oa_node.config import load
    from oa_node.node import core_sections

    path = default_config_path(config)
    # Only the [node] section matters here; other sections are validated by `config check`.
    cfg = load(path, core_sections()) if path is None else _load_node_section(path)
    data_dir = cfg.resolve_path(cfg["node"]["data_dir"])
    return data_dir / cfg["node"]["key_file"]


def _load_node_section(path: Path) -> Config:
    from oa_node.config import read_toml, validate
    from oa_node.node import core_sections

    raw, text = read_toml(path)
    wanted = {k: v for k, v in raw.items() if k in ("node", "plugins")}
    return validate(core_sections(), wanted, path, text)


def _key_path(key_file: Path | None, config: Path | None) -> Path:
    return key_file.expanduser() if key_file else _config_key_path(config)


def _describe(secret: bytes, path: Path, show_secret: bool) -> dict[str, str]:
    pub = public_key_hex(secret)
    out = {"key_file": str(path), "public_key": pub, "npub": nip19.npub_encode(pub)}
    if show_secret:
        out["nsec"] = nip19.nsec_encode(secret)
    return out


def _print(info: dict[str, str], as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    for k, v in info.items():
        say("{:>10}  {}", k, v)


ConfigOpt = config_option("Config naming the key file.")
JsonOpt = JsonOption


@app.command()
def generate(key_file: KeyFileOption = None, config: ConfigOpt = None, force: ForceOption = False,
             as_json: JsonOpt = False) -> None:
    """Generate a new secret key and write it with mode 0600."""
    path = _key_path(key_file, config)
    secret = generate_secret_key()
    write_key_file(path, secret, force=force)
    _print(_describe(secret, path, False), as_json)


@app.command()
def show(key_file: KeyFileOption = None, config: ConfigOpt = None,
         nsec: Annotated[bool, typer.Option("--nsec", help="Also print the secret key.")] = False,
         as_json: JsonOpt = False) -> None:
    """Show the node's public key (npub and hex)."""
    path = _key_path(key_file, config)
    _print(_describe(read_key_file(path), path, nsec), as_json)


@app.command("import")
def import_key(
    secret: Annotated[str, typer.Argument(
        help="Secret key as 64 hex chars or nsec1..., or - for stdin.")],
    key_file: KeyFileOption = None, config: ConfigOpt = None, force: ForceOption = False,
    as_json: JsonOpt = False,
) -> None:
    """Import an existing secret key (hex or nsec) into the key file."""
    if secret == "-":
        secret = sys.stdin.readline()
    try:
        raw = parse_secret(secret)
    except (KeyFileError, ProtocolError) as exc:
        raise UserError(f"cannot import key: {exc}") from None
    path = _key_path(key_file, config)
    write_key_file(path, raw, force=force)
    _print(_describe(raw, path, False), as_json)
