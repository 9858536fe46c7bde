"""``oa-node agent ...``: show and publish NIP-SA events, run a tick, audit a trajectory.

Reading commands take ``--author`` (hex or npub; default: this node's identity) and work
without a key file when an author is given. ``trajectory show`` exits 1 when the session
has gaps or was tampered with, after printing what it found.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.table import Table

from oa_node.cli_kit import (
    ConfigOption,
    JsonOption,
    TimeoutOption,
    cell,
    console,
    default_config_path,
    print_json,
    print_text,
    pubkey_arg,
    read_text_input,
    relay_option,
    say,
    shared_options,
)
from oa_node.errors import UserError
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.kinds import (
    AGENT_GOALS,
    AGENT_PROFILE,
    AGENT_SCHEDULE,
    TICK_REQUEST,
    TICK_RESULT,
    TRAJECTORY_SESSION,
)
from oa_node.nostr.nipsa import (
    GOALS_D,
    PROFILE_D,
    SCHEDULE_D,
    AgentProfile,
    AgentSchedule,
    TickResult,
    TrajectoryReport,
    TrajectorySession,
    parse_goals,
)

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.node import Node

app = typer.Typer(help="NIP-SA agent: profile, state, schedule, goals, ticks, trajectories.",
                  no_args_is_help=True)
trajectory_app = typer.Typer(help="Audit trajectories (what an agent did, step by step).",
                             no_args_is_help=True)
app.add_typer(trajectory_app, name="trajectory")

T = TypeVar("T")

AuthorOption = Annotated[
    str | None, typer.Option("--author", "-a", help="Agent pubkey (hex or npub); default: "
                             "this node's identity.")]
RelayOption = relay_option("Relay URL (repeatable); default: [node] relays.")


@dataclass
class AgentOpts:
    """The options every ``oa-node agent`` command takes (``state`` has no ``--author``)."""

    config: ConfigOption = None
    author: AuthorOption = None
    relay: RelayOption = None
    timeout: TimeoutOption = 10.0
    as_json: JsonOption = False


def _node(config: Path | None) -> Node:
    from oa_node.node import build_node

    return build_node(default_config_path(config))


def _run(config: Path | None, relays: list[str] | None, need_signer: bool,
         fn: Callable[[Node, RelayPool], Awaitable[T]]) -> T:
    """Build the node, open a pool (the node's own, or one over ``--relay``) and run ``fn``."""
    from oa_node.client import RelayPool

    node = _node(config)
    signer = None
    try:
        signer = node.signer
    except UserError:
        if need_signer:
            raise
    urls = relays or node.config["node"]["relays"]
    if not urls:
        raise UserError("no relays: set [node] relays in the config or pass --relay")

    async def main() -> T:
        pool = RelayPool(urls, signer=signer)
        node.pool = pool  # the capabilities resolve node.pool lazily: use this one
        try:
            return await fn(node, pool)
        finally:
            await pool.close()

    return anyio.run(main)


def _author(node: Node, author: str | None) -> str:
    if author:
        return pubkey_arg(author, "--author")
    try:
        return node.signer.public_key
    except UserError as exc:
        raise UserError(f"{exc} (or pass --author)") from None


async def _latest(pool: RelayPool, kind: int, author: str, d: str, timeout: float) -> Any:
    from oa_node.plugins.nipsa.agent import fetch_latest

    return await fetch_latest(pool, kind, author, d, timeout)


def _settings(node: Node) -> Any:
    from oa_node.plugins.nipsa.settings import NipsaSettings

    return NipsaSettings.from_config(node.config.get("nipsa"))


def _ago(ts: int | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# --- profile / schedule / goals --------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """A replaceable NIP-SA event ``profile`` and ``schedule`` show or publish."""

    name: str
    kind: int
    d: str
    template: Callable[[Node], Any]  # this node's event, from [nipsa]
    parse: Callable[[Any], Any]
    data: Callable[[Any, Any], dict[str, Any]]  # (event, parsed) -> the JSON shown
    show: Callable[[Any, dict[str, Any]], None]  # (parsed, data) -> human output


def _family_command(f: _Family, doc: str) -> None:
    """Register ``oa-node agent NAME [--publish]`` for family ``f``."""

    def command(*, opts: AgentOpts, publish: bool = False) -> None:
        async def go(node: Node, pool: RelayPool) -> tuple[str, Any]:
            from oa_node.plugins.nipsa.agent import publish as publish_event

            if publish:
                ev = await publish_event(pool, node.signer, f.template(node), opts.timeout)
                return ev.pubkey, ev
            who = _author(node, opts.author)
            return who, await _latest(pool, f.kind, who, f.d, opts.timeout)

        who, event = _run(opts.config, opts.relay, publish, go)
        if event is None:
            raise UserError(f"no agent {f.name} (kind {f.kind}) by {who} on the relays")
        try:
            parsed = f.parse(event)
        except ProtocolError as exc:
            raise UserError(f"{f.name} {event.id}: {exc.reason}") from None
        data = f.data(event, parsed)
        if opts.as_json:
            print_json(data)
        else:
            f.show(parsed, data)

    # The --publish help names the family: set here, as annotations are evaluated globally.
    command.__annotations__["publish"] = Annotated[bool, typer.Option(
        "--publish", help=f"Publish this node's {f.name} from [nipsa].")]
    app.command(f.name, help=doc)(shared_options(AgentOpts)(command))


def _profile_data(event: Any, p: AgentProfile) -> dict[str, Any]:
    return {"pubkey": event.pubkey, "event_id": event.id, "created_at": event.created_at,
            "name": p.name, "about": p.about, "capabilities": p.capabilities,
            "autonomy_level": p.autonomy_level, "version": p.version,
            "threshold": list(p.threshold) if p.threshold else None, "signers": p.signers,
            "operator": p.operator, "lud16": p.lud16}


def _show_profile(p: AgentProfile, data: dict[str, Any]) -> None:
    for k, v in data.items():
        if v not in (None, [], ""):
            say("[bold]{}[/]: {}", k, v)


def _schedule_data(event: Any, s: AgentSchedule) -> dict[str, Any]:
    return {"pubkey": event.pubkey, "event_id": event.id, "active": s.active,
            "heartbeat": s.heartbeat, "next_tick": s.next_tick,
            "triggers": [str(t) for t in s.triggers]}


def _show_schedule(s: AgentSchedule, data: dict[str, Any]) -> None:
    say("active: {}", s.active)
    say("heartbeat: {}", f"{s.heartbeat}s" if s.heartbeat else "off")
    say("next tick: {}", _ago(s.next_tick))
    say("triggers: {}", ", ".join(data["triggers"]) or "none")


_family_command(_Family(
    "profile", AGENT_PROFILE, PROFILE_D,
    lambda node: _settings(node).profile(node.config["node"]["name"]).to_template(),
    AgentProfile.from_event, _profile_data, _show_profile),
    "Show an agent's profile (kind 39200), or publish this node's.")
_family_command(_Family(
    "schedule", AGENT_SCHEDULE, SCHEDULE_D,
    lambda node: _settings(node).schedule(int(time.time())).to_template(),
    AgentSchedule.from_event, _schedule_data, _show_schedule),
    "Show an agent's schedule and triggers (kind 39202), or publish this node's.")


def _read_json_arg(value: str) -> Any:
    """``--set`` takes JSON text, ``@file`` or ``-`` (stdin)."""
    text = read_text_input(value[1:] if value.startswith("@") else value) \
        if value == "-" or value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"--set: not valid JSON: {exc}") from None


@app.command()
@shared_options(AgentOpts)
def goals(*, opts: AgentOpts,
          set_: Annotated[str | None, typer.Option(
              "--set", help='Publish these goals: JSON list (or {"goals": [...]}), @file or -.'
          )] = None) -> None:
    """Show an agent's public goals (kind 39203), or publish this node's."""
    from oa_node.plugins.nipsa.agent import goals_from_json, publish_goals

    new_goals = goals_from_json(_read_json_arg(set_)) if set_ is not None else None

    async def go(node: Node, pool: RelayPool) -> tuple[str, Any]:
        if new_goals is not None:
            ev = await publish_goals(pool, node.signer, new_goals, opts.timeout)
            return ev.pubkey, ev
        who = _author(node, opts.author)
        return who, await _latest(pool, AGENT_GOALS, who, GOALS_D, opts.timeout)

    who, event = _run(opts.config, opts.relay, new_goals is not None, go)
    if event is None:
        raise UserError(f"no agent goals (kind 39203) by {who} on the relays")
    try:
        items = parse_goals(event)
    except ProtocolError as exc:
        raise UserError(f"goals {event.id}: {exc.reason}") from None
    if opts.as_json:
        print_json({"pubkey": event.pubkey, "event_id": event.id,
                    "goals": [g.to_dict() for g in items]})
        return
    table = Table("id", "priority", "status", "progress", "description")
    for g in sorted(items, key=lambda g: g.priority):
        table.add_row(cell(g.id), cell(g.priority), cell(g.status), f"{g.progress:.0%}",
                      cell(g.description))
    console.print(table)


# --- state -----------------------------------------------------------------------------------


@app.command()
@shared_options(AgentOpts, exclude=("author",))
def state(*, opts: AgentOpts,
          set_: Annotated[str | None, typer.Option(
              "--set", help="Replace the state with this JSON object (text, @file or -); "
              "refused if another writer got there first.")] = None) -> None:
    """Decrypt and show this agent's private state (kind 39201), or replace it."""
    from oa_node.plugins.nipsa.state import AgentStateStore

    new_data = _read_json_arg(set_) if set_ is not None else None
    if new_data is not None and not isinstance(new_data, dict):
        raise UserError("--set: the state must be a JSON object")

    async def go(node: Node, pool: RelayPool) -> Any:
        store = AgentStateStore.fixed(pool, node.signer, publish_timeout=opts.timeout,
                                      query_timeout=opts.timeout)
        snap = await store.load()
        if new_data is not None:
            snap = await store.update(new_data, base_version=snap.version)
        return snap

    snap = _run(opts.config, opts.relay, True, go)
    data = {"state_version": snap.version, "event_id": snap.event.id if snap.event else None,
            "state": snap.data}
    if opts.as_json:
        print_json(data)
        return
    say("state_version {}{}", snap.version,
        f" (event {snap.event.id})" if snap.event else " (no state yet)")
    print_text(json.dumps(snap.data, indent=2, ensure_ascii=False))


# --- ticks -----------------------------------------------------------------------------------


@app.command()
@shared_options(AgentOpts)
def tick(*, opts: AgentOpts,
         history: Annotated[int, typer.Option(
             "--history", help="Instead of ticking, list this many recent tick results.")] = 0
         ) -> None:
    """Run one tick now (manual trigger) with the registered tick handlers, or list recent
    ticks with --history N."""
    timeout = opts.timeout
    if history:
        _tick_history(history, opts)
        return

    async def go(node: Node, pool: RelayPool) -> Any:
        from oa_node.plugins.nipsa.state import AgentStateStore
        from oa_node.plugins.nipsa.ticks import TickRunner, collect_tick_handlers

        s = _settings(node)
        store = AgentStateStore.fixed(pool, node.signer, publish_timeout=timeout)
        runner = TickRunner(node, store, collect_tick_handlers(node), heartbeat=None,
                            triggers=[], handler_timeout=s.handler_timeout,
                            publish_timeout=timeout, tick_ttl=s.tick_ttl)
        return await runner.tick("manual")

    rec = _run(opts.config, opts.relay, True, go)
    data = {"tick_id": rec.tick_id, "request": rec.request.id, "result": rec.result.id,
            "status": rec.outcome.status, "actions": rec.outcome.actions,
            "cost_msat": rec.outcome.cost_msat, "duration_ms": rec.duration_ms,
            "errors": rec.errors}
    if opts.as_json:
        print_json(data)
        return
    say("tick {}: {}, {} action(s), {} ms", rec.tick_id, rec.outcome.status,
        len(rec.outcome.actions), rec.duration_ms)
    for name, err in rec.errors.items():
        say("[red]{}[/]: {}", name, err)


def _tick_history(n: int, opts: AgentOpts) -> None:
    timeout = opts.timeout

    async def go(node: Node, pool: RelayPool) -> Any:
        who = _author(node, opts.author)
        results = await pool.query(
            {"kinds": [TICK_RESULT], "authors": [who], "limit": n}, timeout)
        requests = await pool.query(
            {"kinds": [TICK_REQUEST], "authors": [who], "limit": n}, timeout)
        return results, {r.id: r for r in requests}

    results, requests = _run(opts.config, opts.relay, False, go)
    rows = []
    for ev in results[:n]:
        try:
            r = TickResult.from_event(ev)
        except ProtocolError:
            continue
        req = requests.get(r.request_id)
        rows.append({"tick_id": r.tick_id, "at": ev.created_at, "status": r.status,
                     "trigger": req.first_tag_value("trigger") if req else None,
                     "actions": r.actions, "cost_msat": r.cost_msat,
                     "duration_ms": r.duration_ms, "result": ev.id})
    if opts.as_json:
        print_json(rows)
        return
    table = Table("at", "trigger", "status", "actions", "cost msat", "ms", "tick")
    for row in rows:
        table.add_row(_ago(row["at"]), cell(row["trigger"] or "?"), cell(row["status"]),
                      cell(row["actions"]), cell(row["cost_msat"]), cell(row["duration_ms"]),
                      cell(row["tick_id"][:16]))
    console.print(table)


# --- trajectories ----------------------------------------------------------------------------


@trajectory_app.command("show")
@shared_options(AgentOpts)
def trajectory_show(
    session: Annotated[str, typer.Argument(help="Session id (the 39230 d tag).")],
    *, opts: AgentOpts,
    expect_hash: Annotated[str | None, typer.Option(
        "--hash", help="The trajectory_hash you were given (e.g. from a job result).")] = None,
) -> None:
    """Rebuild a session from relays and check seq continuity, the chain and the hash."""
    from oa_node.trajectory import read_trajectory

    async def go(node: Node, pool: RelayPool) -> TrajectoryReport:
        who = pubkey_arg(opts.author, "--author") if opts.author else None
        return await read_trajectory(pool, session, who, expected_hash=expect_hash,
                                     timeout=opts.timeout)

    report = _run(opts.config, opts.relay, False, go)
    if opts.as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(r: TrajectoryReport) -> None:
    s = r.session
    say("[bold]session[/] {}", r.session_id)
    say("author {}", r.author)
    if s is not None:
        if s.repo or s.sha:
            say("repo {} @ {}", s.repo or "-", s.sha or "-")
        if s.participants:
            say("participants: {}", ", ".join(s.participants))
        say("started {}, ended {}", _ago(s.started_at), _ago(s.ended_at))
    table = Table("seq", "time", "type", "payload")
    for st in r.steps:
        payload = json.dumps(st.payload, ensure_ascii=False, sort_keys=True)
        table.add_row(cell(st.seq), time.strftime("%H:%M:%S", time.localtime(
            st.event.created_at)), cell(st.type), cell(payload, limit=100))
    console.print(table)
    say("trajectory_hash {}{}", r.computed_hash,
        " (matches the session)" if r.claimed_hash == r.computed_hash else "")
    if not r.complete:
        say("[yellow]the session has not ended (no session_end yet)[/]")
    if r.ok:
        say("[green]ok[/]: gap-free, unbroken chain, hash verified"
            if r.claimed_hash or r.expected_hash else
            "[green]ok[/]: gap-free, unbroken chain (no hash to compare yet)")
    for p in r.problems:
        say("[bold red]problem[/]: {}", p)


@trajectory_app.command("list")
@shared_options(AgentOpts)
def trajectory_list(*, opts: AgentOpts,
                    limit: Annotated[int, typer.Option(help="How many sessions.")] = 20) -> None:
    """List an agent's trajectory sessions (newest first)."""

    async def go(node: Node, pool: RelayPool) -> Any:
        who = _author(node, opts.author)
        return await pool.query(
            {"kinds": [TRAJECTORY_SESSION], "authors": [who], "limit": limit}, opts.timeout)

    rows = []
    for ev in _run(opts.config, opts.relay, False, go)[:limit]:
        try:
            s = TrajectorySession.from_event(ev)
        except ProtocolError:
            continue
        rows.append({"session_id": s.session_id, "started_at": s.started_at,
                     "ended_at": s.ended_at, "total_events": s.total_events,
                     "trajectory_hash": s.trajectory_hash, "repo": s.repo, "sha": s.sha})
    if opts.as_json:
        print_json(rows)
        return
    table = Table("started", "ended", "events", "repo")
    table.add_column("session", no_wrap=True)
    for row in rows:
        table.add_row(_ago(row["started_at"]), _ago(row["ended_at"]),
                      cell(row["total_events"] if row["total_events"] is not None else "-"),
                      cell(row["repo"] or ""), cell(row["session_id"]))
    console.print(table)
