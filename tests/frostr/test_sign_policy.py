"""What a share holder signs for its peers (#14 item 8): real holders over a real relay.

By default a holder signs only events it is shown and can check (their id recomputed, by the
group key, kind and plugin checks); a bare sighash, what bifrost requesters send, only when
``allow_bare_hashes`` is set; checks registered through the ``register_frost_policies`` hook
run before every partial signature."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.config import Config, load
from oa_node.errors import UserError
from oa_node.hookspecs import hookimpl
from oa_node.node import core_sections
from oa_node.nostr.event import EventTemplate, serialize_for_id
from oa_node.plugin_manager import PluginHost
from oa_node.plugins.frostr import encoding, frost, holder_for, sharefile
from oa_node.plugins.frostr.config import frostr_section
from oa_node.plugins.frostr.holder import FrostHolder, FrostUnavailable
from oa_node.plugins.frostr.policy import Policy, SignRequest
from oa_node.plugins.frostr.signer import FrostSigner

from .conftest import running

pytestmark = pytest.mark.anyio



def group_of(k: int, n: int, secret: int) -> tuple[encoding.GroupPackage, list[Any]]:
    return encoding.from_dealer(frost.dealer_keygen(k, n, secret=secret))


async def test_default_holders_refuse_bare_hashes_and_sign_events(relay_url: str) -> None:
    group, shares = group_of(2, 3, secret=0xB0B)
    hs = [FrostHolder(group, s, [relay_url], request_timeout=3.0, sign_timeout=6.0)
          for s in shares]
    async with running(*hs):
        # any member asking for an arbitrary hash (a Bitcoin sighash, say) gets nothing
        with anyio.fail_after(30):
            with pytest.raises(FrostUnavailable, match="signs only events it can check") as ei:
                await hs[0].sign(hashlib.sha256(b"spend the coins").digest())
        assert "member 2" in str(ei.value) and "member 3" in str(ei.value)
        assert hs[1].stats["rejected"] + hs[2].stats["rejected"] == 2
        # an event it is shown is signed
        event = await FrostSigner(hs[0]).sign(EventTemplate(kind=1, content="shown"))
        assert event.verify() and event.pubkey == group.public_key
        # a requester lying about the event: content by another key hashing to the sighash
        raw = serialize_for_id("ab" * 32, 1700000000, 1, [], "not ours")
        with pytest.raises(FrostUnavailable, match="another key"):
            await hs[0].sign(hashlib.sha256(raw).digest(), content=raw, timeout=4)


async def test_bare_hashes_only_when_configured(relay_url: str) -> None:
    group, shares = group_of(2, 2, secret=0xCAFE)
    a = FrostHolder(group, shares[0], [relay_url], request_timeout=3.0, sign_timeout=6.0)
    b = FrostHolder(group, shares[1], [relay_url], request_timeout=3.0,
                    policy=Policy(allow_bare_hashes=True))
    async with running(a, b):
        msg = hashlib.sha256(b"bare, allowed").digest()
        result = await a.sign(msg)
        assert frost.verify_signature(a.suite, group.group_pk, msg, result.signature)
    with pytest.raises(ValueError, match="allowed_kinds"):
        Policy(allow_bare_hashes=True, allowed_kinds=frozenset({1}))


class ForbidWord:
    """A plugin with a signing check: no event whose content says "forbidden"."""

    def __init__(self) -> None:
        self.seen: list[SignRequest] = []

    @hookimpl
    def register_frost_policies(self, register: Any) -> None:
        def check(req: SignRequest) -> str | None:
            self.seen.append(req)
            if req.event is not None and "forbidden" in req.event["content"]:
                return "the word is forbidden here"
            return None

        def broken(req: SignRequest) -> str | None:
            if req.event is not None and req.event["kind"] == 7:
                raise RuntimeError("a bug in a plugin")
            return None

        register(check)
        register(broken)


def holder_config(tmp: Path, group: encoding.GroupPackage, share: Any, url: str) -> Config:
    sharefile.write_group(tmp / "group.txt", group, force=True)
    sharefile.write_share(tmp / f"share-{share.idx}", share, None, force=True)
    cfg = tmp / f"node-{share.idx}.toml"
    cfg.write_text(f'[node]\nrelays = ["{url}"]\n[frostr]\nenabled = true\n'
                   f'group = "group.txt"\nshare_file = "share-{share.idx}"\n'
                   "request_timeout = 3.0\nsign_timeout = 5.0\n")
    return load(cfg, [*core_sections(), frostr_section()])


async def test_plugin_policy_hook_is_wired(relay_url: str, tmp_path: Path) -> None:
    group, shares = group_of(2, 2, secret=0xD00D)
    host = PluginHost()
    plugin = ForbidWord()
    host.register(plugin, "forbid-word")
    b = holder_for(holder_config(tmp_path, group, shares[1], relay_url), host)
    assert len(b.policy.checks) == 2
    a = FrostHolder(group, shares[0], [relay_url], request_timeout=3.0, sign_timeout=5.0)
    signer = FrostSigner(a)
    async with running(a, b):
        assert (await signer.sign(EventTemplate(kind=1, content="fine"))).verify()
        with pytest.raises(FrostUnavailable, match="the word is forbidden here"):
            await signer.sign(EventTemplate(kind=1, content="this is forbidden"))
        with pytest.raises(FrostUnavailable, match="a check failed"):  # fails closed
            await signer.sign(EventTemplate(kind=7, content="+"))
    assert [r.event["content"] for r in plugin.seen if r.event] == [
        "fine", "this is forbidden", "+"]
    assert all(r.requester == a.pubkey and r.requester_idx == 1 for r in plugin.seen)


def test_config_allow_bare_hashes(tmp_path: Path) -> None:
    group, shares = group_of(2, 3, secret=0xE)
    cfg = holder_config(tmp_path, group, shares[0], "ws://127.0.0.1:1")
    holder = holder_for(cfg)
    assert holder.policy.allow_bare_hashes is False and holder.policy.allowed_kinds is None
    # building takes no lock (any command reads the config); running does
    holder_for(load(tmp_path / "node-1.toml", [*core_sections(), frostr_section()]))
    path = tmp_path / "node-1.toml"
    path.write_text(path.read_text() + "[frostr.policy]\nallow_bare_hashes = true\n")
    holder = holder_for(load(path, [*core_sections(), frostr_section()]))
    assert holder.policy.allow_bare_hashes is True
    path.write_text(path.read_text() + "allowed_kinds = [1]\n")
    with pytest.raises(UserError, match="allow_bare_hashes: cannot be combined"):
        holder_for(load(path, [*core_sections(), frostr_section()]))
