"""``JobType``: what a plugin registers for a schema, and what executors are handed.

A plugin's ``register_job_types`` hook calls ``register(JobType(...))``; the core collects
them by ``schema_id`` (``host.registries.job_types()``). A provider then parses a request
with ``request_model.from_dict``, runs ``executor(request, context)`` (synchronous: run it
in a worker thread) and a buyer checks a result with ``verifier(request, result)``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from oa_node.canonical import CanonicalJSONError
from oa_node.executors.git_fetch import DEFAULT_ALLOWED_SCHEMES, FetchLimits
from oa_node.executors.hashing import (
    attestation,
    input_sha256,
    output_sha256,
    verification_digest,
)
from oa_node.executors.schema import Provenance, SchemaError
from oa_node.sandbox.base import CancelToken, Limits, Sandbox


@dataclass(frozen=True)
class ExecutorSettings:
    """A node's execution policy: caps, schemes, networks, folders (the sandbox plugin
    makes it from ``[sandbox]``; others get it through :class:`Execution`)."""

    max_limits: Limits = field(default_factory=lambda: Limits(
        memory_mb=2048, cpus=2.0, pids=512, timeout_secs=600, disk_mb=4096))
    allowed_url_schemes: tuple[str, ...] = DEFAULT_ALLOWED_SCHEMES
    allowed_network_policies: tuple[str, ...] = ("none", "localhost")
    workdir: Path = field(default_factory=lambda: Path.home() / ".oa-node" / "jobs")
    fetch_timeout_secs: float = 120.0
    max_repo_mb: int = 1024  # files checked out (also capped by a job's disk limit)
    max_fetch_mb: int = 200  # bytes received by one fetch
    max_repo_files: int = 20_000
    index_memory_mb: int = 512  # address space of repo_index's parser process

    def fetch_limits(self, disk_mb: int | None = None) -> FetchLimits:
        """The caps of one repository fetch (checkout size also within ``disk_mb``)."""
        repo_mb = self.max_repo_mb if disk_mb is None else min(self.max_repo_mb, disk_mb)
        return FetchLimits(max_fetch_bytes=self.max_fetch_mb << 20,
                           max_checkout_bytes=repo_mb << 20, max_files=self.max_repo_files)

    def cap(self, memory_mb: int, cpus: float, pids: int, timeout_secs: float,
            disk_mb: int) -> Limits:
        """The request's limits, each capped by the provider's maximum."""
        m = self.max_limits
        return Limits(
            memory_mb=min(memory_mb, m.memory_mb), cpus=min(cpus, m.cpus),
            pids=min(pids, m.pids), timeout_secs=min(timeout_secs, m.timeout_secs),
            disk_mb=min(disk_mb, m.disk_mb), preview_bytes=m.preview_bytes,
            max_artifact_bytes=m.max_artifact_bytes,
        )


@runtime_checkable
class Execution(Protocol):
    """How this node runs jobs: ``node.capability(Execution)``, provided by the sandbox
    plugin (absent when it is disabled). The provider and the buyer's audits use it rather
    than reading another plugin's config section."""

    def executor_settings(self, workdir: Path | None = None) -> ExecutorSettings:
        """The node's execution policy; ``workdir`` overrides the folder for checkouts."""
        ...

    def sandbox(self) -> Sandbox:
        """The sandbox jobs run in (one per node, closed when the node stops); raises
        ``SandboxError`` when it cannot be reached."""
        ...


@dataclass
class ExecContext:
    """Everything an executor needs besides the request."""

    settings: ExecutorSettings = field(default_factory=ExecutorSettings)
    sandbox: Sandbox | None = None
    provider_pubkey: str = ""
    cancel: CancelToken = field(default_factory=CancelToken)
    artifacts_dir: Path | None = None  # artifact files are saved here when set
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Verdict:
    """A buyer's objective check of one result: ``ok`` and the problems found."""

    ok: bool
    problems: tuple[str, ...] = ()
    verification_digest: str = ""


Executor = Callable[[Any, ExecContext], Any]
Verifier = Callable[[Any, Any], Verdict]
#: ``admit(request_model, settings)``: why this provider refuses the request before any work
#: (a URL scheme, network policy or limit it does not allow), or ``None`` to take it
Admit = Callable[[Any, ExecutorSettings], "str | None"]


def execute_with_provenance(request: Any, ctx: ExecContext, request_model: Any,
                            run: Callable[[Any, ExecContext], Any],
                            error: Callable[[str], Any]) -> Any:
    """What every executor does around its work (the counterpart of :func:`verify_start`):
    parse the request (an invalid one gives the ``error`` result, never an exception),
    ``run`` it, and attach provenance: the hashes of the input and of the result, when the
    job started, how long it took, and the attestation binding this provider's key to the
    result's verification digest."""
    started, t0 = time.time(), time.monotonic()
    if isinstance(request, request_model):
        result = run(request, ctx)
    else:
        try:
            parsed = request_model.from_dict(request)
        except SchemaError as exc:
            result = error(f"invalid request: {exc}")
        else:
            request, result = parsed, run(parsed, ctx)
    try:
        in_hash = input_sha256(request)
    except (CanonicalJSONError, TypeError, AttributeError):
        in_hash = "0" * 64
    body = result.to_dict()
    body["provenance"] = Provenance(
        provider_pubkey=ctx.provider_pubkey, input_sha256=in_hash,
        output_sha256=output_sha256(body), executed_at=int(started),
        duration_ms=int((time.monotonic() - t0) * 1000),
        attestation=attestation(ctx.provider_pubkey, verification_digest(body)),
    ).to_dict()
    return type(result).from_dict(body)


def verify_start(request: Any, result: Any, request_model: Any, result_model: Any
                 ) -> tuple[Any, Any, list[str], str] | Verdict:
    """What every verifier does first: parse both documents, recompute the provenance hashes,
    the verification digest and the attestation of ``provenance.provider_pubkey`` (whether
    that key signed the result is the caller's check: it has the event). Returns (request,
    result, problems, digest), or a failed :class:`Verdict` when the result is malformed or
    has no canonical form to hash (a hostile provider's document must give a verdict, never
    an exception)."""
    try:
        req = request if isinstance(request, request_model) else request_model.from_dict(request)
        res = result if isinstance(result, result_model) else result_model.from_dict(result)
        problems: list[str] = []
        if res.provenance.input_sha256 != input_sha256(request):
            problems.append("provenance.input_sha256 does not match this request")
        if res.provenance.output_sha256 != output_sha256(result):
            problems.append("provenance.output_sha256 does not match the result")
        digest = verification_digest(result)
        if res.provenance.attestation != attestation(res.provenance.provider_pubkey, digest):
            problems.append("provenance.attestation does not bind this result's verification "
                            "digest to provenance.provider_pubkey")
    except SchemaError as exc:
        return Verdict(ok=False, problems=(f"schema: {exc}",))
    except CanonicalJSONError as exc:
        return Verdict(ok=False, problems=(f"no canonical JSON form to hash: {exc}",))
    return req, res, problems, digest


@dataclass(frozen=True)
class JobType:
    schema_id: str
    request_model: type
    result_model: type
    executor: Executor
    verifier: Verifier
    description: str = ""
    admit: Admit | None = None
