"""The ``[frostr]`` config section and building a share holder from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from oa_node.config import Config, Key, Section, non_negative, positive, relay_url
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.plugins.frostr.encoding import SharePackage
from oa_node.plugins.frostr.holder import FrostHolder
from oa_node.plugins.frostr.noncestore import NonceStoreError, persistent_pools
from oa_node.plugins.frostr.policy import Policy
from oa_node.plugins.frostr.protocol import NoncePools
from oa_node.plugins.frostr.sharefile import load_group, load_share


def _pubkeys(values: list[str]) -> None:
    for v in values:
        normalize_pubkey(v)


def normalize_pubkey(value: str) -> str:
    """x-only hex from hex or ``npub1…``; ValueError otherwise."""
    v = value.strip()
    if v.startswith("npub1"):
        try:
            decoded = nip19.decode(v)
        except ProtocolError:
            raise ValueError("a 64-hex public key or an npub1… string") from None
        return str(decoded.data)
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v
    raise ValueError("a 64-hex public key or an npub1… string")


def frostr_section() -> Section:
    return Section(
        "frostr",
        help="FROSTR threshold identity: this node holds one share of a k-of-n group key.\n"
             "With [node] signer = \"frost\" everything the node publishes is signed by the group.",
        keys=[
            Key("enabled", bool, False, "Run the share holder (answer peers' sign/ECDH requests)."),
            Key("group", str, optional=True,
                help="The group: a bfgroup1… string, or a file holding one."),
            Key("share_file", str, optional=True,
                help="This holder's share file (bfshare1… or encrypted JSON); mode 0600."),
            Key("password_env", str, optional=True,
                help="Name of the environment variable holding the share file's password."),
            Key("relays", list, [], item=str,
                check=lambda v: [relay_url(u) for u in v] and None,
                help="Relays for peer coordination (default: [node] relays)."),
            Key("peers", list, [], item=str, check=_pubkeys,
                help="Share keys (hex or npub) of the peers to work with (default: all members)."),
            Key("request_timeout", float, 10.0, check=positive,
                help="Seconds to wait for one peer's answer."),
            Key("sign_timeout", float, 30.0, check=positive,
                help="Seconds a whole signature (or ECDH) may take, retries included."),
        ],
        sections=[
            Section(
                "policy",
                help="What this holder signs for its peers. A holder signs only Nostr events "
                     "it can check:\nthe request carries the event, the holder recomputes "
                     "its id (the sighash),\nchecks it is by the group key, its kind and "
                     "every plugin check (register_frost_policies).\nbifrost 2.x requesters "
                     "send only the sighash: a default holder refuses to sign for them\n"
                     "(it still answers their pings and, with allow_ecdh, their ECDH). "
                     "Signing for bifrost\nmembers needs allow_bare_hashes = true, and then "
                     "any member can get any 32-byte\nhash signed (rate-limited).",
                keys=[
                    Key("allowed_kinds", list, [], item=int,
                        help="Event kinds this holder signs (empty: any kind of event it is "
                             "shown)."),
                    Key("allow_bare_hashes", bool, False,
                        help="Also sign a bare sighash sent without its event (what bifrost "
                             "peers send). Not with allowed_kinds."),
                    Key("rate_limit", float, 120.0, check=non_negative,
                        help="Partial signatures per minute per peer (0: unlimited)."),
                    Key("burst", int, 30, check=positive, help="Rate-limit burst."),
                    Key("allow_ecdh", bool, True, help="Take part in threshold ECDH (NIP-44)."),
                ],
            ),
        ],
    )


def policy_from(section: dict[str, Any]) -> Policy:
    p = section["policy"]
    kinds = frozenset(p["allowed_kinds"]) if p["allowed_kinds"] else None
    if kinds is not None and p["allow_bare_hashes"]:
        raise UserError("frostr.policy.allow_bare_hashes: cannot be combined with "
                        "allowed_kinds (a bare hash has no kind to check)")
    return Policy(allowed_kinds=kinds, allow_bare_hashes=p["allow_bare_hashes"],
                  rate_per_minute=p["rate_limit"], burst=p["burst"], allow_ecdh=p["allow_ecdh"])


def holder_from_config(config: Config) -> FrostHolder:
    """Build the holder the ``[frostr]`` section describes (errors name the key)."""
    sec = config["frostr"]
    if not sec.get("group"):
        raise UserError(f"{config.path or '<config>'}: frostr.group: missing (a bfgroup1… "
                        "string or a file)")
    if not sec.get("share_file"):
        raise UserError(f"{config.path or '<config>'}: frostr.share_file: missing")
    password = None
    if sec.get("password_env"):
        password = os.environ.get(sec["password_env"])
        if password is None:
            raise UserError(f"frostr.password_env: environment variable "
                            f"{sec['password_env']} is not set")
    group = load_group(sec["group"], config.base_dir)
    share = load_share(str(config.resolve_path(sec["share_file"])), password)
    relays = sec["relays"] or config["node"]["relays"]
    if not relays:
        raise UserError("frostr.relays: no relays (set [frostr] relays or [node] relays)")
    peers = [normalize_pubkey(p) for p in sec["peers"]] or None
    policy = policy_from(sec)
    return FrostHolder(group, share, relays, peers=peers, policy=policy,
                       request_timeout=sec["request_timeout"], sign_timeout=sec["sign_timeout"],
                       open_pools=lambda: _pools(config, share))


def nonce_file(config: Config, share: SharePackage) -> Path:
    """Where a share's nonce pools are kept: the data dir, one file per share."""
    data_dir = config.resolve_path(config["node"]["data_dir"])
    return Path(data_dir) / f"frostr-nonces-{share.idx}-{share.public_key[:16]}.sqlite3"


def _pools(config: Config, share: SharePackage) -> NoncePools:
    """The share's journalled pools. One process per share: a second one (a ``frost``
    command beside the ``oa-node start`` that runs this share) would look to the peers like
    the same member with other pools, and each would lose track of what the other used."""
    path = nonce_file(config, share)
    try:
        return persistent_pools(path, share.secret_bytes, share.public_key)
    except NonceStoreError as exc:
        if "another process" not in str(exc):
            raise
        raise NonceStoreError(
            f"frostr: share {share.idx} is running in another process (oa-node start?): "
            f"{path} is locked. Use the config of a share no node runs, or stop that "
            "node first") from None
