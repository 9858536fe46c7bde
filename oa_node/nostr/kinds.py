"""Event kinds: NIP-01 storage classes and the kind numbers oa-node speaks
(docs/ARCHITECTURE.md, "Protocol surface")."""

from __future__ import annotations

import enum


class KindClass(enum.Enum):
    """How a relay stores an event of a kind (NIP-01)."""

    REGULAR = "regular"
    REPLACEABLE = "replaceable"
    EPHEMERAL = "ephemeral"
    ADDRESSABLE = "addressable"


def kind_class(kind: int) -> KindClass:
    """NIP-01 class; kinds NIP-01 leaves undefined (40000+) are treated as regular (stored)."""
    if kind == 0 or kind == 3 or 10000 <= kind < 20000:
        return KindClass.REPLACEABLE
    if 20000 <= kind < 30000:
        return KindClass.EPHEMERAL
    if 30000 <= kind < 40000:
        return KindClass.ADDRESSABLE
    return KindClass.REGULAR


def is_replaceable(kind: int) -> bool:
    return kind == 0 or kind == 3 or 10000 <= kind < 20000


def is_ephemeral(kind: int) -> bool:
    return 20000 <= kind < 30000


def is_addressable(kind: int) -> bool:
    return 30000 <= kind < 40000


def is_regular(kind: int) -> bool:
    return kind_class(kind) is KindClass.REGULAR


# --- NIP-01 / core ----------------------------------------------------------------------
METADATA = 0
TEXT_NOTE = 1
RECOMMEND_RELAY = 2
CONTACTS = 3
ENCRYPTED_DM = 4  # NIP-04, deprecated
DELETION = 5  # NIP-09
REPOST = 6
REACTION = 7
SEAL = 13  # NIP-59
GENERIC_REPOST = 16
COMMENT = 1111  # NIP-22 (used by NIP-34 replies)
GIFT_WRAP = 1059  # NIP-59
RELAY_LIST = 10002  # NIP-65
AUTH = 22242  # NIP-42
HTTP_AUTH = 27235  # NIP-98

# --- NIP-32 labels ----------------------------------------------------------------------
LABEL = 1985

# --- NIP-57 zaps ------------------------------------------------------------------------
ZAP_REQUEST = 9734
ZAP_RECEIPT = 9735

# --- NIP-47 Nostr Wallet Connect --------------------------------------------------------
NWC_INFO = 13194
NWC_REQUEST = 23194
NWC_RESPONSE = 23195
NWC_NOTIFICATION_NIP04 = 23196  # legacy NIP-04 notifications
NWC_NOTIFICATION = 23197

# --- NIP-89 / NIP-90 jobs ---------------------------------------------------------------
HANDLER_RECOMMENDATION = 31989
HANDLER_INFO = 31990
JOB_REQUEST = 5050  # generic text/JSON job, schema in ["param","schema",<id>]
JOB_RESULT = 6050
JOB_FEEDBACK = 7000
#: oa-node escrow: a buyer's release of a hold invoice's preimage to the provider (content
#: NIP-44 encrypted to it; ``e`` = the request, ``p`` = the provider)
ESCROW_RELEASE = 7931
JOB_REQUEST_SANDBOX_RUN = 5930  # OpenAgents dedicated kind for oa.sandbox_run.v1
JOB_RESULT_SANDBOX_RUN = 6930
JOB_REQUEST_REPO_INDEX = 5931  # OpenAgents dedicated kind for oa.repo_index.v1
JOB_RESULT_REPO_INDEX = 6931
JOB_REQUEST_MIN = 5000
JOB_REQUEST_MAX = 5999
JOB_RESULT_OFFSET = 1000


def is_job_request(kind: int) -> bool:
    return JOB_REQUEST_MIN <= kind <= JOB_REQUEST_MAX


def job_result_kind(request_kind: int) -> int:
    """NIP-90: a result is published at request kind + 1000."""
    return request_kind + JOB_RESULT_OFFSET


# --- NIP-34 git -------------------------------------------------------------------------
GIT_REPO_ANNOUNCEMENT = 30617
GIT_REPO_STATE = 30618
GIT_PATCH = 1617
GIT_PULL_REQUEST = 1618
GIT_PULL_REQUEST_UPDATE = 1619
GIT_ISSUE = 1621
GIT_STATUS_OPEN = 1630
GIT_STATUS_APPLIED = 1631  # merged / resolved
GIT_STATUS_CLOSED = 1632
GIT_STATUS_DRAFT = 1633
GIT_REPLY = COMMENT

# --- NIP-SA (sovereign agents) ----------------------------------------------------------
AGENT_PROFILE = 39200
AGENT_STATE = 39201
AGENT_SCHEDULE = 39202
AGENT_GOALS = 39203
TICK_REQUEST = 39210
TICK_RESULT = 39211
TRAJECTORY_SESSION = 39230
TRAJECTORY_EVENT = 39231

# --- FROSTR -----------------------------------------------------------------------------
FROSTR = 20000  # ephemeral RPC between share holders (bifrost)
