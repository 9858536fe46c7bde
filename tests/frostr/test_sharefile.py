"""Share files: mode 0600, optional password protection, clear errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from oa_node.plugins.frostr import encoding, frost, sharefile
from oa_node.plugins.frostr.sharefile import ShareFileError

FAST_N = 2**10  # scrypt cost for tests only


@pytest.fixture
def pkg() -> tuple[encoding.GroupPackage, list[encoding.SharePackage]]:
    return encoding.from_dealer(frost.dealer_keygen(2, 3))


def test_plain_share_file(tmp_path: Path, pkg) -> None:
    _group, shares = pkg
    path = sharefile.write_share(tmp_path / "s1", shares[0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == shares[0].encode()
    assert sharefile.read_share(path) == shares[0]
    with pytest.raises(ShareFileError, match="already exists"):
        sharefile.write_share(path, shares[0])
    sharefile.write_share(path, shares[1], force=True)
    assert sharefile.read_share(path) == shares[1]


def test_encrypted_share_file(tmp_path: Path, pkg) -> None:
    _group, shares = pkg
    path = sharefile.write_share(tmp_path / "s1", shares[0], "hunter2", scrypt_n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert shares[0].encode() not in text
    doc = json.loads(text)
    assert doc["public_key"] == shares[0].public_key
    assert sharefile.read_share(path, "hunter2") == shares[0]
    with pytest.raises(ShareFileError, match="wrong password"):
        sharefile.read_share(path, "hunter3")
    with pytest.raises(ShareFileError, match="password-protected"):
        sharefile.read_share(path)
    doc["idx"] = 2  # header swapped: the AEAD's associated data no longer matches
    path.write_text(json.dumps(doc))
    with pytest.raises(ShareFileError, match=r"wrong password|modified"):
        sharefile.read_share(path, "hunter2")
    doc["idx"], doc["kdf"]["n"] = 1, 2**30
    path.write_text(json.dumps(doc))
    with pytest.raises(ShareFileError, match="out of range"):
        sharefile.read_share(path, "hunter2")
    with pytest.raises(ShareFileError, match="empty password"):
        sharefile.encrypt_share(shares[0], "")


def test_group_loading(tmp_path: Path, pkg) -> None:
    group, _ = pkg
    gpath = sharefile.write_group(tmp_path / "group", group)
    assert sharefile.load_group(group.encode()).encode() == group.encode()
    assert sharefile.load_group("group", base_dir=tmp_path).encode() == group.encode()
    assert sharefile.load_group(str(gpath)).encode() == group.encode()
    with pytest.raises(ShareFileError, match="not found"):
        sharefile.load_group("missing", base_dir=tmp_path)
    (tmp_path / "junk").write_text("bfgroup1qqqq\n")
    with pytest.raises(ShareFileError, match="group"):
        sharefile.load_group("junk", base_dir=tmp_path)
    (tmp_path / "junk2").write_text("hello")
    (tmp_path / "junk2").chmod(0o600)
    with pytest.raises(ShareFileError):
        sharefile.read_share(tmp_path / "junk2")
