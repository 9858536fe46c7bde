"""The PostgreSQL store's SQL: schema, the server-side write function, advisory-lock keys.

Kept apart from :mod:`postgres` (the store's connections, batching and live sharing) so
each stays readable; the store creates the schema and the function at open.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TYPE_CHECKING

from oa_node.nostr.kinds import DELETION
from oa_node.plugins.relay.storage.common import Indexed, deletion_targets

if TYPE_CHECKING:
    from oa_node.nostr import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    pubkey TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    d_tag TEXT,
    expiration BIGINT,
    raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_pubkey_time ON events(pubkey, created_at);
CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, created_at);
CREATE INDEX IF NOT EXISTS events_time ON events(created_at);
CREATE INDEX IF NOT EXISTS events_replaceable ON events(pubkey, kind, d_tag)
    WHERE d_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_expiration ON events(expiration)
    WHERE expiration IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_lookup ON tags(name, value, created_at);
CREATE INDEX IF NOT EXISTS tags_seq ON tags(seq);
CREATE TABLE IF NOT EXISTS deleted_ids (
    id TEXT PRIMARY KEY,
    pubkey TEXT NOT NULL
);
CREATE UNLOGGED TABLE IF NOT EXISTS relay_bus (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    raw TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deleted_addresses (
    pubkey TEXT NOT NULL,
    kind INTEGER NOT NULL,
    d_tag TEXT NOT NULL,
    until BIGINT NOT NULL,
    PRIMARY KEY (pubkey, kind, d_tag)
);
"""

NOTIFY_LIMIT = 7900  # bytes; PostgreSQL refuses payloads of 8000 or more
#: takes the batch's advisory locks in the order given (unnest yields array order)
LOCK_SQL = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k"
#: A run of plain events in one call: the batch's advisory locks (in the order given), event
#: rows and tag rows. Returns only the events not stored, with whether a deletion record
#: refused them. Called alone it is the whole write of an all-plain batch in one round
#: trip, its implicit transaction committed before the answer; inside a transaction (mixed
#: batches) it is one step. Each statement of a plpgsql function takes a fresh snapshot, so
#: the insert sees what committed while the locks were awaited (a racing deletion on
#: another instance). No NOTIFY here: see ANNOUNCE_SQL.
PLAIN_FN = "oa_relay_save_plain_v2"
PLAIN_FN_SQL = f"""
DROP FUNCTION IF EXISTS oa_relay_save_plain_v1(bigint[], text[], text[], bigint[], int[],
    bigint[], text[], text[], text[], text[], text, text);
CREATE OR REPLACE FUNCTION {PLAIN_FN}(
    keys bigint[], ids text[], pubkeys text[], created bigint[], kinds int[], exps bigint[],
    raws text[], tag_ids text[], tag_names text[], tag_values text[]
) RETURNS TABLE (not_stored text, deleted boolean) LANGUAGE plpgsql AS $fn$
DECLARE
    stored text[];
BEGIN
    PERFORM count(pg_advisory_xact_lock(k)) FROM unnest(keys) AS k;
    WITH u AS (
        SELECT * FROM unnest(ids, pubkeys, created, kinds, exps, raws)
            AS u(id, pubkey, created_at, kind, expiration, raw)
    ), ins AS (
        INSERT INTO events (id, pubkey, created_at, kind, expiration, raw)
        SELECT u.id, u.pubkey, u.created_at, u.kind, u.expiration, u.raw FROM u
        WHERE NOT EXISTS (SELECT 1 FROM deleted_ids d
                          WHERE d.id = u.id AND d.pubkey = u.pubkey)
        ON CONFLICT (id) DO NOTHING
        RETURNING events.id, events.seq, events.created_at
    ), tg AS (
        INSERT INTO tags (seq, name, value, created_at)
        SELECT ins.seq, t.name, t.value, ins.created_at
        FROM unnest(tag_ids, tag_names, tag_values) AS t(id, name, value)
        JOIN ins ON ins.id = t.id
    )
    SELECT array_agg(ins.id) INTO stored FROM ins;
    IF coalesce(cardinality(stored), 0) < cardinality(ids) THEN
        RETURN QUERY SELECT u.id, EXISTS (SELECT 1 FROM deleted_ids d
                                          WHERE d.id = u.id AND d.pubkey = u.pubkey)
            FROM unnest(ids, pubkeys) AS u(id, pubkey)
            WHERE u.id <> ALL (coalesce(stored, '{{}}'));
    END IF;
END
$fn$
"""
PLAIN_SQL = (
    f"SELECT not_stored, deleted FROM {PLAIN_FN}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
#: Announces committed events to the other instances, in a transaction of its own on a
#: connection with synchronous_commit off. A transaction that NOTIFYs holds a cluster-wide
#: lock from its commit until the commit's WAL flush is done (PostgreSQL serialises the
#: notification queue in commit order: PreCommit_Notify in src/backend/commands/async.c),
#: so NOTIFY inside the write transactions serialised every instance's commits and their
#: flushes (measured: 2 and 4 concurrent writers gained 1.2x and 1.4x commits/s with it,
#: 2x and 4.9x without). This transaction writes nothing, so not waiting for its flush
#: risks only the announcement, which a crash loses anyway.
ANNOUNCE_SQL = "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p"
#: seconds a large ephemeral event stays in relay_bus for the other instances to read
BUS_TTL = 60
BUS_SQL = (
    "WITH r AS (INSERT INTO relay_bus (at, raw) VALUES ($3, $4) RETURNING id)"
    " SELECT pg_notify($1, $2 || r.id) FROM r"
)
SCHEMA_LOCK = 0x6F61_6E6F_6465  # advisory lock id guarding concurrent schema creation


def _key(text: str) -> int:
    """A signed 64-bit advisory-lock key for ``text``."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def id_key(event_id: str) -> int:
    return _key("e:" + event_id)


def address_key(kind: int, pubkey: str, d_tag: str) -> int:
    return _key(f"a:{kind}:{pubkey}:{d_tag}")


def lock_keys(ev: Event, ix: Indexed) -> list[int]:
    """The advisory locks writing ``ev`` takes: its id, its address (replaceable and
    addressable kinds), and for a deletion the ids and addresses it targets. Writers of an
    event and of its deletion thus contend for one lock whichever instance they run on."""
    keys = [id_key(ev.id)]
    if ix.d_tag is not None:
        keys.append(address_key(ev.kind, ev.pubkey, ix.d_tag))
    if ev.kind == DELETION:
        ids, addresses = deletion_targets(ev)
        keys.extend(id_key(t) for t in ids)
        keys.extend(address_key(k, p, d) for k, p, d in addresses)
    return keys
