"""One rule for keeping secrets out of output: URIs' passwords and secret query parameters.

Config values declared ``secret`` are hidden by name (``Config.redacted``); this module hides
secrets wherever else they may travel: a database DSN echoed in an error, an NWC URI in a
log line. :func:`redact` rewrites text, :class:`RedactingFilter` applies it to every log
record, so one rule covers the CLI's error line, ``config check`` and the node's logs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

#: ``scheme://user:password@host``: the password (any scheme: postgresql, redis, https...)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]*(?=@)")
#: ``?secret=...`` / ``&password=...`` in a URI query (NIP-47 URIs carry ``secret=``)
_QUERY = re.compile(
    r"(?P<head>[?&;](?:secret|password|passwd|pass|token|access_token|api_key|apikey|key)=)"
    r"[^&#\s\"']*", re.IGNORECASE)
#: libpq keyword DSNs: ``host=db password=...`` (quoted or not)
_KEYWORD = re.compile(r"(?P<head>(?<![\w?&;])password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'\"]+)",
                      re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URI password, secret query value and DSN password masked."""
    if "=" not in text and "@" not in text:  # the common case: nothing to look at
        return text
    text = _USERINFO.sub(lambda m: m["head"] + MASK, text)
    text = _QUERY.sub(lambda m: m["head"] + MASK, text)
    return _KEYWORD.sub(lambda m: m["head"] + MASK, text)


#: the whole ``user[:password]@`` of a URI (a token may be the user name: ``https://tok@h``)
_WHOLE_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def hide_userinfo(url: str) -> str:
    """``url`` with its whole userinfo masked, for URLs where even the user name may be a
    credential (git hosts take ``https://<token>@host/...``)."""
    return redact(_WHOLE_USERINFO.sub(lambda m: m[1] + MASK + "@", url))


def redact_values(data: Any) -> Any:
    """A copy of JSON-like ``data`` with :func:`redact` applied to every string in it."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: redact_values(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_values(v) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and in its exception's text before any handler
    formats it (attach it to handlers: filters on a logger miss its children's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            if redact(text) != text:
                # Rich and logging render the exception themselves: replace it by a copy
                # that says the same without the secret (the original stays untouched).
                safe = RuntimeError(f"{type(exc).__name__}: {redact(text)}")
                record.exc_info = (RuntimeError, safe, exc.__traceback__)
                record.exc_text = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (default: root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
