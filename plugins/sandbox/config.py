"""The ``[sandbox]`` config section and what it turns into: executor settings, a sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_node.config import Config, Section, positive
from oa_node.executors.jobtype import ExecutorSettings
from oa_node.gitsafe import SCHEMES
from oa_node.sandbox.base import Limits, Sandbox, SandboxError
from oa_node.settings import Settings, setting

if TYPE_CHECKING:
    from oa_node.node import Node


def _digest_or_empty(value: str) -> None:
    if value and not (value.startswith("sha256:") and len(value) == 71):
        raise ValueError('an image digest "sha256:<64 hex>", or "" for the built base image')


@dataclass(frozen=True)
class SandboxSettings(
    Settings, section="sandbox",
    help="Where and how jobs run: the Docker sandbox, its limits and what requests may ask.",
):
    backend: str = setting("docker", "Sandbox backend.", choices=("docker",))
    image: str = setting("", 'Image digest to run ("" = the base image that '
                         "`oa-node sandbox build-image` builds).", check=_digest_or_empty)
    docker_host: str = setting("", 'Docker daemon URL ("" = DOCKER_HOST or the local socket).')
    max_memory_mb: int = setting(2048, "Cap on a job's memory (MiB).", check=positive)
    max_cpus: float = setting(2.0, "Cap on a job's CPUs.", check=positive)
    max_pids: int = setting(512, "Cap on a job's processes.", check=positive)
    max_timeout_secs: int = setting(600, "Cap on a job's wall-clock time.", check=positive)
    max_disk_mb: int = setting(4096, "Cap on a job's workspace and /tmp size (MiB, tmpfs: "
                               "counts against memory).", check=positive)
    output_preview_bytes: int = setting(4096, "Output kept per stream (the full stream is "
                                        "always hashed).", check=positive)
    max_artifact_mb: int = setting(256, "Cap on a job's artifacts in total (MiB).",
                                   check=positive)
    allowed_url_schemes: tuple[str, ...] = setting(
        ("https", "git"), "Repository URL schemes jobs may use (file only for local testing; "
        "ext is never allowed).", choices=SCHEMES)
    allowed_network_policies: tuple[str, ...] = setting(
        ("none", "localhost"), 'Network policies requests may ask for ("full" gives the '
        "container a bridge network).", choices=("none", "localhost", "full"))
    workdir: str = setting("sandbox-jobs", "Per-job checkouts, relative to the node's data_dir.")
    fetch_timeout_secs: int = setting(120, "Time limit of a repository fetch.", check=positive)
    max_fetch_mb: int = setting(200, "Cap on the bytes one repository fetch receives (git is "
                                "stopped as it crosses it).", check=positive)
    max_repo_mb: int = setting(1024, "Cap on a checkout's files in total (MiB; also within "
                               "the job's disk limit), checked before checkout.",
                               check=positive)
    max_repo_files: int = setting(20000, "Cap on the files of a checkout, checked before "
                                  "checkout.", check=positive)
    index_memory_mb: int = setting(512, "Memory (address space) of the process that parses "
                                   "a repository for oa.repo_index.v1.", check=positive)

    def executor_settings(self, data_dir: Path, workdir: Path | None = None
                          ) -> ExecutorSettings:
        """The execution policy these settings give (caps, schemes, networks, folders);
        ``workdir`` overrides the folder for checkouts (relative ones are under
        ``data_dir``)."""
        if workdir is None:
            workdir = Path(self.workdir).expanduser()
            workdir = workdir if workdir.is_absolute() else data_dir / workdir
        return ExecutorSettings(
            max_limits=Limits(memory_mb=self.max_memory_mb, cpus=self.max_cpus,
                              pids=self.max_pids, timeout_secs=self.max_timeout_secs,
                              disk_mb=self.max_disk_mb, preview_bytes=self.output_preview_bytes,
                              max_artifact_bytes=self.max_artifact_mb << 20),
            allowed_url_schemes=self.allowed_url_schemes,
            allowed_network_policies=self.allowed_network_policies,
            workdir=workdir,
            fetch_timeout_secs=float(self.fetch_timeout_secs),
            max_fetch_mb=self.max_fetch_mb,
            max_repo_mb=self.max_repo_mb,
            max_repo_files=self.max_repo_files,
            index_memory_mb=self.index_memory_mb,
        )


def sandbox_section() -> Section:
    return SandboxSettings.section()


def _section(config: Config | dict[str, Any]) -> dict[str, Any]:
    if isinstance(config, Config):
        return config["sandbox"]
    return config.get("sandbox", config)  # a whole config mapping or the section itself


def settings_from_config(config: Config) -> ExecutorSettings:
    return SandboxSettings.from_section(config["sandbox"]).executor_settings(
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
    namespace, aliases = sandbox_identity(config)
    return DockerSandbox(default_image=s.get("image", ""), namespace=namespace,
                         aliases=aliases, base_url=s.get("docker_host") or None)


def sandbox_identity(config: Config | dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The data dir id containers are labelled with (so two nodes on one daemon keep
    apart), and the id earlier versions used for the same data dir."""
    from oa_node.sandbox.owners import data_dir_id, legacy_id

    if not isinstance(config, Config):
        return "default", ()
    where = config.resolve_path(config["node"]["data_dir"])
    return data_dir_id(where), (legacy_id(where),)


class NodeExecution:
    """The :class:`~oa_node.executors.jobtype.Execution` capability this plugin provides:
    ``[sandbox]`` read here (at each call, as the node's config is now), the sandbox from
    the configured backend's factory."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def settings(self) -> SandboxSettings:
        return SandboxSettings.from_section(self._node.config["sandbox"])

    def executor_settings(self, workdir: Path | None = None) -> ExecutorSettings:
        return self.settings.executor_settings(self._node.data_dir, workdir)

    def sandbox(self) -> Sandbox:
        backend = self.settings.backend
        factories: dict[str, Any] = self._node.plugins.registries.sandboxes()
        if backend not in factories:
            raise SandboxError(f"no {backend!r} sandbox backend registered")
        return factories[backend](self._node.config)  # type: ignore[no-any-return]
