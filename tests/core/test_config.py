"""node.toml: each class of error names the file, the line, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from oa_node import config
from oa_node.config import ConfigError, Key, Section

SECTIONS = [
    Section(
        "relay",
        keys=[
            Key("enabled", bool, False, "run the relay"),
            Key("port", int, 7777, "port", check=config.port),
            Key("storage", str, "sqlite", choices=("sqlite", "postgres")),
            Key("ratio", float, 1.5),
            Key("kinds", list, [], item=int),
            Key("dsn", str, optional=True),
        ],
        sections=[Section("auth", keys=[Key("required_for", list, [], item=str)])],
        starter={"enabled": True},
    ),
    Section("node", keys=[Key("name", str, "n"), Key("secret", str)]),
]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), SECTIONS)
    return info.value


def test_defaults_filled_and_values_typed(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[node]\nsecret = "x"\n[relay]\nport = 9\nratio = 2\n'),
                      SECTIONS)
    assert cfg["relay"] == {
        "enabled": False, "port": 9, "storage": "sqlite", "ratio": 2.0, "kinds": [],
        "dsn": None, "auth": {"required_for": []},
    }
    assert isinstance(cfg["relay"]["ratio"], float)
    assert cfg["node"]["name"] == "n"


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[node]\nsecret = "x"\nport = = 3\n')
    assert err.path.endswith("node.toml") and err.line == 3
    assert "invalid TOML" in str(err) and str(err).startswith(f"{err.path}:3:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml", SECTIONS)


S = '[node]\nsecret = "x"\n'  # a valid [node] section, so the error is the one under test


@pytest.mark.parametrize(("text", "key", "line", "fragments"), [
    pytest.param(S + '\n[relay]\nenabled = true\nport = "80"\n', "relay.port", 6,
                 ["expected an integer", "'80'"], id="wrong type"),
    pytest.param(S + "[relay]\nport = true\n", "relay.port", None,
                 ["expected an integer"], id="bool is not an integer"),
    pytest.param(S + "[relay]\nport = 70000\n", "relay.port", 4,
                 ["between 0 and 65535"], id="check"),
    pytest.param(S + '[relay]\nstorage = "mysql"\n', "relay.storage", None,
                 ["'sqlite', 'postgres'"], id="choice"),
    pytest.param(S + '[relay]\nkinds = [1, "two"]\n', "relay.kinds", None,
                 ["item 1"], id="list item type"),
    pytest.param(S + "[relay]\nprot = 1\n", "relay.prot", 4,
                 ["unknown key", "port"], id="unknown key lists known ones"),
    pytest.param(S + '[relay.auth]\nrequired = ["write"]\n', "relay.auth.required", 4,
                 [], id="unknown key in nested section"),
    pytest.param(S + "[rellay]\nport = 1\n", "rellay", 3,
                 ["unknown section"], id="unknown section"),
    pytest.param("[relay]\n", "node.secret", None,
                 ["missing required key"], id="missing required key"),
    pytest.param('relay = 3\n' + S, "relay", None, [], id="section that is not a table"),
])
def test_error_names_key_line_and_expectation(
        tmp_path: Path, text: str, key: str, line: int | None, fragments: list[str]) -> None:
    err = load_error(tmp_path, text)
    assert err.key == key
    if line is not None:
        assert err.line == line
    for fragment in fragments:
        assert fragment in err.detail


def test_embedded_defaults_need_no_file() -> None:
    cfg = config.load(None, [SECTIONS[0]])
    assert cfg.path is None and cfg["relay"]["port"] == 7777


def test_example_documents_every_key_and_round_trips(tmp_path: Path) -> None:
    text = config.render_example(SECTIONS, {"node": {"secret": "s"}}, starter=True)
    for key in ("enabled", "port", "storage", "ratio", "kinds", "dsn", "required_for", "name"):
        assert key in text
    assert "[relay.auth]" in text
    cfg = config.load(write(tmp_path, text), SECTIONS)
    assert cfg["relay"]["enabled"] is True and cfg["node"]["secret"] == "s"


def test_relative_paths_resolve_next_to_the_file(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[node]\nsecret = "x"\n'), SECTIONS)
    assert cfg.resolve_path("data") == (tmp_path / "data").resolve()


def test_secrets_are_redacted_for_display(tmp_path: Path) -> None:
    sections = [Section("wallet", keys=[Key("uri", str, optional=True, secret=True),
                                        Key("timeout", int, 5)])]
    cfg = config.load(write(tmp_path, '[wallet]\nuri = "nostr+walletconnect://x?secret=y"\n'),
                      sections)
    assert cfg.redacted() == {"wallet": {"uri": "***", "timeout": 5}}
    assert cfg["wallet"]["uri"].endswith("secret=y")
    assert config.load(None, sections).redacted() == {"wallet": {"uri": None, "timeout": 5}}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_float_must_be_finite(tmp_path: Path, value: str) -> None:
    err = load_error(tmp_path, f'[node]\nsecret = "x"\n[relay]\nratio = {value}\n')
    assert err.key == "relay.ratio" and err.line == 4
    assert "expected a finite number" in err.detail


def test_example_round_trips_hostile_strings(tmp_path: Path) -> None:
    """``oa-node init --relay`` puts user text into the file: it must stay valid TOML."""
    secret = 'line\nbreak\ttab "quoted" back\\slash \x01 del\x7f é ✓'
    sections = [*SECTIONS, Section("env", keys=[Key("vars", dict, {})])]
    text = config.render_example(
        sections, {"node": {"secret": secret}, "env": {"vars": {"a b": "1", "c.d": "2"}}})
    cfg = config.load(write(tmp_path, text), sections)
    assert cfg["node"]["secret"] == secret
    assert cfg["env"]["vars"] == {"a b": "1", "c.d": "2"}
