"""ProtocolError formatting and NIP-01 kind classes."""

from __future__ import annotations

import pickle

import pytest

from oa_node import nostr
from oa_node.nostr import kinds
from oa_node.nostr.errors import PREFIXES, ProtocolError, prefixed, split_prefix
from oa_node.nostr.kinds import KindClass, kind_class


def test_protocol_error_format() -> None:
    exc = ProtocolError("blocked", "you are banned")
    assert str(exc) == "blocked: you are banned"
    assert exc.prefix == "blocked" and exc.reason == "you are banned"
    assert isinstance(exc, ValueError)
    default = ProtocolError(reason="bad")
    assert default.prefix == "invalid" and str(default) == "invalid: bad"
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.prefix, copy.reason) == ("blocked", "you are banned")


def test_prefixes_and_helpers() -> None:
    assert PREFIXES == (
        "invalid",
        "blocked",
        "rate-limited",
        "auth-required",
        "restricted",
        "duplicate",
        "error",
        "pow",
        "mute",
    )
    assert prefixed("pow", "difficulty 25>=24") == "pow: difficulty 25>=24"
    for p in PREFIXES:
        assert split_prefix(prefixed(p, "why")) == (p, "why")
    assert split_prefix("duplicate:") == ("duplicate", "")
    assert split_prefix("unsupported: filter contains unknown elements") == (
        "unsupported",
        "filter contains unknown elements",
    )
    assert split_prefix("") == (None, "")
    assert split_prefix("plain message") == (None, "plain message")
    assert split_prefix("see https://x.example") == (None, "see https://x.example")
    assert split_prefix("https://x.example") == (None, "https://x.example")
    assert split_prefix("Two words: no") == (None, "Two words: no")


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (0, KindClass.REPLACEABLE),
        (1, KindClass.REGULAR),
        (2, KindClass.REGULAR),
        (3, KindClass.REPLACEABLE),
        (4, KindClass.REGULAR),
        (44, KindClass.REGULAR),
        (45, KindClass.REGULAR),
        (1000, KindClass.REGULAR),
        (9999, KindClass.REGULAR),
        (10000, KindClass.REPLACEABLE),
        (19999, KindClass.REPLACEABLE),
        (20000, KindClass.EPHEMERAL),
        (29999, KindClass.EPHEMERAL),
        (30000, KindClass.ADDRESSABLE),
        (39999, KindClass.ADDRESSABLE),
        (40000, KindClass.REGULAR),
        (65535, KindClass.REGULAR),
    ],
)
def test_kind_class(kind: int, cls: KindClass) -> None:
    assert kind_class(kind) is cls
    assert kinds.is_replaceable(kind) is (cls is KindClass.REPLACEABLE)
    assert kinds.is_ephemeral(kind) is (cls is KindClass.EPHEMERAL)
    assert kinds.is_addressable(kind) is (cls is KindClass.ADDRESSABLE)
    assert kinds.is_regular(kind) is (cls is KindClass.REGULAR)


def test_named_kinds() -> None:
    assert (kinds.DELETION, kinds.AUTH, kinds.LABEL) == (5, 22242, 1985)
    assert (kinds.JOB_REQUEST, kinds.JOB_RESULT, kinds.JOB_FEEDBACK) == (5050, 6050, 7000)
    assert kinds.job_result_kind(kinds.JOB_REQUEST_SANDBOX_RUN) == kinds.JOB_RESULT_SANDBOX_RUN
    assert kinds.is_job_request(5931) and not kinds.is_job_request(6050)
    assert (kinds.ZAP_REQUEST, kinds.ZAP_RECEIPT, kinds.HANDLER_INFO) == (9734, 9735, 31990)
    assert (kinds.NWC_INFO, kinds.NWC_REQUEST, kinds.NWC_RESPONSE) == (13194, 23194, 23195)
    assert kinds.NWC_NOTIFICATION == 23197
    assert kinds.FROSTR == 20000 and kind_class(kinds.FROSTR) is KindClass.EPHEMERAL
    assert kinds.TRAJECTORY_EVENT == 39231 and kinds.GIT_REPO_ANNOUNCEMENT == 30617


def test_package_reexports() -> None:
    for name in nostr.__all__:
        assert getattr(nostr, name) is not None
