"""``oa-node frost``: make k-of-n keys, check shares, sign through peers, see who answers.

Exit codes as the rest of ``oa-node``: 0 success, 1 a user error (one line, no traceback),
2 a usage error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer
from rich.table import Table

from oa_node.cli_kit import (
    JsonOption,
    cell,
    config_option,
    console,
    default_config_path,
    print_json,
    read_text_input,
    render,
    say,
)
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import EventTemplate

app = typer.Typer(
    help="FROSTR threshold identities: k-of-n shares that sign ordinary Nostr events.",
    no_args_is_help=True,
)
T = TypeVar("T")

ConfigOption = config_option("Config file with a [frostr] section (default: ./node.toml).")
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v",
                                             help="Log at debug level (default: [node] "
                                                  "log_level).")]
PasswordEnvOption = Annotated[
    str | None,
    typer.Option("--password-env", metavar="VAR",
                 help="Environment variable holding the share password."),
]


def _password(var: str | None) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise UserError(f"--password-env: environment variable {var} is not set or empty")
    return value


def _holder(config: Path | None, verbose: bool = False) -> Any:
    from oa_node.cli import setup_logging
    from oa_node.node import build_node
    from oa_node.plugins.frostr import holder_for

    path = default_config_path(config)
    if path is None:
        raise UserError("no config: pass --config FILE with a [frostr] section")
    node = build_node(path)
    setup_logging("debug" if verbose else node.config["node"]["log_level"])
    return holder_for(node.config, node.plugins)


def _with_holder(holder: Any, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` while the holder is connected to its relays, then stop it."""
    out: list[T] = []
    errors: list[Exception] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(holder.run)
            try:
                out.append(await fn())
            except Exception as exc:  # raised below, outside the task group's ExceptionGroup
                errors.append(exc)
            finally:
                tg.cancel_scope.cancel()

    anyio.run(main)
    if errors:
        raise errors[0]
    return out[0]


