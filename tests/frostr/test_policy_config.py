"""The signing policy and the ``[frostr]`` config section."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oa_node.config import ConfigError, load
from oa_node.errors import UserError
from oa_node.node import core_sections
from oa_node.nostr.event import serialize_for_id
from oa_node.plugins.frostr import encoding, frost, sharefile
from oa_node.plugins.frostr.config import frostr_section, holder_from_config
from oa_node.plugins.frostr.policy import Policy, RateLimiter, SignRequest, event_from_content

GROUP_PK = "e749cbd7931c316ef243bce8b89b8d217ed9a66c2ea35e9bb82d6d376139ee85"


def serialized(kind: int, pubkey: str = GROUP_PK) -> tuple[bytes, bytes]:
    raw = serialize_for_id(pubkey, 1700000000, kind, [["t", "x"]], "hi")
    return raw, hashlib.sha256(raw).digest()


def test_event_from_content() -> None:
    raw, digest = serialized(1)
    ev = event_from_content(raw.hex(), digest, GROUP_PK)
    assert ev is not None and ev["kind"] == 1 and ev["tags"] == [["t", "x"]]
    assert event_from_content(None, digest, GROUP_PK) is None
    with pytest.raises(ValueError, match="hash"):
        event_from_content(raw.hex(), bytes(32), GROUP_PK)
    other, other_digest = serialized(1, pubkey="ab" * 32)
    with pytest.raises(ValueError, match="another key"):
        event_from_content(other.hex(), other_digest, GROUP_PK)
    for junk in (b"[1,2,3]", b"[" * 20_000):  # the second: RecursionError in json.loads
        with pytest.raises(ValueError, match="not a serialised event"):
            event_from_content(junk.hex(), hashlib.sha256(junk).digest(), GROUP_PK)


def test_policy_kinds_checks_and_rate() -> None:
    raw, digest = serialized(4)
    ev = event_from_content(raw.hex(), digest, GROUP_PK)
    policy = Policy(allowed_kinds=frozenset({1}), rate_per_minute=0)
    assert "kind 4" in (policy.check_sign(SignRequest("p", 2, digest, ev)) or "")
    assert "send the event" in (policy.check_sign(SignRequest("p", 2, digest, None)) or "")
    open_policy = Policy(rate_per_minute=60, burst=2,
                         checks=[lambda r: "no tags" if r.event and not r.event["tags"] else None])
    assert open_policy.check_sign(SignRequest("p", 2, digest, ev)) is None
    assert open_policy.check_sign(SignRequest("p", 2, digest, ev)) is None
    assert "rate-limited" in (open_policy.check_sign(SignRequest("p", 2, digest, ev)) or "")
    assert open_policy.check_sign(SignRequest("q", 3, digest, ev)) is None  # per peer
    bare = dict(ev or {}, tags=[])
    assert "no tags" in (open_policy.check_sign(SignRequest("r", 3, digest, bare)) or "")
    assert Policy(allow_ecdh=False).check_ecdh("p") is not None


def test_rate_limiter_refills() -> None:
    rl = RateLimiter(60, 1)
    assert rl.allow("a", now=0.0)
    assert not rl.allow("a", now=0.5)
    assert rl.allow("a", now=1.6)


def write_config(tmp: Path, body: str) -> Path:
    cfg = tmp / "node.toml"
    cfg.write_text(body)
    return cfg


def test_config_section_and_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    sharefile.write_group(tmp_path / "group.txt", group)
    sharefile.write_share(tmp_path / "share", shares[0], "pw", scrypt_n=2**10)
    sections = [*core_sections(), frostr_section()]
    body = ('[node]\nrelays = ["ws://127.0.0.1:1"]\n[frostr]\nenabled = true\n'
            'group = "group.txt"\nshare_file = "share"\npassword_env = "FROSTR_TEST_PW"\n'
            f'peers = ["{shares[1].public_key}"]\n[frostr.policy]\nallowed_kinds = [1, 7]\n')
    cfg = load(write_config(tmp_path, body), sections)
    with pytest.raises(UserError, match="FROSTR_TEST_PW"):
        holder_from_config(cfg)
    monkeypatch.setenv("FROSTR_TEST_PW", "pw")
    holder = holder_from_config(cfg)
    assert holder.idx == 1 and list(holder.peers) == [shares[1].public_key]
    assert holder.policy.allowed_kinds == frozenset({1, 7})
    monkeypatch.setenv("FROSTR_TEST_PW", "wrong")
    with pytest.raises(UserError, match="wrong password"):
        holder_from_config(cfg)

    with pytest.raises(ConfigError, match=r"frostr\.peers"):
        load(write_config(tmp_path, '[frostr]\npeers = ["nope"]\n'), sections)
    with pytest.raises(ConfigError, match=r"frostr\.policy\.rate_limit"):
        load(write_config(tmp_path, "[frostr.policy]\nrate_limit = -1\n"), sections)
    with pytest.raises(ConfigError, match=r"frostr\.bogus"):
        load(write_config(tmp_path, "[frostr]\nbogus = 1\n"), sections)
    empty = load(write_config(tmp_path, "[frostr]\nenabled = true\n"), sections)
    with pytest.raises(UserError, match=r"frostr\.group"):
        holder_from_config(empty)
