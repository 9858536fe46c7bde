"""The hooks a plugin may implement.

Each hook hands the plugin a ``register`` callable (the simonw/llm style), so a plugin
adds things to the node rather than the node asking plugins for return values. Built-in
plugins use exactly these hooks, loaded through the ``oa_node.plugins`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from oa_node.config import Config
    from oa_node.node import Node

hookspec = pluggy.HookspecMarker("oa_node")
hookimpl = pluggy.HookimplMarker("oa_node")


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands or sub-apps (``app.add_typer(...)``) to the ``oa-node`` CLI."""


@hookspec
def register_config(register: Callable[..., None]) -> None:
    """Declare config sections: ``register(Section(...))`` (see ``oa_node.config``)."""


@hookspec
def register_services(node: Node, register: Callable[..., None]) -> None:
    """Add long-running services: ``register(name, async_fn)``; ``async_fn(node)`` runs in
    the node's task group until cancelled. Whether a role is enabled is the plugin's own
    decision: it reads its section of ``node.config``."""


@hookspec
def register_job_types(register: Callable[..., None]) -> None:
    """Add job types: ``register(JobType(schema_id, request_model, result_model, executor,
    verifier))``. The built-in ones are the core's own registration, so they exist whatever
    plugins load; ``register(job_type, replace=True)`` replaces a built-in (once), any other
    schema registered twice is refused."""


@hookspec
def register_sandboxes(register: Callable[..., None]) -> None:
    """Add sandbox backends: ``register(name, factory)``; ``factory(config) -> Sandbox``."""


@hookspec
def register_wallets(register: Callable[..., None]) -> None:
    """Add wallet backends: ``register(name, factory)``; ``factory(node) -> Wallet``."""


@hookspec
def register_relay_policies(config: Config, register: Callable[..., None]) -> None:
    """Add relay policies: ``register(stage, fn)`` with stage one of ``"event"`` (before
    the signature is checked), ``"verified_event"`` (after: policies keyed on the author),
    ``"filter"``, ``"connect"``; ``fn`` returns ``None`` to accept or a rejection reason
    carrying a NIP-01 machine-readable prefix (``"blocked: ..."``). ``config`` is the
    node's validated config: a plugin makes its policies from its own section (factories
    that take their parameters, as in khatru; see ``oa_node.plugins.relay.policies``). The
    relay of ``oa-node start`` and of ``oa-node relay serve`` run the same policies."""


@hookspec
def register_signers(register: Callable[..., None]) -> None:
    """Add node identities other than the local key file: ``register(name, factory)`` where
    ``factory(node_config) -> Signer``; chosen by ``[node] signer = "<name>"``."""


@hookspec
def register_frost_policies(register: Callable[..., None]) -> None:
    """Add checks a FROSTR share holder runs before every partial signature it makes for a
    peer: ``register(fn)`` where ``fn(request)`` returns ``None`` to allow or a refusal
    reason (sent to the requester). ``request`` has ``requester`` (the peer's x-only share
    key), ``requester_idx``, ``sighash`` (32 bytes) and ``event``: the event being signed as
    a dict (``pubkey``, ``created_at``, ``kind``, ``tags``, ``content``; its id already
    recomputed and equal to ``sighash``), or ``None`` for a bare hash (only reaching the
    checks where ``[frostr.policy] allow_bare_hashes`` is set). A check that raises
    refuses."""


@hookspec
def register_tick_handlers(register: Callable[..., None]) -> None:
    """Decide what an agent tick does (NIP-SA): ``register(name, async_fn)`` where
    ``async_fn(node, tick)`` runs on every heartbeat or trigger. ``tick`` has ``tick_id``,
    ``trigger``, ``trigger_event``, ``request`` and ``state`` (the agent's state store); the
    handler returns an ``oa_node.nostr.nipsa.TickOutcome``, a dict of its fields, or None."""
