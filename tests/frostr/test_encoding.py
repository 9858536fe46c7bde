"""bfgroup/bfshare strings against the bifrost vectors, and the checks a decoder adds."""

from __future__ import annotations

import pytest

from oa_node.nostr import bech32
from oa_node.plugins.frostr import encoding, frost
from oa_node.plugins.frostr.encoding import EncodingError

from .conftest import load_vector

FILES = ["group-2of3.json", "group-3of5.json", "group-2of3-odd-y.json"]


@pytest.mark.parametrize("name", FILES)
def test_bifrost_strings_round_trip(name: str) -> None:
    v = load_vector(f"frostr-bifrost/{name}")
    group = encoding.decode_group(v["bfgroup"])
    assert group.to_bytes().hex() == v["bfgroup_data_hex"]
    assert group.encode() == v["bfgroup"]
    assert frost.ser(group.group_pk).hex() == v["group"]["group_pk"]
    assert group.threshold == v["threshold"]
    assert group.gid.hex() == v["group"]["gid"]
    assert group.public_key == v["nostr_pubkey"]
    for s in v["shares"]:
        share = encoding.decode_share(s["bfshare"])
        assert share.to_bytes().hex() == s["bfshare_data_hex"]
        assert share.encode() == s["bfshare"]
        assert share.idx == s["idx"] and frost.scalar_bytes(share.seckey).hex() == s["seckey"]
        encoding.check_share(group, share)
        assert s["seckey"] not in repr(share)
    # the dealer reproduces the same strings from the same coefficients
    pkg = frost.dealer_keygen(v["threshold"], v["share_count"],
                              coefficients=[int(c, 16) for c in v["coefficients"]])
    g2, shares = encoding.from_dealer(pkg)
    assert g2.encode() == v["bfgroup"]
    assert [s.encode() for s in shares] == [s["bfshare"] for s in v["shares"]]


def test_long_group_string_has_no_90_char_limit() -> None:
    v = load_vector("frostr-bifrost/group-2of3.json")
    assert len(v["bfgroup"]) > 90
    encoding.decode_group(v["bfgroup"])


def test_legacy_layouts_decode() -> None:
    v = load_vector("frostr-bifrost/group-2of3.json")
    group = encoding.decode_group(v["bfgroup"])
    legacy = bytearray(group.to_bytes()[:37])
    for i in sorted(group.members):
        p = frost.ser(group.members[i])
        legacy += i.to_bytes(4, "big") + p + p + p  # binder/hidden points are ignored
    text = bech32.encode("bfgroup", bytes(legacy), bech32.Encoding.BECH32M, 10_000)
    assert encoding.decode_group(text).encode() == v["bfgroup"]
    share = encoding.decode_share(v["shares"][0]["bfshare"])
    legacy_share = share.to_bytes() + b"\x11" * 64
    text = bech32.encode("bfshare", legacy_share, bech32.Encoding.BECH32M, 10_000)
    assert encoding.decode_share(text) == share


def test_decoder_rejects_bad_input() -> None:
    v = load_vector("frostr-bifrost/group-2of3.json")
    data = bytes.fromhex(v["bfgroup_data_hex"])

    def enc(payload: bytes, hrp: str = "bfgroup",
            spec: bech32.Encoding = bech32.Encoding.BECH32M) -> str:
        return bech32.encode(hrp, payload, spec, 10_000)

    cases = {
        "bech32 checksum": enc(data, spec=bech32.Encoding.BECH32),
        "wrong hrp": enc(data, hrp="bfshare"),
        "duplicate idx": enc(data[:37 + 37] + data[37:37 + 37]),
        "zero idx": enc(data[:37] + b"\x00\x00\x00\x00" + data[41:]),
        "bad threshold": enc(data[:33] + (9).to_bytes(4, "big") + data[37:]),
        "off-curve member": enc(data[:41] + b"\x02" + b"\xff" * 32 + data[74:]),
        "truncated": enc(data[:-1]),
        "member swapped": enc(data[:37] + data[37:41] + data[78:111] + data[74:78] + data[41:74]
                              + data[111:]),
    }
    for label, text in cases.items():
        with pytest.raises(EncodingError):
            encoding.decode_group(text)
        assert label
    with pytest.raises(EncodingError):
        encoding.decode_group(v["bfgroup"][:-1] + ("q" if v["bfgroup"][-1] != "q" else "p"))
    with pytest.raises(EncodingError):
        encoding.decode_share(v["bfgroup"])
    with pytest.raises(EncodingError):
        encoding.decode_share(bech32.encode("bfshare", b"\x00\x00\x00\x01" + b"\x00" * 32,
                                            bech32.Encoding.BECH32M))
    other = load_vector("frostr-bifrost/group-3of5.json")
    group = encoding.decode_group(v["bfgroup"])
    wrong = encoding.decode_share(other["shares"][0]["bfshare"])
    with pytest.raises(EncodingError):
        encoding.check_share(group, wrong)


@pytest.mark.parametrize(("k", "n", "claimed"), [(2, 3, 3), (2, 4, 3), (2, 5, 4), (3, 5, 4)])
def test_threshold_above_the_polynomial_is_refused(k: int, n: int, claimed: int) -> None:
    """A group claiming more signers than its shares need (#17): a k-of-n key written as
    claimed-of-n would be called claimed-of-n, and k holders could sign behind the others."""
    group, _shares = encoding.from_dealer(frost.dealer_keygen(k, n))
    lying = encoding.GroupPackage(group.group_pk, claimed, group.members)
    text = lying.encode()
    with pytest.raises(EncodingError, match=f"threshold {claimed} is more than the shares "
                                            f"need: {claimed - 1} of them"):
        encoding.decode_group(text)
    assert encoding.decode_group(group.encode()).threshold == k  # the honest one passes
