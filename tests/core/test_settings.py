"""Settings declared once (oa_node.settings): the config section is derived from the
dataclass, so keys, defaults and checks cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from oa_node import config as config_mod
from oa_node.config import ConfigError, positive
from oa_node.settings import Settings, setting, subsection


@dataclass(frozen=True)
class Inner(Settings, help="A nested table."):
    depth: int = setting(3, "How deep.", check=positive)


@dataclass(frozen=True)
class Example(Settings, section="example", help="An example section.",
              starter={"enabled": True}):
    enabled: bool = setting(False, "Run it.")
    name: str = setting("x", "A name.", choices=("x", "y"))
    ratio: float = setting(0.5, "A ratio.")
    tags: tuple[str, ...] = setting(("a",), "Tags.")
    kinds: list[int] = setting([], "Kinds.")
    table: dict[str, int] = setting({}, "A table.")
    dsn: str | None = setting(None, "A secret.", secret=True)
    inner: Inner = subsection(Inner)


def test_the_section_is_derived_from_the_fields() -> None:
    section = Example.section()
    assert section.name == "example" and section.help == "An example section."
    assert section.starter == {"enabled": True}
    keys = {k.name: k for k in section.keys}
    assert list(keys) == ["enabled", "name", "ratio", "tags", "kinds", "table", "dsn"]
    assert (keys["name"].type, keys["name"].default, keys["name"].choices) == (str, "x",
                                                                               ("x", "y"))
    assert (keys["tags"].type, keys["tags"].item, keys["tags"].default) == (list, str, ("a",))
    assert (keys["kinds"].type, keys["kinds"].item) == (list, int)
    assert keys["table"].type is dict and keys["ratio"].type is float
    assert keys["dsn"].optional and keys["dsn"].secret and keys["dsn"].default is None
    [inner] = section.sections
    assert inner.name == "inner" and inner.help == "A nested table."
    assert [k.name for k in inner.keys] == ["depth"]


def test_validated_table_round_trips_into_the_dataclass() -> None:
    cfg = config_mod.validate([Example.section()], {
        "example": {"name": "y", "tags": ["b", "c"], "inner": {"depth": 7}}})
    got = Example.from_section(cfg["example"])
    assert got == Example(name="y", tags=("b", "c"), inner=Inner(depth=7))
    assert Example.from_section(config_mod.validate([Example.section()], {})["example"]) \
        == Example()
    assert Example.from_section({}) == Example()


def test_a_key_without_a_field_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="no setting for key"):
        Example.from_section({"nmae": "x"})


def test_errors_keep_the_file_line_key_format(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[example]\nname = "z"\n[example.inner]\ndepth = 0\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(path, [Example.section()])
    assert err.value.lines == [  # every error at once, one line each
        f"{path}:2: example.name: expected one of 'x', 'y', got 'z'",
        f"{path}:4: example.inner.depth: expected a number greater than 0, got 0"]
    path.write_text("[example.inner]\ndepth = 0\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(path, [Example.section()])
    assert str(err.value) == (f"{path}:2: example.inner.depth: expected a number greater "
                              "than 0, got 0")


def test_every_builtin_settings_class_agrees_with_its_section() -> None:
    """Defaults in the dataclass are the section's defaults: a validated empty config
    gives exactly the dataclass's own defaults."""
    from oa_node.plugins.buyer.settings import BuyerSettings
    from oa_node.plugins.nipsa.settings import NipsaSettings
    from oa_node.plugins.provider.settings import ProviderSettings
    from oa_node.plugins.relay.settings import RelaySettings
    from oa_node.plugins.sandbox.config import SandboxSettings

    for cls in (BuyerSettings, ProviderSettings, RelaySettings, SandboxSettings, NipsaSettings):
        cfg = config_mod.validate([cls.section()], {})
        assert cls.from_section(cfg[cls._section]) == cls(), cls
