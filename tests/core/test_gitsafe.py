"""The one rule for git URLs that strangers wrote (oa_node.gitsafe)."""

from __future__ import annotations

import pytest

from oa_node.gitsafe import UnsafeURL, check_url, protocol_config, protocol_env, shown

ALL = ("https", "http", "git", "ssh", "file")


@pytest.mark.parametrize("url", [
    "", "-", "--upload-pack=touch x;", "-uhttps://x", "ext::sh -c id", "fd::3",
    "https://h/\nx", "https://h/\x1b[31mx", "https://h/\u202ex", "https://h/ x",
    "https://user:pw@h/x", "https://TOKEN@h/x", "http://u@h/x", "git://u:p@h/x",
    "ssh://u:p@h/x", "ssh://-oProxyCommand=x@h/x", "https://" + "a" * 3000,
    "foo::bar", "gopher://h/x",
])
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, ALL)


@pytest.mark.parametrize(("url", "scheme"), [
    ("https://github.com/a/b.git", "https"), ("git@github.com:a/b.git", "ssh"),
    ("ssh://git@h/x", "ssh"), ("git://h/x", "git"), ("/srv/x", "file"),
    ("file:///srv/x", "file"), ("https://h:8443/x", "https"),
])
def test_accepted(url: str, scheme: str) -> None:
    assert check_url(url, ALL) == scheme


def test_scheme_must_be_allowed() -> None:
    with pytest.raises(UnsafeURL, match="not allowed"):
        check_url("/srv/x", ("https",))
    with pytest.raises(UnsafeURL, match="not allowed"):
        check_url("ext::sh", ("https", "ext"))


def test_credentials_never_in_the_message() -> None:
    with pytest.raises(UnsafeURL) as err:
        check_url("https://ghp_secret@h/x", ALL)
    assert "ghp_secret" not in str(err.value)
    assert "\x1b" not in shown("a\x1bb")


def test_git_is_told_the_same_allow_list() -> None:
    cfg = protocol_config(("https",))
    assert "protocol.allow=never" in cfg and "protocol.https.allow=always" in cfg
    assert "protocol.ext.allow=never" in cfg and "protocol.file.allow=never" in cfg
    assert protocol_env(("https", "ext"))["GIT_ALLOW_PROTOCOL"] == "https"
