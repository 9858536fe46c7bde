"""The one exception the relay client raises for failures a caller must handle."""

from __future__ import annotations


class ClientError(Exception):
    """A relay could not be used: bad URL, closed client, refused or unanswered request.

    Outcomes a relay *answers* (an ``OK false`` or a ``CLOSED``) are returned as values
    where the API has one (``publish`` -> ``(accepted, message)``), because rejection is a
    normal result on Nostr; this exception is for the cases with no sensible value.
    """
