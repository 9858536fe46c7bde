"""The CLI kit every ``oa-node`` command uses: shared options, output, errors, progress.

- **Options** declared once: :data:`ConfigOption`, :data:`JsonOption`, :data:`TimeoutOption`
  and the factories for options whose help differs by command; :func:`shared_options` gives
  a command a whole dataclass of options (declared once, listed in every command's
  ``--help`` where they always were) as one argument.
- **Output**: :func:`print_json` writes exact JSON on stdout (never sanitised); human output
  goes through :func:`render` / :func:`cell` / :func:`print_text`, which show text from
  relays, files and users literally: never parsed as Rich markup, terminal control
  sequences made visible instead of obeyed (see :func:`clean`), one-line fields bounded.
- **Errors**: a :class:`~oa_node.errors.UserError` is one ``error:`` line and exit code 1
  (:func:`run_main`); usage errors are Click's, exit code 2.
- **Progress**: :func:`progress` shows a spinner with a status line during long work.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import string
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from oa_node.errors import UserError

__all__ = [
    "CONFIG_ENV", "ConfigOption", "ForceOption", "JsonOption", "TimeoutOption", "cell",
    "clean", "config_option", "console", "default_config_path", "err_console", "fail",
    "print_error", "print_json", "print_text", "progress", "pubkey_arg", "read_text_input",
    "render", "run_main",
    "shared_options", "sub_app", "text_arg", "warn",
]

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_ENV = "OA_NODE_CONFIG"
DEFAULT_CONFIG_NAME = "node.toml"

#: Human output (stdout) and diagnostics (stderr). Created once: Rich looks up
#: ``sys.stdout``/``sys.stderr`` at each print, so test runners that swap them still work.
console = Console()
err_console = Console(stderr=True)


# --- options ----------------------------------------------------------------------------


def config_option(help: str = "Config file (default: ./node.toml if present, else the "
                  "embedded defaults).") -> Any:
    """``--config/-c`` (also ``$OA_NODE_CONFIG``), with a help text saying what it is for."""
    return Annotated[Path | None, typer.Option("--config", "-c", envvar=CONFIG_ENV, help=help)]


ConfigOption = config_option()
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for relays.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]


def relay_option(help: str) -> Any:
    """``--relay/-r`` (repeatable), with a help text saying which relays it names."""
    return Annotated[list[str] | None, typer.Option("--relay", "-r", help=help)]


def default_config_path(explicit: Path | None) -> Path | None:
    """``--config`` when given, else ``./node.toml`` when present, else None (defaults)."""
    if explicit is not None:
        return explicit
    candidate = Path.cwd() / DEFAULT_CONFIG_NAME
    return candidate if candidate.exists() else None


def shared_options(cls: type, *, exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a command the fields of dataclass ``cls`` as its options, as one argument.

    The command declares a parameter annotated ``cls``; the decorator replaces it, in the
    command's signature, by one option per field (the field's ``Annotated`` type and
    default), at the same place, and calls the command with an instance of ``cls`` built
    from them. Fields in ``exclude`` are not offered and keep their defaults. So a set of
    options repeated across many commands is declared once and still given per command
    (``oa-node git list -C DIR --json`` as before), unlike options on a group callback.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls) if f.init and f.name not in exclude]

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        target = [p.name for p in sig.parameters.values() if p.annotation is cls]
        if len(target) != 1:
            raise TypeError(f"{fn.__name__}: needs exactly one parameter annotated {cls}")
        slot = target[0]
        own = set(sig.parameters) - {slot}
        clash = own & {f.name for f in fields}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {clash} clash with {cls.__name__}")
        injected = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                              default=f.default if f.default is not dataclasses.MISSING
                              else f.default_factory())  # type: ignore[misc]
            for f in fields
        ]
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name == slot:
                params.extend(injected)
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        names = [f.name for f in fields]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            kwargs[slot] = cls(**values)
            return fn(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # Typer must see the new signature, not the original
        return wrapper  # type: ignore[return-value]

    return decorate


def lazy_sub_app(app: typer.Typer, name: str, target: str, help: str) -> None:
    """Add the command group ``name`` whose Typer app is ``target`` (``"module:attr"``,
    the app or a function returning it), imported only when the group is used: ``oa-node
    --help`` and every other command do not pay for importing it (start-up time, see
    ``benchmarks/cli.py``). ``help`` is what
    ``oa-node --help`` lists for it. Commands added to the group before it loads (a plugin
    adding to a core group through :func:`sub_app`) are kept beside the loaded ones."""
    from typer.core import TyperGroup

    class LazyGroup(TyperGroup):
        _loaded: Any = None

        def _group(self) -> Any:
            if self._loaded is None:
                import importlib

                module, attr = target.split(":")
                sub = getattr(importlib.import_module(module), attr)
                if not isinstance(sub, typer.Typer):  # a function that builds it
                    sub = sub()
                markdown_help(sub)
                self._loaded = typer.main.get_command(sub)
            return self._loaded

        def list_commands(self, ctx: Any) -> list[str]:
            return list(dict.fromkeys([*self._group().list_commands(ctx), *self.commands]))

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            return self.commands.get(cmd_name) or self._group().get_command(ctx, cmd_name)

    app.add_typer(typer.Typer(cls=LazyGroup, no_args_is_help=True), name=name, help=help)


def markdown_help(app: typer.Typer) -> None:
    """Help texts name config sections like ``[node]``: render help as Markdown, which
    keeps them, instead of Rich markup, which would swallow them as style tags."""
    app.rich_markup_mode = "markdown"
    for group in app.registered_groups:
        if group.typer_instance is not None:
            markdown_help(group.typer_instance)


def sub_app(app: typer.Typer, name: str) -> typer.Typer | None:
    """The sub-app registered as ``name`` (e.g. ``relay``), so a plugin can add a command
    to an existing group instead of creating a rival one."""
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    return None


# --- safe text ----------------------------------------------------------------------------

#: Longest one-line field shown (a subject, a name, a table cell); longer ones end in "…".
LINE_LIMIT = 200

#: What a terminal may obey rather than show: the Unicode categories Cc (C0, DEL, C1), Cf
#: (bidi overrides and isolates, zero-width characters, BOM, soft hyphen...), Cs (lone
#: surrogates: not even encodable), Zl and Zp (line and paragraph separators), as of
#: Unicode 14 (tests/core/test_cli_kit.py compares with the running Python's table).
UNSAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)


def _char_class(ranges: tuple[tuple[int, int], ...], keep: str = "") -> re.Pattern[str]:
    parts = []
    for lo, hi in ranges:
        for a, b in _minus(lo, hi, sorted(ord(c) for c in keep)):
            first, last = re.escape(chr(a)), re.escape(chr(b))
            parts.append(first if a == b else f"{first}-{last}")
    return re.compile(f"[{''.join(parts)}]")


def _minus(lo: int, hi: int, holes: list[int]) -> list[tuple[int, int]]:
    out, start = [], lo
    for h in holes:
        if start <= h <= hi:
            if h > start:
                out.append((start, h - 1))
            start = h + 1
    if start <= hi:
        out.append((start, hi))
    return out


_UNSAFE_ONE_LINE = _char_class(UNSAFE_RANGES)
_UNSAFE_MULTI_LINE = _char_class(UNSAFE_RANGES, keep="\n\t")
_WHITESPACE = re.compile("[\n\t]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def clean(value: object, *, one_line: bool = True, limit: int | None = LINE_LIMIT) -> str:
    """``value`` as text a terminal shows literally and cannot be steered by.

    Control characters (C0 but newline and tab in multi-line text, DEL, C1), format
    characters (bidi overrides and isolates, zero-width characters, BOM), line/paragraph
    separators and lone surrogates become visible escapes such as ``\\x1b`` or
    ``\\u202e``; CRLF becomes LF. With ``one_line`` newlines and tabs become spaces and the
    result is cut to ``limit`` characters (the cut marked with "…"). Rich markup is not
    touched here: :func:`render`, :func:`cell` and :func:`print_text` never parse it.
    """
    text = value if isinstance(value, str) else str(value)
    cut = one_line and limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    text = text.replace("\r\n", "\n")
    if one_line:
        text = _UNSAFE_ONE_LINE.sub(_visible, _WHITESPACE.sub(" ", text))
        if limit is not None and (cut or len(text) > limit):
            text = text[: limit - 1] + "…"
        return text
    return _UNSAFE_MULTI_LINE.sub(_visible, text)


def cell(value: object, *, style: str = "", limit: int | None = LINE_LIMIT) -> Text:
    """A table cell (or any one-line field) showing ``value`` literally."""
    return Text(clean(value, limit=limit), style=style, end="")


_SENTINEL = 0xF0000  # supplementary private use: never in a template, cleaned from values


def render(template: str, *args: object, **kwargs: object) -> Text:
    """Our markup ``template`` with ``{}`` fields filled literally by untrusted values.

    The template (written in this code base) may use Rich markup (``[bold]{}[/]``); the
    values never are parsed as markup, each is :func:`clean`-ed as one line. A field may
    have a conversion and format spec (``{!r}``, ``{:>10}``) like :meth:`str.format`.
    Values that are :class:`~rich.text.Text` are used as they are.
    """
    pieces: list[str] = []
    values: list[Text] = []
    auto = 0
    fmt = string.Formatter()
    for literal, field, spec, conversion in fmt.parse(template):
        pieces.append(literal)
        if field is None:
            continue
        if field == "":
            value: object = args[auto]
            auto += 1
        elif field.isdigit():
            value = args[int(field)]
        else:
            value = kwargs[field]
        if isinstance(value, Text):
            shown = value
        else:
            value = fmt.convert_field(value, conversion) if conversion else value
            shown = Text(clean(format(value, spec or "")))
        pieces.append(chr(_SENTINEL + len(values)))
        values.append(shown)
    text = Text.from_markup("".join(pieces), emoji=False)
    return _fill(text, values)


def _fill(text: Text, values: list[Text]) -> Text:
    """Put ``values`` where their sentinel characters are, with the sentinel's style."""
    plain = text.plain
    cuts = sorted({o for i, ch in enumerate(plain) if ord(ch) >= _SENTINEL for o in (i, i + 1)})
    if not values or not cuts:
        return text
    out = Text(end=text.end)
    for piece in text.divide(cuts):
        p = piece.plain
        if len(p) == 1 and _SENTINEL <= ord(p) < _SENTINEL + len(values):
            value = values[ord(p) - _SENTINEL].copy()
            styles = [piece.style] + [s.style for s in piece.spans]
            for style in reversed(styles):  # the value's own style stays on top
                if style:
                    value.stylize_before(style)
            out.append_text(value)
        else:
            out.append_text(piece)
    return out


