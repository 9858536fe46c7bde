"""``node.toml``: parsing, per-plugin sections, defaults and validation.

Each plugin declares its sections through the ``register_config`` hook as :class:`Section`
objects made of :class:`Key` specs. Loading fills defaults, checks types and values, and
rejects unknown keys. Every error is a :class:`ConfigError` naming the file, the line (when
the file has one for it), the dotted key and what was expected; a file with several errors
raises :class:`ConfigErrors` listing them all, so one ``oa-node config check`` shows every
fix to make. A section may also declare a ``check`` of its keys together (``storage =
"postgres"`` needs ``postgres_dsn``, a ``uri_file`` must exist), run once its keys are
valid. A section of a plugin that ``[plugins] disable`` keeps from loading is a warning
(:attr:`Config.warnings`), not an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli

from oa_node.errors import UserError

#: A value check: raises ``ValueError`` with what was expected.
Check = Callable[[Any], None]
#: A section's check of its keys together: given the validated table and a function that
#: resolves a path as the config does, yields ``(key, message)`` for each problem.
SectionCheck = Callable[[dict[str, Any], Callable[[str], Path]], Iterable[tuple[str, str]]]

_MISSING: Any = object()


class ConfigError(UserError):
    """A config file that cannot be used; ``str()`` is a complete, user-facing message."""

    def __init__(
        self, path: str | Path | None, key: str | None, message: str, line: int | None = None
    ) -> None:
        self.path = str(path) if path is not None else "<config>"
        self.key = key
        self.line = line
        self.detail = message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    @property
    def lines(self) -> list[str]:
        """One line per error (the CLI prints each)."""
        return [str(self)]


class ConfigErrors(ConfigError):
    """Several errors in one file; ``lines`` has one per error, ``str()`` joins them."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.key, first.detail, first.line)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return self.args[0]

    @property
    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and an optional extra check.

    ``type`` is one of ``bool``, ``int``, ``float``, ``str``, ``list`` (then ``item`` is the
    element type) or ``dict`` (a free-form table). ``default=None`` with ``optional=True``
    means "unset". ``choices`` restricts a value (or every list item) to a set.
    """

    name: str
    type: type
    default: Any = _MISSING
    help: str = ""
    item: type | None = None
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    optional: bool = False
    #: never printed by ``oa-node config check`` (wallet URIs, passwords)
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is _MISSING and not self.optional


@dataclass(frozen=True)
class Section:
    """A ``[name]`` table; ``sections`` are nested ``[name.sub]`` tables."""

    name: str
    keys: tuple[Key, ...] = ()
    help: str = ""
    sections: tuple[Section, ...] = ()
    #: free-form sections accept any key (used for e.g. ``[env]``-like tables)
    open: bool = False
    #: values ``oa-node init`` writes into a starter config (e.g. ``{"enabled": True}``)
    starter: dict[str, Any] = field(default_factory=dict)
    #: a check of the keys together (see :data:`SectionCheck`)
    check: SectionCheck | None = None

    def __init__(
        self,
        name: str,
        keys: Iterable[Key] = (),
        help: str = "",
        sections: Iterable[Section] = (),
        open: bool = False,
        starter: dict[str, Any] | None = None,
        check: SectionCheck | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "keys", tuple(keys))
        object.__setattr__(self, "help", help)
        object.__setattr__(self, "sections", tuple(sections))
        object.__setattr__(self, "open", open)
        object.__setattr__(self, "starter", dict(starter or {}))
        object.__setattr__(self, "check", check)


# --- reusable checks -----------------------------------------------------------------


def port(value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError("a TCP port between 0 and 65535")


def positive(value: float) -> None:
    if value <= 0:
        raise ValueError("a number greater than 0")


def non_negative(value: float) -> None:
    if value < 0:
        raise ValueError("a number of 0 or more")


def relay_url(value: str) -> None:
    if not re.match(r"^wss?://[^\s/]+", value):
        raise ValueError("a relay URL starting with ws:// or wss://")


# --- the loaded config -----------------------------------------------------------------

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


@dataclass
class Config:
    """Validated config: ``config["relay"]["port"]``, with defaults filled in."""

    path: Path | None
    data: dict[str, Any] = field(default_factory=dict)
    #: dotted names of keys declared ``secret``
    secrets: frozenset[str] = frozenset()
    #: problems that do not stop the node (a disabled plugin's section), one line each
    warnings: list[str] = field(default_factory=list)

    def redacted(self) -> dict[str, Any]:
        """The values with every set secret replaced by ``"***"``, and any password or
        secret parameter of a URI elsewhere masked (:func:`oa_node.redact.redact`)."""
        from oa_node.redact import redact_values

        out: dict[str, Any] = redact_values(self.data)
        for dotted in self.secrets:
            *tables, last = dotted.split(".")
            table = out
            for name in tables:
                table = table.get(name, {})
            if table.get(last) not in (None, ""):
                table[last] = "***"
        return out

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    def get(self, section: str, default: Any = None) -> Any:
        return self.data.get(section, default)

    def __contains__(self, section: str) -> bool:
        return section in self.data

    @property
    def base_dir(self) -> Path:
        """Relative paths in the config are relative to the file's folder."""
        return self.path.parent if self.path else Path.cwd()

    def resolve_path(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


class _LineFinder:
    """Finds the line of ``[section]`` / ``key =`` in the raw TOML text, for messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, dotted: str) -> int | None:
        parts = dotted.split(".")
        for depth in range(len(parts), -1, -1):
            table, key = parts[:depth], parts[depth:]
            start = 0
            if table:
                dotted = r"\s*\.\s*".join(map(re.escape, table))
                header = re.compile(r"^\s*\[\s*" + dotted + r"\s*\]")
                start = next((i for i, ln in enumerate(self.lines) if header.match(ln)), -1)
                if start < 0:
                    continue
                start += 1
            if not key:
                return start
            kre = re.compile(r"^\s*" + r"\s*\.\s*".join(map(re.escape, key)) + r"\s*=")
            for i in range(start, len(self.lines)):
                ln = self.lines[i]
                if table and re.match(r"^\s*\[", ln):
                    break
                if not table and re.match(r"^\s*\[", ln):
                    break
                if kre.match(ln):
                    return i + 1
        return None


def _type_ok(value: Any, t: type) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, t)


class _Validator:
    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = _LineFinder(text)
        self.errors: list[ConfigError] = []

    def error(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(self.path, dotted, message, self.lines.find(dotted))

    def section(self, spec: Section, raw: Any, prefix: str) -> dict[str, Any]:
        if raw is _MISSING:
            raw = {}
        if not isinstance(raw, dict):
            self.errors.append(
                self.error(prefix, f"expected a table [{prefix}], got {type(raw).__name__}"))
            raw = {}
        out: dict[str, Any] = {}
        known = {k.name: k for k in spec.keys}
        subs = {s.name: s for s in spec.sections}
        for name, value in raw.items():
            if name not in known and name not in subs and not spec.open:
                expected = ", ".join(sorted([*known, *subs])) or "no keys"
                self.errors.append(self.error(f"{prefix}.{name}",
                                              f"unknown key (expected one of: {expected})"))
            if spec.open and name not in known and name not in subs:
                out[name] = value
        for key in spec.keys:
            try:
                out[key.name] = self.key(key, raw.get(key.name, _MISSING), f"{prefix}.{key.name}")
            except ConfigError as exc:  # keep going: every error is reported at once
                self.errors.append(exc)
                out[key.name] = key.default if key.default is not _MISSING else None
        for sub in spec.sections:
            out[sub.name] = self.section(sub, raw.get(sub.name, _MISSING), f"{prefix}.{sub.name}")
        return out

    def key(self, key: Key, value: Any, dotted: str) -> Any:
        shown = (lambda v: "***") if key.secret else repr  # a secret is never echoed
        if value is _MISSING:
            if key.required:
                raise self.error(dotted, f"missing required key ({_TYPE_NAMES[key.type]})")
            default = key.default if key.default is not _MISSING else None
            return list(default) if isinstance(default, list | tuple) else default
        if not _type_ok(value, key.type):
            raise self.error(
                dotted,
                f"expected {_TYPE_NAMES[key.type]}, got {type(value).__name__} {shown(value)}",
            )
        if key.type is float:
            value = float(value)
            if not math.isfinite(value):  # TOML has nan and inf; no timeout or rate wants them
                raise self.error(dotted, f"expected a finite number, got {shown(value)}")
        values = [value]
        if key.type is list:
            if key.item is not None:
                for i, item in enumerate(value):
                    if not _type_ok(item, key.item):
                        raise self.error(
                            dotted,
                            f"item {i}: expected {_TYPE_NAMES[key.item]}, got {shown(item)}",
                        )
            values = list(value)
        if key.choices is not None:
            for v in values:
                if v not in key.choices:
                    options = ", ".join(repr(c) for c in key.choices)
                    raise self.error(dotted, f"expected one of {options}, got {shown(v)}")
        if key.check is not None:
            try:
                key.check(value)
            except ValueError as exc:
                raise self.error(dotted, f"expected {exc}, got {shown(value)}") from None
        return value


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    try:
        return tomli.loads(text), text
    except tomli.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else None
        raise ConfigError(path, None, f"invalid TOML: {exc}", line) from None


def validate(
    sections: Iterable[Section],
    raw: Mapping[str, Any],
    path: Path | None = None,
    text: str = "",
    *,
    disabled: Iterable[str] = (),
    checks: bool = False,
) -> Config:
    """Check ``raw`` (parsed TOML) against the declared sections, filling defaults, and with
    ``checks`` run each valid section's ``check`` (for ``config check`` and a node about to
    start; not for commands such as ``wallet create`` that make what a check looks for);
    raises :class:`ConfigErrors` listing every problem. ``disabled`` names plugins kept
    from loading: a section named after one is a warning."""
    specs: dict[str, Section] = {}
    for s in sections:
        if s.name in specs:
            raise ConfigError(path, s.name, "section declared by two plugins")
        specs[s.name] = s
    v = _Validator(path, text)
    warnings: list[str] = []
    off = frozenset(disabled)
    for name in raw:
        if name in specs:
            continue
        if isinstance(raw[name], dict) and name in off:
            where = (str(path) if path else "<config>") + (
                f":{line}" if (line := v.lines.find(name)) else "")
            warnings.append(f"{where}: [{name}] ignored: plugin {name!r} is disabled "
                            "([plugins] disable)")
        elif isinstance(raw[name], dict):
            expected = ", ".join(sorted(specs))
            v.errors.append(
                v.error(name, f"unknown section [{name}] (known sections: {expected})"))
        else:
            v.errors.append(v.error(name, "unknown top-level key (keys belong in a [section])"))
    data: dict[str, Any] = {}
    for name, spec in specs.items():
        before = len(v.errors)
        data[name] = v.section(spec, raw.get(name, _MISSING), name)
        if checks and len(v.errors) == before:
            _run_checks(v, spec, data[name], name, path)
    if v.errors:
        raise ConfigErrors(v.errors)
    return Config(path=path, data=data, secrets=frozenset(_secret_keys(specs.values())),
                  warnings=warnings)


def _run_checks(v: _Validator, spec: Section, table: dict[str, Any], prefix: str,
                path: Path | None) -> None:
    resolve = Config(path=path).resolve_path
    if spec.check is not None:
        for key, message in spec.check(table, resolve):
            v.errors.append(v.error(f"{prefix}.{key}" if key else prefix, message))
    for sub in spec.sections:
        _run_checks(v, sub, table[sub.name], f"{prefix}.{sub.name}", path)


def _secret_keys(sections: Iterable[Section], prefix: str = "") -> Iterable[str]:
    for spec in sections:
        here = f"{prefix}{spec.name}"
        yield from (f"{here}.{k.name}" for k in spec.keys if k.secret)
        yield from _secret_keys(spec.sections, here + ".")


def load(path: str | Path | None, sections: Iterable[Section], *,
         disabled: Iterable[str] = (), checks: bool = False) -> Config:
    """Read and validate ``path``; ``None`` gives the embedded defaults."""
    if path is None:
        return validate(sections, {}, disabled=disabled, checks=checks)
    p = Path(path)
    raw, text = read_toml(p)
    return validate(sections, raw, p, text, disabled=disabled, checks=checks)


def render_example(
    sections: Iterable[Section], overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *, starter: bool = False,
) -> str:
    """A commented TOML document listing every key with its default and help.

    ``starter=True`` applies each section's ``starter`` values (what ``oa-node init``
    writes); ``overrides`` maps dotted section names to values that win over both.
    """
    overrides = overrides or {}
    out: list[str] = []

    def fmt(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            # JSON's string escapes are all valid in a TOML basic string; TOML also bars DEL
            return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(value, list | tuple):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{fmt_key(k)} = {fmt(v)}" for k, v in value.items()) + " }"
        return str(value)

    def fmt_key(key: str) -> str:
        return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else fmt(key)

    def emit(spec: Section, prefix: str) -> None:
        out.append("")
        if spec.help:
            out.extend(f"# {ln}" for ln in spec.help.splitlines())
        out.append(f"[{prefix}]")
        chosen = {**(spec.starter if starter else {}), **overrides.get(prefix, {})}
        for key in spec.keys:
            if key.help:
                out.extend(f"# {ln}" for ln in key.help.splitlines())
            if key.choices:
                out.append("# one of: " + ", ".join(fmt(c) for c in key.choices))
            if key.name in chosen:
                out.append(f"{key.name} = {fmt(chosen[key.name])}")
            elif key.default is _MISSING or key.default is None:
                out.append(f"# {key.name} = ...  ({_TYPE_NAMES[key.type]}; unset by default)")
            else:
                out.append(f"{key.name} = {fmt(key.default)}")
        for sub in spec.sections:
            emit(sub, f"{prefix}.{sub.name}")

    for spec in sections:
        emit(spec, spec.name)
    return "\n".join(out).lstrip("\n") + "\n"
