"""Settings declared once: a dataclass whose fields are a config section's keys.

A plugin writes its settings as a dataclass deriving from :class:`Settings`; each field is
made by :func:`setting` (default, help, choices, check, secrecy) and its annotation is the
key's type (``bool``, ``int``, ``float``, ``str``, ``list[T]``, ``tuple[T, ...]``,
``dict[...]``, ``T | None`` for an optional key), or by :func:`subsection` for a nested
``[name.sub]`` table. The config :class:`~oa_node.config.Section` is derived from the class
(``MySettings.section()``) and the validated table turns back into the dataclass
(``MySettings.from_section(table)``), so a key cannot exist in one and not the other::

    @dataclass(frozen=True)
    class GreeterSettings(Settings, section="greeter", help="Says hello."):
        enabled: bool = setting(False, "Run the greeter.")
        name: str = setting("world", "Whom to greet.")

A class may override :meth:`Settings.problems` to check its keys together (a key another
one requires, a file that must exist); ``oa-node config check`` and ``oa-node start`` report
what it yields with every other error.

The config file keeps its one source of truth for names, defaults and type checks:
``oa_node.config`` validates against the derived section exactly as it does any other.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from oa_node.config import Check, Key, Section

_META = "oa_node.setting"
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class _KeyMeta:
    help: str
    choices: tuple[Any, ...] | None
    check: Check | None
    secret: bool


@dataclass(frozen=True)
class _SubMeta:
    help: str


def setting(default: Any = MISSING, help: str = "", *, choices: tuple[Any, ...] | None = None,
            check: Check | None = None, secret: bool = False) -> Any:
    """A dataclass field that is also a config key (no default: a required key)."""
    meta = {_META: _KeyMeta(help, choices, check, secret)}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: copy.copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def subsection(cls: type[Settings], help: str = "") -> Any:
    """A dataclass field holding a nested ``[section.<field>]`` table of ``cls``."""
    return field(default_factory=cls, metadata={_META: _SubMeta(help or cls._help)})


class Settings:
    """Base of a settings dataclass; class keywords name its section (see the module)."""

    _section: ClassVar[str] = ""
    _help: ClassVar[str] = ""
    _starter: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, section: str = "", help: str = "",
                          starter: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._section, cls._help, cls._starter = section, help, dict(starter or {})

    @classmethod
    def section(cls, name: str | None = None) -> Section:
        """The config section these settings are read from."""
        name = name or cls._section
        if not name:
            raise TypeError(f"{cls.__name__}: no section name (class keyword `section=`)")
        keys: list[Key] = []
        subs: list[Section] = []
        for f, hint in _fields(cls):
            meta = f.metadata[_META]
            if isinstance(meta, _SubMeta):
                sub = hint.section(f.name)
                subs.append(Section(sub.name, sub.keys, meta.help, sub.sections,
                                    check=sub.check))
            else:
                keys.append(_key(cls, f, hint, meta))
        check = None
        if cls.problems is not Settings.problems:
            def check(table: dict[str, Any], resolve: Callable[[str], Path]
                      ) -> Iterable[tuple[str, str]]:
                return cls.from_section(table).problems(resolve)
        return Section(name, keys, cls._help, subs, starter=cls._starter, check=check)

    def problems(self, resolve: Callable[[str], Path]) -> Iterable[tuple[str, str]]:
        """``(key, message)`` for each problem of the keys together (none by default);
        ``resolve`` turns a configured path into the file it names."""
        return ()

    @classmethod
    def from_section(cls, table: Mapping[str, Any] | None) -> Self:
        """The settings from a validated table (a missing key takes its default; a key
        that is no field is a bug: the section is derived from the fields)."""
        table = dict(table or {})
        declared = {f.name: (f, hint) for f, hint in _fields(cls)}
        unknown = sorted(set(table) - set(declared))
        if unknown:
            raise ValueError(f"{cls.__name__}: no setting for key(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in table.items():
            f, hint = declared[name]
            if isinstance(f.metadata[_META], _SubMeta):
                values[name] = hint.from_section(value)
            elif typing.get_origin(hint) is tuple:
                values[name] = tuple(value)
            elif isinstance(value, list | dict):
                values[name] = copy.copy(value)
            else:
                values[name] = value
        return cls(**values)


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if _META in f.metadata]


def _key(cls: type, f: dataclasses.Field[Any], hint: Any, meta: _KeyMeta) -> Key:
    optional = False
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"{cls.__name__}.{f.name}: only `T | None` unions are settings")
        hint, optional = args[0], True
    origin = typing.get_origin(hint) or hint
    item: type | None = None
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args and args[0] in _SCALARS else None
        kind: type = list
    elif origin is dict:
        kind = dict
    elif origin in _SCALARS:
        kind = origin
    else:
        raise TypeError(f"{cls.__name__}.{f.name}: {hint!r} is not a config type")
    if f.default is not MISSING:
        default = f.default
    elif f.default_factory is not MISSING:
        default = f.default_factory()
    else:
        default = None if optional else _missing()
    return Key(f.name, kind, default, meta.help, item=item, choices=meta.choices,
               check=meta.check, optional=optional, secret=meta.secret)


def _missing() -> Any:
    from oa_node import config

    return config._MISSING
