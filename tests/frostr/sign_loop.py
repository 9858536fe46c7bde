"""Sign events through the share holder a config describes, printing one JSON line per
signature: ``python tests/frostr/sign_loop.py CONFIG START STOP``. The restart tests run it
as the requester they can ``kill -9`` in the middle of a signature.

A signature that finds too few signers (a peer restarting, or one that refilled this
holder's nonces in a reply lost when this process was killed) is retried, as the node's own
services do, at most ``RETRIES`` times; ``requests``/``sent`` count the attempt that
succeeded (each attempt is bounded on its own) and ``retries`` the attempts before it."""

from __future__ import annotations

import json
import sys

import anyio

from oa_node.node import build_node
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.frostr import holder_for
from oa_node.plugins.frostr.asking import FrostUnavailable
from oa_node.plugins.frostr.signer import FrostSigner

RETRIES = 3


async def main(config: str, start: int, stop: int) -> None:
    node = build_node(config, services=False)
    holder = holder_for(node.config, node.plugins)
    signer = FrostSigner(holder)
    async with anyio.create_task_group() as tg:
        await tg.start(holder.run)
        for i in range(start, stop):
            for retries in range(RETRIES + 1):
                before = dict(holder.stats)
                try:
                    event = await signer.sign(EventTemplate(kind=1,
                                                            content=f"restart test {i}"))
                    break
                except FrostUnavailable as exc:
                    if retries == RETRIES:
                        raise
                    print(f"signature {i}: retrying: {exc}", file=sys.stderr, flush=True)
            print(json.dumps({"i": i, "event": event.to_dict(), "retries": retries,
                              "sent": holder.stats["sent"] - before["sent"],
                              "requests": holder.stats["requests"] - before["requests"]}),
                  flush=True)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