def print_text(value: object, *, style: str = "", err: bool = False) -> None:
    """Print multi-line untrusted text (a patch, an issue body, a command's output)
    literally: no markup, no highlighting, control sequences made visible, not wrapped."""
    (err_console if err else console).print(
        Text(clean(value, one_line=False, limit=None), style=style), soft_wrap=True)


def say(template: str, *args: object, **kwargs: object) -> None:
    """``console.print(render(template, ...))``: one line of human output on stdout."""
    console.print(render(template, *args, **kwargs), soft_wrap=True)


def warn(template: str, *args: object, label: str = "warning", **kwargs: object) -> None:
    """A ``warning:`` (or ``label:``) line on stderr; the values are shown literally."""
    err_console.print(render(f"[yellow]{label}:[/] " + template, *args, **kwargs),
                      soft_wrap=True)


# --- output and errors -------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Exact JSON on stdout (what scripts parse): sorted keys, never sanitised."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def print_error(message: object) -> None:
    """The one ``error:`` line of a failed command (stderr): the message shown literally,
    with any secret in it (a DSN's password, an NWC secret) masked."""
    from oa_node.redact import redact

    err_console.print(render("[bold red]error:[/] {}", Text(clean(redact(str(message)),
                                                                  limit=2000))),
                      highlight=False, soft_wrap=True)


