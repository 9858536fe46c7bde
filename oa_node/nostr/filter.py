"""NIP-01 subscription filters: strict parsing and fast in-memory matching."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.keys import _hex_fullmatch

_TAG_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _hex64_set(value: object, key: str) -> set[str]:
    if type(value) is not list:
        raise ProtocolError("invalid", f"filter {key!r} must be an array of 64-char hex strings")
    for v in value:
        if type(v) is not str or len(v) != 64 or _hex_fullmatch(v) is None:
            raise ProtocolError("invalid", f"filter {key!r} must contain 64-char lowercase hex")
    return set(value)


def _int_field(value: object, key: str) -> int:
    if type(value) is not int or value < 0:
        raise ProtocolError("invalid", f"filter {key!r} must be a non-negative integer")
    return value


@dataclass
class Filter:
    """One REQ filter. ``None`` means "no condition"; an empty set matches nothing.

    ``tags`` maps a single tag letter (from ``"#e"``) to accepted values.
    """

    ids: set[str] | None = None
    authors: set[str] | None = None
    kinds: set[int] | None = None
    tags: dict[str, set[str]] = field(default_factory=dict)
    since: int | None = None
    until: int | None = None
    limit: int | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        # Accept any iterable from Python callers; matching relies on sets.
        if self.ids is not None and not isinstance(self.ids, set):
            self.ids = set(self.ids)
        if self.authors is not None and not isinstance(self.authors, set):
            self.authors = set(self.authors)
        if self.kinds is not None and not isinstance(self.kinds, set):
            self.kinds = set(self.kinds)
        for k, v in self.tags.items():
            if not isinstance(v, set):
                self.tags[k] = set(v)

    @classmethod
    def from_dict(cls, obj: Any) -> Filter:
        """Validate known keys strictly, ignore unknown ones; raises ProtocolError.

        Tag conditions other than a single letter (``#xy``) are refused rather than ignored,
        because ignoring a condition would widen the result set.
        """
        if type(obj) is not dict:
            raise ProtocolError("invalid", "filter must be a JSON object")
        f = cls()
        for key, value in obj.items():
            if key == "ids":
                f.ids = _hex64_set(value, key)
            elif key == "authors":
                f.authors = _hex64_set(value, key)
            elif key == "kinds":
                if type(value) is not list or any(
                    type(k) is not int or not 0 <= k <= 65535 for k in value
                ):
                    raise ProtocolError("invalid", "filter 'kinds' must be an array of 0..65535")
                f.kinds = set(value)
            elif key == "since":
                f.since = _int_field(value, key)
            elif key == "until":
                f.until = _int_field(value, key)
            elif key == "limit":
                f.limit = _int_field(value, key)
            elif key == "search":
                if type(value) is not str:
                    raise ProtocolError("invalid", "filter 'search' must be a string")
                f.search = value
            elif key[:1] == "#":
                letter = key[1:]
                if len(letter) != 1 or letter not in _TAG_LETTERS:
                    raise ProtocolError(
                        "invalid", f"unsupported tag filter {key[:20]!r} (only #a-z, #A-Z)"
                    )
                if type(value) is not list or any(type(v) is not str for v in value):
                    raise ProtocolError("invalid", f"filter {key!r} must be an array of strings")
                f.tags[letter] = set(value)
            # any other key: ignored, as common relays do
        return f

    def to_dict(self) -> dict[str, Any]:
        """Wire form; list values are sorted so the output is deterministic."""
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = sorted(self.ids)
        if self.authors is not None:
            out["authors"] = sorted(self.authors)
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        for letter in sorted(self.tags):
            out["#" + letter] = sorted(self.tags[letter])
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        if self.limit is not None:
            out["limit"] = self.limit
        if self.search is not None:
            out["search"] = self.search
        return out

    def matches(self, event: Event) -> bool:
        """True if ``event`` satisfies every condition (``limit`` is ignored, per NIP-01)."""
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.tags:
            etags = event.tags
            for letter, values in self.tags.items():
                for t in etags:
                    if len(t) > 1 and t[0] == letter and t[1] in values:
                        break
                else:
                    return False
        if self.search is not None and not _search_matches(self.search, event.content):
            return False
        return True


def _search_matches(query: str, content: str) -> bool:
    """Minimal NIP-50 for live events: every plain term occurs in content, case-insensitively.

    ``key:value`` extension terms are ignored, as NIP-50 lets relays do.
    """
    text = content.casefold()
    return all(term in text for term in query.casefold().split() if ":" not in term)


def matches_any(filters: Iterable[Filter], event: Event) -> bool:
    """NIP-01: several filters in one REQ are OR-ed."""
    return any(f.matches(event) for f in filters)
