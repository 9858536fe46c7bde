"""The CLI kit: safe rendering of untrusted text, shared options, exact JSON, error lines."""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from oa_node import cli_kit
from oa_node.cli_kit import UNSAFE_RANGES, cell, clean, print_json, render, shared_options
from oa_node.errors import UserError

UNSAFE = {c for lo, hi in UNSAFE_RANGES for c in range(lo, hi + 1)}
HOSTILE = [
    "[/]", "[bold]x[/bold]", "[link=https://evil.example]click[/link]", "[red", "\\[b]",
    ":smile:", "\x1b[2J\x1b[31mred", "\x1b]8;;https://evil\x07x\x1b]8;;\x07", "\x9b31m",
    "\x07\x08\x0b\x0c\r", "\x7f", "a\u202eevil\u202c", "\u2066iso\u2069", "zero\u200bwidth",
    "\ufeffbom", "\u2028line", "\ud800lone", "\U000e0041tag",
]


def plain_of(renderable: object, width: int = 10_000) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, legacy_windows=False).print(renderable)
    return out.getvalue()


def test_clean_makes_every_control_and_format_character_visible() -> None:
    assert clean("a\x1b[31mb") == "a\\x1b[31mb"
    assert clean("\x9b\x85\x7f\x00") == "\\x9b\\x85\\x7f\\x00"
    assert clean("x\u202ey\u2066z\u200b\ufeff") == "x\\u202ey\\u2066z\\u200b\\ufeff"
    assert clean("\ud800") == "\\ud800"
    assert clean("\U000e0041") == "\\U000e0041"
    assert clean("\u2028\u2029") == "\\u2028\\u2029"


def test_clean_one_line_and_multi_line() -> None:
    assert clean("a\nb\tc\r\nd") == "a b c d"
    assert clean("a\nb\tc\r\nd\re", one_line=False) == "a\nb\tc\nd\\x0de"
    assert clean("[/] [bold]") == "[/] [bold]"  # markup is left to the renderers


def test_clean_bounds_one_line_fields() -> None:
    huge = "x" * 1_000_000
    assert clean(huge) == "x" * 199 + "…"
    assert len(clean(huge, limit=80)) == 80
    assert clean(huge, one_line=False, limit=None) == huge
    assert clean("\x1b" * 500) .endswith("…") and len(clean("\x1b" * 500)) == 200


def test_unsafe_table_is_the_unicode_categories() -> None:
    cats = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    theirs = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in cats}
    assert UNSAFE <= theirs
    if unicodedata.unidata_version == "14.0.0":
        assert UNSAFE == theirs


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=sys.maxunicode)))
def test_clean_output_is_always_safe_and_faithful(text: str) -> None:
    for one_line in (True, False):
        out = clean(text, one_line=one_line, limit=None)
        assert not any(ord(ch) in UNSAFE and ch not in "\n\t" for ch in out)
        if one_line:
            assert "\n" not in out and "\t" not in out
        out.encode("utf-8")  # printable whatever the input
    if not any(ord(ch) in UNSAFE for ch in text):
        assert clean(text, one_line=False, limit=None) == text


@pytest.mark.parametrize("value", HOSTILE)
def test_render_shows_values_literally_and_applies_only_our_markup(value: str) -> None:
    text = render("[bold]{}[/] said {!r} and {name}", value, value, name=value)
    safe = clean(value)
    assert text.plain == f"{safe} said {clean(repr(value))} and {safe}"
    assert [(s.start, s.end, str(s.style)) for s in text.spans] == [(0, len(safe), "bold")]
    shown = plain_of(text)
    assert safe in shown and "\x1b" not in shown and "\u202e" not in shown


def test_render_formats_styles_and_braces() -> None:
    t = render("{:>5}|[red]{}[/]|{{x}}|{}", 42, "[/]", cell("c", style="green"))
    assert t.plain == "   42|[/]|{x}|c"
    styles = {(t.plain[s.start:s.end], str(s.style)) for s in t.spans}
    assert ("[/]", "red") in styles and ("c", "green") in styles


def test_render_brackets_around_a_value_stay_text() -> None:
    assert render("  [{}] {}", "cover", "subject").plain == "  [cover] subject"
    assert render("[{}]", "bold").plain == "[bold]"


def test_cell_in_a_table_is_literal() -> None:
    from rich.table import Table

    table = Table("a")
    table.add_row(cell("[/] [link=x]y \x1b[31m"))
    shown = plain_of(table)
    assert "[/] [link=x]y \\x1b[31m" in shown


def test_print_json_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"s": "[/] \x1b[31m \u202e \x9b é", "n": 1, "p": Path("/x")}
    print_json(data)
    out = capsys.readouterr().out
    assert json.loads(out) == {**data, "p": "/x"}


def test_run_main_user_error_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise UserError("bad [/] input\n\x1b[2Jsecond line")

    with pytest.raises(SystemExit) as exc:
        cli_kit.run_main(boom)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "error: bad [/] input \\x1b[2Jsecond line" in err


@dataclass
class Common:
    config: cli_kit.ConfigOption = None
    relay: cli_kit.relay_option("A relay.") = None  # type: ignore[valid-type]
    timeout: cli_kit.TimeoutOption = 10.0
    as_json: cli_kit.JsonOption = False


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @shared_options(Common)
    def one(name: Annotated[str, typer.Argument()], loud: bool = False, *,
            opts: Common) -> None:
        typer.echo(f"{name} {loud} {opts}")

    @app.command()
    @shared_options(Common, exclude=("relay",))
    def two(opts: Common, after: Annotated[int, typer.Option()] = 1) -> None:
        typer.echo(f"{after} {opts}")

    return app


def test_shared_options_are_offered_per_command_in_place() -> None:
    runner = CliRunner()
    res = runner.invoke(_app(), ["one", "x", "--loud", "-r", "ws://a", "-r", "ws://b",
                                 "--timeout", "3", "--json", "-c", "n.toml"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == ("x True Common(config=PosixPath('n.toml'), "
                                  "relay=['ws://a', 'ws://b'], timeout=3.0, as_json=True)")
    res = runner.invoke(_app(), ["two", "--after", "2"], env={"OA_NODE_CONFIG": "e.toml"})
    assert res.stdout.strip() == ("2 Common(config=PosixPath('e.toml'), relay=None, "
                                  "timeout=10.0, as_json=False)")
    res = runner.invoke(_app(), ["two", "--relay", "x"])
    assert res.exit_code == 2  # excluded: not an option of `two`
    cmd = typer.main.get_command(_app())
    two = cmd.commands["two"]  # type: ignore[attr-defined]
    assert [p.name for p in two.params] == ["config", "timeout", "as_json", "after"]


def test_shared_options_refuses_a_clash() -> None:
    with pytest.raises(TypeError):
        @shared_options(Common)
        def bad(timeout: float = 1.0, *, opts: Common) -> None: ...
