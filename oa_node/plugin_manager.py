"""The pluggy manager: loads built-in and third-party plugins the same way.

Every plugin, built-in or not, is a module named in the ``oa_node.plugins`` entry-point
group. ``[plugins] disable = [...]`` in the config, or ``OA_NODE_DISABLE_PLUGINS`` (comma
separated) in the environment, keeps named plugins from loading.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

import pluggy

from oa_node import hookspecs

ENTRY_POINT_GROUP = "oa_node.plugins"


@dataclass(frozen=True)
class LoadedPlugin:
    """What ``oa-node plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class FailedPlugin:
    name: str
    module: str
    error: str


class PluginHost:
    """Owns the pluggy manager and remembers where each plugin came from."""

    def __init__(self, disable: frozenset[str] = frozenset()) -> None:
        self.pm = pluggy.PluginManager("oa_node")
        self.pm.add_hookspecs(hookspecs)
        self.disabled = disable
        self.loaded: list[LoadedPlugin] = []
        self.failed: list[FailedPlugin] = []
        self.registries = Registries(self)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def load_entry_points(self) -> None:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            if ep.name in self.disabled or self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not break the node
                self.failed.append(FailedPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
                continue
            dist = ep.dist
            self.loaded.append(
                LoadedPlugin(
                    name=ep.name,
                    module=ep.value,
                    distribution=dist.metadata["Name"] if dist else "?",
                    version=dist.version if dist else "?",
                    hooks=tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or [])),
                )
            )

    def fail(self, name: str, error: str) -> None:
        """Record that a loaded plugin failed in one of its hooks."""
        module = next((p.module for p in self.loaded if p.name == name), name)
        self.failed.append(FailedPlugin(name, module, error))

    def register(self, module: object, name: str) -> None:
        """Register an in-process plugin (tests, embedding)."""
        self.pm.register(module, name=name)
        self.loaded.append(
            LoadedPlugin(
                name=name,
                module=getattr(module, "__name__", repr(module)),
                distribution="(in process)",
                version="",
                hooks=tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or [])),
            )
        )


def disabled_from_env() -> frozenset[str]:
    raw = os.environ.get("OA_NODE_DISABLE_PLUGINS", "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def load_plugins(disable: frozenset[str] = frozenset()) -> PluginHost:
    host = PluginHost(disable | disabled_from_env())
    host.load_entry_points()
    return host


# --- registries filled through the register_* hooks ------------------------------------


def _collect_pairs(hook: pluggy.HookCaller, what: str, **kwargs: object) -> dict[str, object]:
    found: dict[str, object] = {}

    def register(name: str, value: object) -> None:
        if name in found:
            raise ValueError(f"{what} {name!r} registered twice")
        found[name] = value

    hook(register=register, **kwargs)
    return found


class Registries:
    """Read-only views over what plugins registered; computed once per host."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host
        self._cache: dict[str, object] = {}

    def config_sections(self) -> list[object]:
        """Every plugin's declared sections; a plugin whose hook fails is reported in
        ``host.failed`` (and by ``oa-node plugins``) instead of breaking every command."""
        sections: list[object] = []
        for impl in self._host.hook.register_config.get_hookimpls():
            mine: list[object] = []
            try:
                impl.function(register=mine.append)
            except Exception as exc:
                self._host.fail(impl.plugin_name,
                                f"register_config: {type(exc).__name__}: {exc}")
                continue
            sections += mine
        return sections

    def job_types(self) -> dict[str, object]:
        """schema id -> job type object (anything with a ``schema_id`` attribute): the
        core's built-in job types (``oa_node.executors.builtin``), then every plugin's.
        They are their own registration: a buyer knows the schemas whichever plugins load
        (the sandbox's included). A plugin replaces a built-in only by saying so
        (``register(job_type, replace=True)``); any other schema registered twice is
        refused."""
        if "job_types" not in self._cache:
            from oa_node.executors.builtin import BUILTIN_JOB_TYPES

            builtin = {str(jt.schema_id) for jt in BUILTIN_JOB_TYPES}
            found: dict[str, object] = {jt.schema_id: jt for jt in BUILTIN_JOB_TYPES}
            replaced: set[str] = set()

            def register(job_type: object, *, replace: bool = False) -> None:
                schema_id = str(getattr(job_type, "schema_id", ""))
                if not schema_id:
                    raise ValueError(f"job type {job_type!r} has no schema_id")
                if replace and schema_id in builtin and schema_id not in replaced:
                    replaced.add(schema_id)
                elif schema_id in found:
                    raise ValueError(f"job type {schema_id!r} registered twice")
                found[schema_id] = job_type

            self._host.hook.register_job_types(register=register)
            self._cache["job_types"] = found
        return self._cache["job_types"]  # type: ignore[return-value]

    def sandboxes(self) -> dict[str, object]:
        if "sandboxes" not in self._cache:
            self._cache["sandboxes"] = _collect_pairs(
                self._host.hook.register_sandboxes, "sandbox backend"
            )
        return self._cache["sandboxes"]  # type: ignore[return-value]

    def wallets(self) -> dict[str, object]:
        if "wallets" not in self._cache:
            self._cache["wallets"] = _collect_pairs(self._host.hook.register_wallets, "wallet")
        return self._cache["wallets"]  # type: ignore[return-value]

    def signers(self) -> dict[str, object]:
        if "signers" not in self._cache:
            self._cache["signers"] = _collect_pairs(self._host.hook.register_signers, "signer")
        return self._cache["signers"]  # type: ignore[return-value]

    def relay_policies(self, config: object) -> dict[str, list[object]]:
        """stage -> policy functions made from ``config`` (the node's validated config), in
        load order. ``event`` policies see an event before its signature is checked (cheap
        refusals first); ``verified_event`` ones only after (anything keyed on the author,
        whose key could otherwise be forged)."""
        stages: dict[str, list[object]] = {"event": [], "verified_event": [], "filter": [],
                                           "connect": []}

        def register(stage: str, fn: object) -> None:
            if stage not in stages:
                raise ValueError(f"unknown relay policy stage {stage!r} (expected {list(stages)})")
            stages[stage].append(fn)

        self._host.hook.register_relay_policies(config=config, register=register)
        return stages
