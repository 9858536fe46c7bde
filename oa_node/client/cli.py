"""``oa-node relay ...``: query, publish to and inspect relays from the shell.

Exit codes: 0 success; 1 a user-facing failure (relay unreachable, event refused by every
relay, bad event file, bad key file), printed as one ``error:`` line without a traceback;
2 a usage error (bad or conflicting options).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import typer
from rich.table import Table
from rich.text import Text

from oa_node.cli_kit import cell, clean, console, print_error, say, warn
from oa_node.client.errors import ClientError
from oa_node.client.nip11 import fetch_relay_info
from oa_node.client.pool import PublishResult, RelayPool
from oa_node.client.urls import normalize_relay_url
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.filter import Filter
from oa_node.nostr.keys import is_hex
from oa_node.signer import KeyFileError, LocalSigner

app = typer.Typer(help="Inspect and use relays", no_args_is_help=True)

T = TypeVar("T")

RelayOpt = typer.Option(..., "--relay", "-r", help="Relay URL (ws:// or wss://); repeatable.")
TimeoutOpt = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for relays.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


# --- helpers ----------------------------------------------------------------------------

def _fail(message: str) -> NoReturn:
    """One ``error:`` line and exit code 1 (here rather than a UserError: the relay
    commands are also run on their own, without ``oa-node``'s error handler)."""
    print_error(message)
    raise typer.Exit(1)


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run the async part; expected failures become one error line and exit code 1."""
    try:
        return anyio.run(fn, backend="asyncio")
    except (ClientError, KeyFileError, ProtocolError) as exc:
        _fail(str(exc))


def _signer(key_file: Path | None) -> LocalSigner | None:
    """The ``--key-file`` signer, if one was given (a bad key file is one error line)."""
    if key_file is None:
        return None
    try:
        return LocalSigner.from_file(key_file)
    except KeyFileError as exc:
        _fail(str(exc))


def _relays(urls: list[str]) -> list[str]:
    out = []
    for url in urls:
        try:
            out.append(normalize_relay_url(url))
        except ClientError as exc:
            raise typer.BadParameter(str(exc), param_hint="--relay") from None
    return list(dict.fromkeys(out))


def _hex_or_bech32(value: str, prefixes: tuple[str, ...], what: str, hint: str) -> str:
    if is_hex(value.lower(), 32):
        return value.lower()
    try:
        decoded = nip19.decode(value)
    except ProtocolError as exc:
        raise typer.BadParameter(f"{value!r}: expected 64 hex or {'/'.join(prefixes)} "
                                 f"({exc.reason})", param_hint=hint) from None
    if decoded.prefix not in prefixes:
        raise typer.BadParameter(f"{value!r} is an {decoded.prefix}, not a {what}",
                                 param_hint=hint)
    data = decoded.data
    if isinstance(data, dict):
        return str(data["pubkey"] if "pubkey" in data and decoded.prefix == "nprofile"
                   else data["id"])
    return data


def _tag_pair(spec: str, hint: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"{spec!r}: expected NAME=VALUE", param_hint=hint)
    return name, value


def _build_filters(kind: list[int] | None, author: list[str] | None, ids: list[str] | None,
                   tag: list[str] | None, since: int | None, until: int | None,
                   limit: int | None, filter_json: list[str] | None) -> list[Filter]:
    field_given = any([kind, author, ids, tag, since is not None, until is not None])
    if filter_json:
        if field_given:
            raise typer.BadParameter("use either --filter JSON or the filter options "
                                     "(--kind, --author, --id, --tag, --since, --until)",
                                     param_hint="--filter")
        filters = []
        for text in filter_json:
            try:
                obj = json.loads(text)
                if limit is not None and isinstance(obj, dict):
                    obj.setdefault("limit", limit)
                filters.append(Filter.from_dict(obj))
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"not JSON: {exc.msg}", param_hint="--filter") from None
            except RecursionError:
                raise typer.BadParameter("JSON nested too deeply", param_hint="--filter") \
                    from None
            except ProtocolError as exc:
                raise typer.BadParameter(exc.reason, param_hint="--filter") from None
        return filters
    tags: dict[str, set[str]] = {}
    for spec in tag or []:
        name, value = _tag_pair(spec, "--tag")
        if len(name) != 1 or not name.isascii() or not name.isalpha():
            raise typer.BadParameter(f"{spec!r}: tag filters need a single letter name",
                                     param_hint="--tag")
        tags.setdefault(name, set()).add(value)
    for k in kind or []:
        if not 0 <= k <= 65535:
            raise typer.BadParameter(f"{k}: kinds are 0..65535", param_hint="--kind")
    return [Filter(
        ids={_hex_or_bech32(i, ("note", "nevent"), "event id", "--id") for i in ids}
        if ids else None,
        authors={_hex_or_bech32(a, ("npub", "nprofile"), "public key", "--author")
                 for a in author} if author else None,
        kinds=set(kind) if kind else None,
        tags=tags,
        since=since,
        until=until,
        limit=limit if limit is not None else (None if field_given else 20),
    )]


def _when(ts: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _print_events(events: list[Event], as_json: bool) -> None:
    if as_json:
        for ev in events:
            typer.echo(ev.to_json())
        return
    if not events:
        say("no events")
        return
    table = Table(show_lines=False)
    for col in ("created (UTC)", "kind", "author", "id", "content"):
        table.add_column(col)
    for ev in events:
        table.add_row(_when(ev.created_at), str(ev.kind), nip19.npub_encode(ev.pubkey)[:20] + "…",
                      ev.id[:16], cell(ev.content, limit=80))
    console.print(table)
    say("{} event(s)", len(events))


def _print_publish(result: PublishResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    say("event {}", result.event_id)
    table = Table()
    for col in ("relay", "accepted", "message"):
        table.add_column(col)
    for url, (ok, msg) in result.results.items():
        table.add_row(cell(url), Text("yes", style="green") if ok else Text("no", style="red"),
                      cell(msg))
    console.print(table)
    say("accepted by {} of {} relay(s)", result.ok_count, len(result.results))


# --- commands ---------------------------------------------------------------------------

@app.command()
def query(
    relay: list[str] = RelayOpt,
    kind: list[int] = typer.Option(None, "--kind", "-k", help="Event kind; repeatable."),
    author: list[str] = typer.Option(None, "--author", "-a",
                                     help="Author pubkey (hex or npub); repeatable."),
    ids: list[str] = typer.Option(None, "--id", help="Event id (hex or note); repeatable."),
    tag: list[str] = typer.Option(None, "--tag", "-t",
                                  help="Tag condition x=value (single-letter x); repeatable."),
    since: int | None = typer.Option(None, "--since", min=0, help="Unix time lower bound."),
    until: int | None = typer.Option(None, "--until", min=0, help="Unix time upper bound."),
    limit: int | None = typer.Option(None, "--limit", "-l", min=0,
                                     help="Max events per relay (default 20 with no filter)."),
    filter_json: list[str] = typer.Option(None, "--filter", "-f",
                                          help="A NIP-01 filter as JSON; repeatable."),
    key_file: Path | None = typer.Option(
        None, "--key-file", help="Secret key file (hex or nsec) to authenticate with "
        "(NIP-42) when a relay requires it."),
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print stored events matching a filter, from every relay, de-duplicated. A relay that
    closes the query (CLOSED, e.g. auth-required without --key-file) or sends a NOTICE is
    named with its reason on stderr, and the exit code is 1 (the events others sent are
    still printed)."""
    from oa_node.client.subscription import DEFAULT_QUERY_CAP, collect_stored

    urls = _relays(relay)
    filters = _build_filters(kind, author, ids, tag, since, until, limit, filter_json)
    signer = _signer(key_file)

    async def go() -> tuple[list[Event], list[str]]:
        async with RelayPool(urls, signer=signer, auto_auth=False, reconnect=False) as pool:
            errors = await pool.connect(timeout)
            for err in errors.values():
                if err:
                    warn("{}", err)
            if all(errors.values()):
                raise ClientError("no relay reachable")
            async with pool.subscribe(filters, yield_eose=True, max_queue=DEFAULT_QUERY_CAP
                               ) as sub:
                events = await collect_stored(sub, timeout, DEFAULT_QUERY_CAP)
                problems = [f"{url}: CLOSED: {reason}"  # unreachable ones were said above
                            for url, reason in sub.closed_reasons.items() if not errors.get(url)]
            for url, conn in pool.connections.items():
                problems += [f"{url}: NOTICE: {n}" for n in conn.stats.notices]
            return events, problems

    events, problems = _run(go)
    _print_events(events, as_json)
    for line in problems:
        print_error(line)
    if problems:
        raise typer.Exit(1)


def _load_event_input(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{source}: cannot read: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _fail(f"{source}: not UTF-8 text")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{source}: not JSON: {exc.msg} (line {exc.lineno})")
    except RecursionError:
        _fail(f"{source}: JSON nested too deeply")
    if not isinstance(obj, dict):
        _fail(f"{source}: expected a JSON object (an event)")
    return obj


def _template_from(obj: dict[str, Any], source: str) -> EventTemplate:
    kind, content, tags = obj.get("kind"), obj.get("content", ""), obj.get("tags", [])
    created_at = obj.get("created_at")
    if type(kind) is not int or not 0 <= kind <= 65535:
        _fail(f"{source}: 'kind' must be an integer 0..65535")
    if not isinstance(content, str):
        _fail(f"{source}: 'content' must be a string")
    if not isinstance(tags, list) or not all(
        isinstance(t, list) and t and all(isinstance(x, str) for x in t) for t in tags
    ):
        _fail(f"{source}: 'tags' must be a list of non-empty lists of strings")
    if created_at is not None and type(created_at) is not int:
        _fail(f"{source}: 'created_at' must be an integer")
    return EventTemplate(kind=kind, content=content, tags=tags, created_at=created_at)


@app.command()
def publish(
    event_file: str | None = typer.Argument(
        None, help="Signed event JSON file, or - for stdin. An unsigned one (no id/sig) is "
                   "signed with --key-file."),
    relay: list[str] = RelayOpt,
    kind: int | None = typer.Option(None, "--kind", "-k", help="Build an event of this kind."),
    content: str = typer.Option("", "--content", "-c", help="Content of the built event."),
    tag: list[str] = typer.Option(None, "--tag", "-t",
                                  help="Tag name=value for the built event; repeatable."),
    key_file: Path | None = typer.Option(None, "--key-file",
                                         help="Secret key file (hex or nsec) to sign with."),
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Publish an event to every relay and print each relay's OK."""
    urls = _relays(relay)
    if (event_file is None) == (kind is None):
        raise typer.BadParameter("give either an EVENT_FILE (or -) or --kind to build one",
                                 param_hint="EVENT_FILE / --kind")
    if event_file is not None and (content or tag):
        raise typer.BadParameter("--content/--tag only apply with --kind",
                                 param_hint="--content / --tag")
    template: EventTemplate | None = None
    event: Event | None = None
    if kind is not None:
        if not 0 <= kind <= 65535:
            raise typer.BadParameter(f"{kind}: kinds are 0..65535", param_hint="--kind")
        tags = [list(_tag_pair(spec, "--tag")) for spec in tag or []]
        template = EventTemplate(kind=kind, content=content, tags=tags)
    else:
        assert event_file is not None
        obj = _load_event_input(event_file)
        if "sig" in obj or "id" in obj:
            try:
                event = Event.from_dict(obj)
            except ProtocolError as exc:
                _fail(f"{event_file}: not a valid event: {exc.reason}")
            if not event.verify():
                _fail(f"{event_file}: the event's id or signature is invalid")
        else:
            template = _template_from(obj, event_file)
    signer = _signer(key_file)
    if template is not None and signer is None:
        raise typer.BadParameter("signing an event needs --key-file", param_hint="--key-file")

    async def go() -> PublishResult:
        if template is not None:
            assert signer is not None
            to_send = await signer.sign(template)
        else:
            assert event is not None
            to_send = event
        async with RelayPool(urls, signer=signer, reconnect=False) as pool:
            return await pool.publish(to_send, timeout)

    result = _run(go)
    _print_publish(result, as_json)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def info(
    relay: str = typer.Argument(..., help="Relay URL (ws:// or wss://)."),
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fetch and print a relay's NIP-11 information document."""
    try:
        url = normalize_relay_url(relay)
    except ClientError as exc:
        raise typer.BadParameter(str(exc), param_hint="RELAY") from None

    async def go() -> dict[str, Any]:
        return await fetch_relay_info(url, timeout)

    doc = _run(go)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False))
        return
    table = Table(title=cell(f"relay {url}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in doc.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(cell(key), Text(clean(shown, one_line=False, limit=None)))
    console.print(table)
