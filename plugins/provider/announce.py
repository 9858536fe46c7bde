"""The provider's NIP-89 announcement: published at start, renewed, and retried sooner
when no relay took it."""

from __future__ import annotations

import logging
import time

import anyio

from oa_node.nostr import nip90
from oa_node.nostr.event import EventTemplate

log = logging.getLogger("oa_node.provider")



class Announcer:
    """Mixin of :class:`~oa_node.plugins.provider.service.Provider`: its handler event."""

    def announcement_template(self) -> EventTemplate:
        s = self.settings
        limits = self.exec_settings.max_limits
        return nip90.handler_template(
            s.identifier,
            {schema: s.price(schema) for schema in self.served},
            name=self.node.config["node"]["name"],
            about=s.about,
            limits={"max_memory_mb": limits.memory_mb, "max_cpus": limits.cpus,
                    "max_timeout_secs": limits.timeout_secs, "concurrency": s.concurrency,
                    "queue_bound": s.queue_bound,
                    "network_policies": list(self.exec_settings.allowed_network_policies)},
            relays=self.node.config["node"]["relays"],
            expiration=int(time.time()) + s.announce_ttl_secs,
            dedicated_kinds=s.dedicated_kinds,
        )

    async def _announce(self) -> bool:
        """Publish a fresh announcement; ``True`` when a relay accepted it."""
        self._announcement, accepted = await self._try_publish(self.announcement_template())
        return accepted

    async def _announce_loop(self, accepted: bool) -> None:
        """Re-announce every ``announce_interval_secs``; an announcement no relay took (the
        node's own relay still starting, a relay down) is retried sooner, backing off."""
        retry = 1.0
        while True:
            if accepted:
                retry = 1.0
                await anyio.sleep(self.settings.announce_interval_secs)
            else:
                await anyio.sleep(min(retry, self.settings.announce_interval_secs))
                retry = min(retry * 2, 60.0)
            try:
                accepted = await self._announce()
            except Exception:
                log.exception("announcement failed")
                accepted = False
