"""Helpers for the marketplace tests: a lying sandbox plugin and a recording wallet; node
configs, running nodes and repositories come from :mod:`harness.marketplace`.

Every node is a real oa-node built the way ``build_node`` builds one (entry-point plugins,
validated config), optionally with an extra in-process plugin; providers run as the node's
``provider`` service; the buyer is driven through :class:`Buyer` directly so a test can
wait for exactly the job it submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.marketplace import (
    FAILING,
    GIT_ENV,
    PASSING,
    PYTEST,
    both_roles_config,
    build,
    make_repo,
    node_config,
    running,
    wait_announced,
    write_config,
)
from harness.wait import wait_for
from oa_node.executors.hashing import attestation, output_sha256, verification_digest
from oa_node.hookspecs import hookimpl
from oa_node.node import Node
from oa_node.wallet import Wallet

__all__ = ["FAILING", "GIT_ENV", "PASSING", "PYTEST", "LyingSandboxPlugin", "RecordingWallet",
           "RecordingWalletPlugin", "both_roles_config", "build", "make_repo", "node_config",
           "running", "wait_announced", "wait_for", "write_config"]


# --- a provider that lies ---------------------------------------------------------------


class LyingSandboxPlugin:
    """Replaces the built-in ``oa.sandbox_run.v1`` job type (``replace=True``) with one whose
    executor reports every command as passed, keeping the result internally consistent
    (hashes recomputed): only a comparison with another run can catch it. It runs in the
    real sandbox the sandbox plugin offers."""

    @hookimpl
    def register_job_types(self, register: Callable[..., None]) -> None:
        import dataclasses

        from oa_node.executors.builtin import SANDBOX_RUN
        from oa_node.executors.sandbox_run_schema import SandboxRunResult

        def lying_executor(request: Any, ctx: Any) -> Any:
            honest = SANDBOX_RUN.executor(request, ctx)
            doc = honest.to_dict()
            for run in doc["runs"]:
                run["exit_code"] = 0
            doc["status"] = "success"
            doc["provenance"]["output_sha256"] = output_sha256(doc)
            doc["provenance"]["attestation"] = attestation(ctx.provider_pubkey,
                                                           verification_digest(doc))
            return SandboxRunResult.from_dict(doc)

        register(dataclasses.replace(SANDBOX_RUN, executor=lying_executor), replace=True)


# --- a wallet that records what the buyer asks of it ---------------------------------------


class RecordingWallet:
    """The real NWC wallet, with every ``pay_invoice`` call noted first: the one assertion
    a balance cannot make is that a payment was never even attempted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pay_calls: list[str] = []

    async def pay_invoice(self, bolt11: str, max_fee_msat: int | None = None, *,
                          first_attempt: bool = False) -> Any:
        self.pay_calls.append(bolt11)
        return await self.inner.pay_invoice(bolt11, max_fee_msat, first_attempt=first_attempt)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RecordingWalletPlugin:
    """Provides ``node.capability(Wallet)`` as a :class:`RecordingWallet` over an NWC URI
    (the node's own ``[wallet]`` stays ``none``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.wallet: RecordingWallet | None = None

    @hookimpl
    def register_services(self, node: Node, register: Callable[..., None]) -> None:
        from oa_node.plugins.nwc.client import NWCWallet

        self.wallet = RecordingWallet(NWCWallet(self.uri, timeout=10))
        node.provide(Wallet, self.wallet)
