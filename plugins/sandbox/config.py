"""The ``[sandbox]`` config section and what it turns into: executor settings, a sandbox."""

from __future__ import annotations

import hashlib
from typing import Any

from oa_node.config import Config, Key, Section, positive
from oa_node.executors.jobtype import ExecutorSettings
from oa_node.gitsafe import SCHEMES
from oa_node.sandbox.base import Sandbox, SandboxError


def _digest_or_empty(value: str) -> None:
    if value and not (value.startswith("sha256:") and len(value) == 71):
        raise ValueError('an image digest "sha256:<64 hex>", or "" for the built base image')


def sandbox_section() -> Section:
    return Section(
        "sandbox",
        help="Where and how jobs run: the Docker sandbox, its limits and what requests may ask.",
        keys=[
            Key("backend", str, "docker", "Sandbox backend.", choices=("docker",)),
            Key("image", str, "", 'Image digest to run ("" = the base image that '
                "`oa-node sandbox build-image` builds).", check=_digest_or_empty),
            Key("docker_host", str, "", 'Docker daemon URL ("" = DOCKER_HOST or the local '
                "socket)."),
            Key("max_memory_mb", int, 2048, "Cap on a job's memory (MiB).", check=positive),
            Key("max_cpus", float, 2.0, "Cap on a job's CPUs.", check=positive),
            Key("max_pids", int, 512, "Cap on a job's processes.", check=positive),
            Key("max_timeout_secs", int, 600, "Cap on a job's wall-clock time.", check=positive),
            Key("max_disk_mb", int, 4096, "Cap on a job's workspace and /tmp size (MiB, "
                "tmpfs: counts against memory).", check=positive),
            Key("output_preview_bytes", int, 4096, "Output kept per stream (the full stream "
                "is always hashed).", check=positive),
            Key("max_artifact_mb", int, 256, "Cap on a job's artifacts in total (MiB).",
                check=positive),
            Key("allowed_url_schemes", list, ["https", "git"], "Repository URL schemes jobs "
                "may use (file only for local testing; ext is never allowed).", item=str,
                choices=SCHEMES),
            Key("allowed_network_policies", list, ["none", "localhost"], "Network policies "
                'requests may ask for ("full" gives the container a bridge network).',
                item=str, choices=("none", "localhost", "full")),
            Key("workdir", str, "sandbox-jobs", "Per-job checkouts, relative to the node's "
                "data_dir."),
            Key("fetch_timeout_secs", int, 120, "Time limit of a repository fetch.",
                check=positive),
        ],
    )


def _section(config: Config | dict[str, Any]) -> dict[str, Any]:
    if isinstance(config, Config):
        return config["sandbox"]
    return config.get("sandbox", config)  # a whole config mapping or the section itself


def settings_from_config(config: Config) -> ExecutorSettings:
    return ExecutorSettings.from_section(config["sandbox"],
                                         config.resolve_path(config["node"]["data_dir"]))


_shared: dict[int, tuple[Any, Sandbox]] = {}


def make_sandbox(config: Config | dict[str, Any]) -> Sandbox:
    """The ``docker`` factory: one sandbox per loaded config, so the node's shutdown
    (the ``sandbox-janitor`` service) removes every container it started. Connects on
    first use (or raises ``SandboxUnavailable``)."""
    entry = _shared.get(id(config))
    if entry is None or entry[0] is not config:
        entry = (config, _new_sandbox(config))
        _shared[id(config)] = entry
    return entry[1]


def forget_sandbox(config: Config | dict[str, Any]) -> None:
    _shared.pop(id(config), None)


def _new_sandbox(config: Config | dict[str, Any]) -> Sandbox:
    from oa_node.sandbox.docker import DockerSandbox

    s = _section(config)
    if s.get("backend", "docker") != "docker":
        raise SandboxError(f"unknown sandbox backend {s.get('backend')!r}")
    # Containers are labelled per data dir, so two nodes on one daemon keep apart.
    where = str(config.resolve_path(config["node"]["data_dir"])) if isinstance(
        config, Config) else "default"
    namespace = hashlib.sha256(where.encode()).hexdigest()[:12]
    return DockerSandbox(default_image=s.get("image", ""), namespace=namespace,
                         base_url=s.get("docker_host") or None)
