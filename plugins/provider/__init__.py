"""The compute provider ("Pylon"): takes NIP-90 jobs from the node's relays, runs them in the
sandbox, and answers with a result carrying an invoice that the buyer pays after verifying.

Hooks: ``[provider]`` config and, when ``enabled``, the ``provider`` service. Job types come
from the registry; the sandbox and its policy from the sandbox plugin's
``node.capability(Execution)``; the wallet and the trajectory recorder are optional
capabilities (``node.capability(Wallet)``, or ``node.capability(Wallet, name)`` with
``wallet_account``, and ``node.capability(Trajectories)``).

Encrypted requests are never recorded as trajectories (public events that would name the
buyer, the repository and the request), and feedback on them carries only fixed words in
clear, details NIP-44 encrypted to the buyer: see :mod:`.service`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.provider.settings import provider_section

    register(provider_section())


@hookimpl(trylast=True)  # after the wallet plugins provided their capabilities
def register_services(node: Node, register: Callable[..., None]) -> None:
    from oa_node.plugins.provider.settings import ProviderSettings

    settings = ProviderSettings.from_section(node.config.get("provider") or {})
    if not settings.enabled:
        return
    settings.wallet(node)  # a missing wallet account stops the start with one line

    async def provider_service(node: Node) -> None:
        from oa_node.plugins.provider.service import Provider

        await Provider(node, settings).run()

    register("provider", provider_service)