def text_arg(value: str, name: str) -> str:
    """``value`` of option ``name`` if it is text an event can carry: invalid UTF-8 in
    argv or a file arrives as lone surrogates, which no event may contain (one line, exit 1,
    before anything is published)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{name}: not valid UTF-8 text") from None
    return value


def pubkey_arg(value: str, option: str = "") -> str:
    """A hex public key from 64 hex characters, an npub or an nprofile (what users paste);
    anything else is one clear line naming ``option``."""
    from oa_node.nostr import nip19
    from oa_node.nostr.errors import ProtocolError

    where = f"{option} " if option else ""
    text = value.strip()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower()):
        return text.lower()
    if text.startswith(("npub1", "nprofile1")):
        kind = text[:text.index("1")]
        try:
            decoded = nip19.decode(text)
        except ProtocolError as exc:
            raise UserError(f"{where}{clean(text, limit=70)!r}: not a valid {kind} "
                            f"({exc.reason})") from None
        data = decoded.data
        return str(data["pubkey"] if isinstance(data, dict) else data)
    raise UserError(f"{where}{clean(text, limit=70)!r}: expected 64 hex characters or an npub")


def read_text_input(source: str) -> str:
    """The text of file ``source`` (``-``: stdin), or one line saying why it cannot be read."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not UTF-8 text") from None


def fail(message: str) -> NoReturn:
    """Stop the command with a user error: one line, exit code 1."""
    raise UserError(message)


def run_main(app: Callable[[], Any]) -> None:
    """Run the CLI: a :class:`UserError` is one ``error:`` line and exit code 1, Ctrl-C is
    exit code 130; usage errors are Click's (exit code 2); anything else is a bug and keeps
    its traceback."""
    try:
        app()
    except UserError as exc:
        for line in getattr(exc, "lines", None) or [exc]:  # ConfigErrors: one per error
            print_error(line)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --- progress ------------------------------------------------------------------------------


class Progress:
    """A status line for long work: ``update`` changes it, ``log`` prints a line above it."""

    def __init__(self, status: Any) -> None:
        self._status = status

    def update(self, template: str, *args: object, **kwargs: object) -> None:
        if self._status is not None:
            self._status.update(render(template, *args, **kwargs))

    def log(self, template: str, *args: object, **kwargs: object) -> None:
        target = err_console if self._status is None else console
        target.print(render(template, *args, **kwargs), soft_wrap=True)


@contextmanager
def progress(label: str, *, enabled: bool = True) -> Iterator[Progress]:
    """A spinner with ``label`` on stdout while the block runs (nothing when not
    ``enabled``, e.g. under ``--json``, where log lines go to stderr instead)."""
    if not enabled:
        yield Progress(None)
        return
    with console.status(render("{}", label)) as status:
        yield Progress(status)