@app.command()
def keygen(
    threshold: Annotated[int, typer.Option("--threshold", "-k", min=1,
                                           help="Shares needed to sign.")] = 2,
    shares: Annotated[int, typer.Option("--shares", "-n", min=1, max=1000,
                                        help="Shares to make.")] = 3,
    from_nsec: Annotated[bool, typer.Option(
        "--from-nsec", help="Split an existing key (nsec1… or hex, read from stdin): the "
        "group key is then that key's npub.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write group.txt and share-<i> files (mode 0600) here.")] = None,
    password_env: PasswordEnvOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make a k-of-n group by trusted dealer: a new key, or split an existing nsec."""
    from oa_node.plugins.frostr import encoding, frost, sharefile
    from oa_node.signer import parse_secret

    if threshold > shares:
        raise typer.BadParameter("--threshold cannot exceed --shares")
    password = _password(password_env)
    secret = None
    if from_nsec:
        text = (typer.prompt("nsec", hide_input=True) if sys.stdin.isatty()
                else sys.stdin.readline())
        try:
            secret = int.from_bytes(parse_secret(text), "big")
        except (UserError, ProtocolError) as exc:
            raise UserError(f"--from-nsec: {exc}") from None
        if not 0 < secret < frost.N:
            raise UserError("--from-nsec: not a valid secret key")
    group, share_list = encoding.from_dealer(frost.dealer_keygen(threshold, shares, secret))
    npub = nip19.npub_encode(group.public_key)
    result: dict[str, Any] = {"group": group.encode(), "public_key": group.public_key,
                              "npub": npub, "threshold": threshold, "shares": []}
    if out is not None:
        gpath = sharefile.write_group(out / "group.txt", group, force=force)
        result["group_file"] = str(gpath)
        for s in share_list:
            path = sharefile.write_share(out / f"share-{s.idx}", s, password, force=force)
            result["shares"].append({"idx": s.idx, "share_key": s.public_key, "file": str(path),
                                     "encrypted": password is not None})
    else:
        if password is not None:
            raise UserError("--password-env needs --out (encrypted shares are written to files)")
        for s in share_list:
            result["shares"].append({"idx": s.idx, "share_key": s.public_key,
                                     "bfshare": s.encode()})
    if as_json:
        print_json(result)
        return
    say("[bold]{}-of-{} group[/] for {}", threshold, shares, npub)
    say("group: {}", cell(result.get("group_file") or group.encode(), limit=None))
    for s in result["shares"]:
        say("share {}: {}", s["idx"], cell(s.get("file") or s["bfshare"], limit=None))
    if out is None:
        say("[yellow]each bfshare is a secret: give one to each holder[/]")


@app.command("verify-share")
def verify_share(
    share: Annotated[str, typer.Argument(help="A share file or a bfshare1… string.")],
    group: Annotated[str, typer.Option("--group", "-g",
                                       help="A bfgroup1… string or a file holding one.")],
    password_env: PasswordEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check that a share belongs to a group (and that the group is consistent)."""
    from oa_node.plugins.frostr import encoding, sharefile

    g = sharefile.load_group(group, Path.cwd())
    s = sharefile.load_share(share, _password(password_env), Path.cwd())
    try:
        encoding.check_share(g, s)
    except encoding.EncodingError as exc:
        raise UserError(str(exc)) from None
    info = {"valid": True, "idx": s.idx, "share_key": s.public_key, "threshold": g.threshold,
            "members": len(g.members), "group_public_key": g.public_key,
            "npub": nip19.npub_encode(g.public_key)}
    if as_json:
        print_json(info)
    else:
        say("[green]ok[/]: share {} of a {}-of-{} group for {}", s.idx, g.threshold,
            len(g.members), info["npub"])


def _read_template(path: str) -> EventTemplate:
    text = read_text_input(path)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not JSON: {exc}") from None
    if not isinstance(obj, dict) or type(obj.get("kind")) is not int:
        raise UserError(f"{path}: expected an event object with an integer kind")
    tags = obj.get("tags", [])
    content = obj.get("content", "")
    created_at = obj.get("created_at")
    if not isinstance(tags, list) or not isinstance(content, str) or (
            created_at is not None and type(created_at) is not int):
        raise UserError(f"{path}: tags must be a list, content a string, created_at an integer")
    return EventTemplate(kind=obj["kind"], content=content, tags=tags, created_at=created_at)


def _sign_hash(holder: Any, text: str, as_json: bool) -> None:
    try:
        sighash = bytes.fromhex(text)
    except ValueError:
        sighash = b""
    if len(sighash) != 32:
        raise UserError("--hash: expected 64 hex characters (a 32-byte hash)")
    result = _with_holder(holder, lambda: holder.sign(sighash))
    out = {"sighash": sighash.hex(), "signature": result.signature.hex(),
           "group_public_key": holder.group.public_key, "signers": result.signers,
           "cheaters": result.cheaters}
    if as_json:
        print_json(out)
    else:
        sys.stdout.write(out["signature"] + "\n")


@app.command()
def sign(
    event: Annotated[str | None, typer.Argument(
        help="Event JSON file (kind, content, tags; '-' for stdin). Any pubkey/id/sig in "
             "it is replaced.")] = None,
    sighash: Annotated[str | None, typer.Option(
        "--hash", metavar="HEX", help="Sign this raw 32-byte hash instead of an event "
        "(peers sign a bare hash only with [frostr.policy] allow_bare_hashes).")] = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to gather the signers.")] = 30.0,
    verbose: VerboseOption = False,
    as_json: JsonOption = False,
) -> None:
    """Sign an event (or a raw hash) by the group, through the peers over the relays."""
    from oa_node.plugins.frostr.signer import FrostSigner

    if (event is None) == (sighash is None):
        raise typer.BadParameter("give an event file or --hash HEX (one of them)")
    template = _read_template(event) if event is not None else None
    holder = _holder(config, verbose)
    holder.sign_timeout = timeout
    if template is None:
        _sign_hash(holder, sighash or "", as_json)
        return
    signer = FrostSigner(holder)
    signed = _with_holder(holder, lambda: signer.sign(template))
    result = signer.last_result
    assert result is not None
    if as_json:
        print_json({"event": signed.to_dict(), "signers": result.signers,
                     "cheaters": result.cheaters})
    else:
        sys.stdout.write(signed.to_json() + "\n")
        if result.cheaters:
            say("[yellow]members {} sent invalid partial signatures[/]", result.cheaters)


@app.command()
def ecdh(
    pubkey: Annotated[str, typer.Argument(help="The other party's public key (hex or npub).")],
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to gather the signers.")] = 30.0,
    verbose: VerboseOption = False,
    as_json: JsonOption = False,
) -> None:
    """Threshold ECDH with PUBKEY: the shared x coordinate (a secret: the NIP-44
    conversation key between the group and PUBKEY derives from it)."""
    from oa_node.plugins.frostr.config import normalize_pubkey
    from oa_node.plugins.frostr.holder import nip44_conversation_key_from_x

    try:
        peer = normalize_pubkey(pubkey)
    except ValueError as exc:
        raise UserError(f"PUBKEY: {exc}") from None
    holder = _holder(config, verbose)
    holder.sign_timeout = timeout
    shared = _with_holder(holder, lambda: holder.ecdh(peer))
    out = {"pubkey": peer, "group_public_key": holder.group.public_key,
           "shared_x": shared.hex(),
           "nip44_conversation_key": nip44_conversation_key_from_x(shared).hex()}
    if as_json:
        print_json(out)
    else:
        sys.stdout.write(out["shared_x"] + "\n")


@app.command()
def status(
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds to keep trying the peers (pings are repeated with backoff, so a relay "
             "that is reconnecting still counts).")] = 5.0,
    verbose: VerboseOption = False,
    as_json: JsonOption = False,
) -> None:
    """Ping every peer: which ones answer, and how fast. Exit 1 when fewer than the
    threshold (this holder included) are reachable."""
    holder = _holder(config, verbose)
    results = _with_holder(holder, lambda: holder.ping_window(timeout))
    rows = []
    for key, st in sorted(holder.peers.items(), key=lambda kv: kv[1].idx):
        r = results.get(key)
        ok = isinstance(r, float)
        rows.append({"idx": st.idx, "share_key": key, "online": ok,
                     "rtt_ms": round(r * 1000, 1) if ok else None,
                     "error": None if ok else r})
    members, k = len(holder.group.members), holder.group.threshold
    reachable = sum(r["online"] for r in rows) + 1  # this holder
    data = {"group_public_key": holder.group.public_key, "idx": holder.idx,
            "threshold": k, "members": members, "peers": rows,
            "online": reachable - 1, "reachable": reachable, "can_sign": reachable >= k}
    if as_json:
        print_json(data)
        if not data["can_sign"]:
            raise typer.Exit(1)
        return
    table = Table(title=render("member {} of {}", holder.idx,
                               nip19.npub_encode(holder.group.public_key)))
    for col in ("idx", "share key", "status", "rtt ms"):
        table.add_column(col)
    for r in rows:
        table.add_row(cell(r["idx"]), cell(r["share_key"][:16] + "…"),
                      cell("online", style="green") if r["online"] else
                      cell(r["error"], style="red"),
                      "" if r["rtt_ms"] is None else str(r["rtt_ms"]))
    console.print(table)
    verdict = "can sign" if data["can_sign"] else "cannot sign"
    say(("[green]" if data["can_sign"] else "[red]") +
        "{} of {} signers reachable (this one included), {} needed: {}[/]",
        reachable, members, k, verdict)
    if not data["can_sign"]:
        raise typer.Exit(1)
