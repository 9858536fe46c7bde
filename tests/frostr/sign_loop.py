"""Sign events through the share holder a config describes, printing one JSON line per
signature: ``python tests/frostr/sign_loop.py CONFIG START STOP``. The restart tests run it
as the requester they can ``kill -9`` in the middle of a signature."""

from __future__ import annotations

import json
import sys

import anyio

from oa_node.node import build_node
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.frostr import holder_for
from oa_node.plugins.frostr.signer import FrostSigner


async def main(config: str, start: int, stop: int) -> None:
    node = build_node(config, services=False)
    holder = holder_for(node.config, node.plugins)
    signer = FrostSigner(holder)
    async with anyio.create_task_group() as tg:
        await tg.start(holder.run)
        for i in range(start, stop):
            before = dict(holder.stats)
            event = await signer.sign(EventTemplate(kind=1, content=f"restart test {i}"))
            print(json.dumps({"i": i, "event": event.to_dict(),
                              "sent": holder.stats["sent"] - before["sent"],
                              "requests": holder.stats["requests"] - before["requests"]}),
                  flush=True)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
