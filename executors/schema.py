"""Validation helpers shared by the job schemas, and the parts they have in common.

Every check raises :class:`SchemaError` naming the field path (``commands[2].workdir``), so
a buyer or provider can tell at once what is wrong with a document. Unknown fields are
errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from oa_node import gitsafe

T = TypeVar("T")
MISSING: Any = object()

HEX64 = re.compile(r"^[0-9a-f]{64}$")
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class SchemaError(ValueError):
    """A document that does not match its schema; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "(document)"
        self.message = message
        super().__init__(f"{self.path}: {message}")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Obj:
    """A JSON object being read field by field, with the path for error messages."""

    def __init__(self, value: Any, path: str, known: tuple[str, ...]) -> None:
        if not isinstance(value, Mapping):
            raise SchemaError(path, f"expected an object, got {json_type(value)}")
        for key in value:
            if key not in known:
                raise SchemaError(join(path, str(key)),
                                  f"unknown field (expected one of: {', '.join(known)})")
        self.value = value
        self.path = path

    def at(self, key: str) -> str:
        return join(self.path, key)

    def raw(self, key: str, default: Any = MISSING) -> Any:
        if key not in self.value:
            if default is MISSING:
                raise SchemaError(self.at(key), "missing required field")
            return default
        return self.value[key]

    def str(self, key: str, default: Any = MISSING, *, choices: tuple[str, ...] | None = None,
            max_len: int = 4096, pattern: re.Pattern[str] | None = None,
            allow_empty: bool = True, what: str = "") -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        return check_str(value, self.at(key), choices=choices, max_len=max_len,
                         pattern=pattern, allow_empty=allow_empty, what=what)

    def int(self, key: str, default: Any = MISSING, *, lo: int | None = None,
            hi: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise SchemaError(self.at(key), f"expected an integer, got {json_type(value)}")
        return _bounded(value, self.at(key), lo, hi)

    def num(self, key: str, default: Any = MISSING, *, lo: float | None = None,
            hi: float | None = None, positive: bool = False) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(self.at(key), f"expected a number, got {json_type(value)}")
        if positive and value <= 0:
            raise SchemaError(self.at(key), f"expected a number greater than 0, got {value!r}")
        return _bounded(value, self.at(key), lo, hi)

    def bool(self, key: str, default: Any = MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise SchemaError(self.at(key), f"expected true or false, got {json_type(value)}")
        return value

    def list(self, key: str, item: Callable[[Any, str], T], default: Any = MISSING, *,
             max_items: int = 1024, min_items: int = 0) -> list[T]:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise SchemaError(self.at(key), f"expected a list, got {json_type(value)}")
        if len(value) > max_items:
            raise SchemaError(self.at(key), f"at most {max_items} items, got {len(value)}")
        if len(value) < min_items:
            raise SchemaError(self.at(key), f"at least {min_items} item(s) required")
        return [item(v, join(self.at(key), i)) for i, v in enumerate(value)]

    def sub(self, key: str, parse: Callable[[Any, str], T], default: Any = MISSING) -> T:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value  # type: ignore[no-any-return]
        return parse(value, self.at(key))


def _bounded(value: Any, path: str, lo: float | None, hi: float | None) -> Any:
    if lo is not None and value < lo:
        raise SchemaError(path, f"expected at least {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise SchemaError(path, f"expected at most {hi}, got {value!r}")
    return value


def check_str(value: Any, path: str, *, choices: tuple[str, ...] | None = None,
              max_len: int = 4096, pattern: re.Pattern[str] | None = None,
              allow_empty: bool = True, what: str = "") -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"expected a string, got {json_type(value)}")
    if choices is not None and value not in choices:
        raise SchemaError(path, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
    if len(value) > max_len:
        raise SchemaError(path, f"at most {max_len} characters, got {len(value)}")
    if not allow_empty and not value:
        raise SchemaError(path, "must not be empty")
    if "\x00" in value:
        raise SchemaError(path, "must not contain NUL characters")
    if pattern is not None and not pattern.match(value):
        raise SchemaError(path, f"expected {what or pattern.pattern}, got {value!r}")
    return value


def sha256_hex(value: Any, path: str) -> str:
    return check_str(value, path, pattern=HEX64, what="64 lowercase hex characters (sha256)")


def relative_path(value: Any, path: str, *, glob: bool = False) -> str:
    """A path inside the workspace: relative, no ``..``, no NUL; normalised."""
    text = check_str(value, path, max_len=1024, allow_empty=False)
    if text.startswith("/"):
        raise SchemaError(path, f"must be relative to the workspace, got absolute {text!r}")
    if "\\" in text or any(ord(c) < 0x20 for c in text):
        raise SchemaError(path, f"must not contain backslashes or control characters: {text!r}")
    if ".." in text.split("/"):
        raise SchemaError(path, f"path traversal ('..') is not allowed: {text!r}")
    if glob and text.startswith("**/.."):
        raise SchemaError(path, f"path traversal is not allowed: {text!r}")
    norm = posixpath.normpath(text)
    return norm


_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/@+^~-]{1,255}(?<!\.lock)$")


def git_ref(value: Any, path: str) -> str:
    """A branch, tag, ``HEAD`` or commit id; never something git could read as an option."""
    text = check_str(value, path, max_len=255, allow_empty=False)
    if not _GIT_REF.match(text) or text.endswith(("/", ".")):
        raise SchemaError(path, f"not a valid git ref or commit id: {text!r}")
    return text


def repo_url(value: Any, path: str) -> str:
    """A repository location that passes the project's one URL rule
    (:func:`oa_node.gitsafe.check_url`: not an option, no control characters, a transport
    git may use, no credentials) for any of git's safe transports; which of them a
    provider accepts is its own call. Checked here so that a buyer refuses to publish,
    and a provider to take, a request whose URL carries a token (it would be echoed in
    public events); the message never shows the secret."""
    text = check_str(value, path, max_len=4096, allow_empty=False)
    try:
        gitsafe.check_url(text, gitsafe.SCHEMES)
    except gitsafe.UnsafeURL as exc:
        raise SchemaError(path, str(exc)) from None
    return text


VERIFICATION_MODES = ("objective", "subjective")
ADJUDICATIONS = ("none", "majority_vote", "judge_model")


@dataclass(frozen=True)
class Verification:
    """How the buyer means to verify: objective checks, redundancy, adjudication."""

    mode: str = "objective"
    redundancy: int = 1
    adjudication: str = "none"

    @classmethod
    def parse(cls, value: Any, path: str) -> Verification:
        o = Obj(value, path, ("mode", "redundancy", "adjudication"))
        return cls(
            mode=o.str("mode", "objective", choices=VERIFICATION_MODES),
            redundancy=o.int("redundancy", 1, lo=1, hi=16),
            adjudication=o.str("adjudication", "none", choices=ADJUDICATIONS),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "redundancy": self.redundancy,
                "adjudication": self.adjudication}


@dataclass(frozen=True)
class Provenance:
    """Who ran the job, on what input, producing what output, when and for how long."""

    provider_pubkey: str = ""
    input_sha256: str = ""
    output_sha256: str = ""
    executed_at: int = 0
    duration_ms: int = 0
    #: ``hashing.attestation(provider_pubkey, verification digest)``: binds the key
    attestation: str = ""

    @classmethod
    def parse(cls, value: Any, path: str) -> Provenance:
        o = Obj(value, path, ("provider_pubkey", "input_sha256", "output_sha256",
                              "executed_at", "duration_ms", "attestation"))
        pub = o.str("provider_pubkey", "")
        if pub:
            sha256_hex(pub, o.at("provider_pubkey"))
        att = o.str("attestation", "")
        if att:
            sha256_hex(att, o.at("attestation"))
        return cls(
            provider_pubkey=pub,
            input_sha256=o.sub("input_sha256", sha256_hex),
            output_sha256=o.sub("output_sha256", sha256_hex),
            executed_at=o.int("executed_at", 0, lo=0),
            duration_ms=o.int("duration_ms", 0, lo=0),
            attestation=att,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"provider_pubkey": self.provider_pubkey, "input_sha256": self.input_sha256,
                "output_sha256": self.output_sha256, "executed_at": self.executed_at,
                "duration_ms": self.duration_ms, "attestation": self.attestation}
