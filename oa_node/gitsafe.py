"""One rule for running git against a URL that a stranger wrote.

Repository URLs reach us in job requests (provider) and in NIP-34 events (``oa-node git
checkout``). Git treats some "URLs" as programs to run (``ext::``, ``--upload-pack=...``
read as an option, ``fd::``), sends credentials found in a URL, and follows
``protocol.*`` settings from the user's config. Every fetch or clone whose URL did not come
from the local user therefore goes through :func:`check_url` (transport allowed, not an
option, no control characters, no credentials), puts ``--`` before the URL, and runs with
:func:`protocol_config` / :func:`protocol_env` so git itself refuses any other transport.

Pure: no I/O; callers run git.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from oa_node.errors import UserError
from oa_node.redact import hide_userinfo

#: Transports git may use at all; anything else (``ext``, ``fd``, remote helpers) never is.
SCHEMES = ("https", "http", "git", "ssh", "file")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_SCP = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")
#: C0, DEL, C1 and the Unicode bidi/invisible controls: never part of an honest URL.
_CONTROL = re.compile("[\x00-\x20\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
#: Longest URL accepted; git's own limits are larger, but nothing honest needs more.
MAX_URL_LENGTH = 2048


class UnsafeURL(UserError):
    """A repository URL git must not be run with; the message says why, in one line."""


def url_scheme(url: str) -> str:
    """The transport git would use for ``url``: https, http, git, ssh, file, or e.g. ``ext``."""
    if m := _HELPER.match(url):
        return m.group(1).lower()
    if m := _SCHEME.match(url):
        scheme = m.group(1).lower()
        return "ssh" if scheme in ("git+ssh", "ssh+git") else scheme
    if _SCP.match(url) and not url.startswith(("/", ".")):
        return "ssh"
    return "file"


def _userinfo(url: str, scheme: str) -> tuple[str | None, str | None]:
    """(user, password) named in ``url``, for the URL forms that can carry them."""
    if _SCHEME.match(url):
        try:
            parts = urlsplit(url)
        except ValueError:
            raise UnsafeURL(f"repository URL {shown(url)} cannot be parsed") from None
        return parts.username, parts.password
    if scheme == "ssh" and "@" in url.split(":", 1)[0]:
        return url.split("@", 1)[0], None
    return None, None


def check_url(url: str, allowed: Iterable[str]) -> str:
    """Raise :class:`UnsafeURL` unless git may fetch ``url``; returns its transport.

    Refused: empty or over-long URLs, anything git would read as an option (leading ``-``),
    control or invisible characters, transports outside ``allowed`` (``ext`` and remote
    helpers never), and credentials: a password anywhere, or any user name except an ssh
    login name (``https://TOKEN@host`` is a secret that would be echoed into public
    events)."""
    allowed = tuple(allowed)
    if not isinstance(url, str) or not url:
        raise UnsafeURL("repository URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"repository URL is longer than {MAX_URL_LENGTH} characters")
    if url.startswith("-"):
        raise UnsafeURL(f"repository URL {shown(url)} looks like a command-line option")
    if _CONTROL.search(url):
        raise UnsafeURL(f"repository URL {shown(url)} contains spaces or control characters")
    scheme = url_scheme(url)
    if scheme not in SCHEMES or scheme not in allowed:
        raise UnsafeURL(f"repository URL scheme {scheme!r} is not allowed "
                        f"(allowed: {', '.join(allowed) or 'none'}): {shown(url)}")
    user, password = _userinfo(url, scheme)
    if password is not None or (user is not None and scheme != "ssh"):
        raise UnsafeURL(f"repository URL {shown(url, redact=True)} carries credentials "
                        "(user:password@ or token@): give a URL without them")
    if scheme == "ssh" and user is not None and user.startswith("-"):
        raise UnsafeURL(f"repository URL {shown(url)} has a user name that looks like an option")
    return scheme


def shown(url: str, *, redact: bool = False, limit: int = 200) -> str:
    """``url`` fit for a one-line message: control characters escaped, credentials hidden,
    length bounded."""
    text = url
    if redact:
        text = hide_userinfo(text)
    text = text.encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


def protocol_config(allowed: Iterable[str]) -> list[str]:
    """``-c`` arguments that make git itself refuse every transport but ``allowed``."""
    allowed = tuple(allowed)
    pairs = {
        "protocol.allow": "never",
        "protocol.ext.allow": "never",
        "protocol.fd.allow": "never",
        "protocol.file.allow": "always" if "file" in allowed else "never",
        **{f"protocol.{s}.allow": "always" for s in allowed if s in SCHEMES and s != "file"},
        "submodule.recurse": "false",
        "fetch.recurseSubmodules": "false",
        "transfer.fsckObjects": "true",
        "credential.helper": "",
    }
    args: list[str] = []
    for key, value in pairs.items():
        args += ["-c", f"{key}={value}"]
    return args


def protocol_env(allowed: Iterable[str]) -> dict[str, str]:
    """Environment for a git process that fetches a stranger's URL: git's own transport
    allow-list, no prompts, no askpass programs."""
    return {
        "GIT_ALLOW_PROTOCOL": ":".join(s for s in allowed if s in SCHEMES),
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
