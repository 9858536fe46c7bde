"""NIP-34 kinds, limits, the error type and small tag helpers shared by every event family."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from oa_node.errors import UserError
from oa_node.nostr import kinds
from oa_node.nostr.event import Event
from oa_node.nostr.keys import is_hex

REPO = kinds.GIT_REPO_ANNOUNCEMENT
STATE = kinds.GIT_REPO_STATE
PATCH = kinds.GIT_PATCH
PULL_REQUEST = kinds.GIT_PULL_REQUEST
PULL_REQUEST_UPDATE = kinds.GIT_PULL_REQUEST_UPDATE
ISSUE = kinds.GIT_ISSUE
COMMENT = kinds.COMMENT
STATUS_OPEN = kinds.GIT_STATUS_OPEN
STATUS_APPLIED = kinds.GIT_STATUS_APPLIED
STATUS_CLOSED = kinds.GIT_STATUS_CLOSED
STATUS_DRAFT = kinds.GIT_STATUS_DRAFT
STATUS_KINDS = (STATUS_OPEN, STATUS_APPLIED, STATUS_CLOSED, STATUS_DRAFT)
STATUS_NAMES = {STATUS_OPEN: "open", STATUS_APPLIED: "applied", STATUS_CLOSED: "closed",
                STATUS_DRAFT: "draft"}
ISSUE_STATUS_NAMES = STATUS_NAMES | {STATUS_APPLIED: "resolved"}

#: NIP-34: "Patches SHOULD be used if each event is under 60kb, otherwise PRs SHOULD be used."
#: We measure the patch text in UTF-8 bytes; the tags add well under 1 KiB, so an event made
#: from a patch below this stays far below common relays' 128 KiB message limits.
MAX_PATCH_BYTES = 60 * 1024

#: Markers other clients put on a revision's first patch (NIP-34 says ``root-revision``,
#: older ngit wrote ``revision-root``); read both, write the NIP's.
REVISION_MARKERS = ("root-revision", "revision-root")

_FROM_LINE = re.compile(r"^From ([0-9a-f]{40}|[0-9a-f]{64}) ")
_COMMIT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_TZ = re.compile(r"^([+-])(\d{2})(\d{2})$")
# ASCII only: str.isdigit() also takes '²', which int() refuses; bounded so int() never meets
# Python's 4300-digit limit and a git date stays one git accepts
_KIND = re.compile(r"[0-9]{1,5}")
_UNIX_TIME = re.compile(r"-?[0-9]{1,12}")
_TZ_MINUTES = re.compile(r"-?[0-9]{1,4}")
#: A commit's ``encoding`` header value as a tag may carry it (nothing that could end a line)
_ENCODING = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")


class Nip34Error(UserError):
    """A NIP-34 event that cannot be used, or a request that makes no sense; the message
    names the event and what is wrong with it."""


def short(event_id: str) -> str:
    return event_id[:8]


def is_commit_id(value: str) -> bool:
    return bool(_COMMIT_ID.match(value))


# --- small tag helpers -------------------------------------------------------------------------


def tag_values(tags: Iterable[Sequence[str]], name: str) -> list[str]:
    """Every value of every ``name`` tag (multi-value tags such as ``clone`` flattened)."""
    out: list[str] = []
    for t in tags:
        if len(t) >= 2 and t[0] == name:
            out.extend(v for v in t[1:] if v)
    return out


def first_value(tags: Iterable[Sequence[str]], name: str) -> str | None:
    for t in tags:
        if len(t) >= 2 and t[0] == name:
            return t[1]
    return None


def hashtags(event: Event) -> set[str]:
    return {t[1].lower() for t in event.tags if len(t) >= 2 and t[0] == "t"}


def marked_e(event: Event, marker: str, name: str = "e") -> str | None:
    """The event id of the first ``e`` tag carrying NIP-10 ``marker`` (position 3)."""
    for t in event.tags:
        if len(t) >= 4 and t[0] == name and t[3] == marker and is_hex(t[1], 32):
            return t[1]
    return None


def parse_coordinate(value: str) -> tuple[int, str, str]:
    """``"30617:<pubkey>:<d>"`` -> ``(kind, pubkey, d)``."""
    parts = value.split(":", 2)
    if (len(parts) != 3 or not _KIND.fullmatch(parts[0]) or not is_hex(parts[1], 32)
            or not parts[2]):
        raise Nip34Error(f"not a repository address: {value!r} (expected 30617:<pubkey>:<id>)")
    return int(parts[0]), parts[1], parts[2]


def _newest(events: Iterable[Event]) -> Event | None:
    return max(events, key=lambda e: (e.created_at, e.id), default=None)


def _pr_revision_of(event: Event) -> str | None:
    """A PR with an unmarked ``e`` tag names the root patch it revises (NIP-34)."""
    for t in event.tags:
        if len(t) >= 2 and t[0] == "e" and is_hex(t[1], 32) and (len(t) < 4 or t[3] in ("",)):
            return t[1]
    return None

