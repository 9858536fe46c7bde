"""``oa-node relay sync`` between two real relay processes on 127.0.0.1 (NIP-77)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.relay import RelayProcess
from harness.sync_seed import ids_in, seed_pair

REPO = Path(__file__).resolve().parents[2]


def _sync(local: str, remote: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "oa_node.cli", "relay", "sync", remote, "--local", local, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_two_relays_differing_by_1pct_converge_and_bytes_follow_the_difference(
    tmp_path: Path,
) -> None:
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    total = 10_000
    only_a, only_b = seed_pair(a_db, b_db, total, 0.01)
    assert only_a == only_b == 50
    a = RelayProcess(a_db, extra=["--no-rate-limits"])
    b = RelayProcess(b_db, extra=["--no-rate-limits"])
    a.start()
    b.start()
    try:
        proc = _sync(a.url, b.url, "--direction", "both", "--json")
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["local_count"] == total - only_b
        assert (out["have"], out["need"]) == (only_a, only_b)
        assert (out["stored_locally"], out["published"]) == (only_b, only_a)
        # A second sync finds nothing left to do.
        again = json.loads(_sync(a.url, b.url, "--json").stdout)
        assert (again["have"], again["need"]) == (0, 0)
    finally:
        a.stop()
        b.stop()
    assert ids_in(a_db) == ids_in(b_db)
    assert len(ids_in(a_db)) == total
    # The reconciliation costs far less than the ids alone (64 hex chars each).
    ids_bytes = total * 64
    print(f"\n{total} events, 1% differ: negentropy {out['neg_bytes']} B "
          f"({out['neg_bytes'] / ids_bytes:.1%} of the hex ids), {out['rounds']} rounds, "
          f"copying {out['transfer_bytes']} B")
    assert out["neg_bytes"] < ids_bytes / 4


def test_bad_filter_and_unreachable_remote_are_one_line(tmp_path: Path) -> None:
    proc = _sync("ws://127.0.0.1:9", "ws://127.0.0.1:9", "--filter", "[1]")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "JSON object" in proc.stderr
    proc = _sync("ws://127.0.0.1:9", "ws://127.0.0.1:9")
    assert proc.returncode == 1 and "cannot connect" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _sync("ws://127.0.0.1:9", "ws://127.0.0.1:9", "--direction", "sideways")
    assert proc.returncode == 2


@pytest.mark.parametrize("direction", ["down", "up"])
def test_one_direction_only(tmp_path: Path, direction: str) -> None:
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    only_a, only_b = seed_pair(a_db, b_db, 400, 0.1, seed=3)
    a = RelayProcess(a_db, extra=["--no-rate-limits"])
    b = RelayProcess(b_db, extra=["--no-rate-limits"])
    a.start()
    b.start()
    try:
        proc = _sync(a.url, b.url, "--direction", direction, "--filter", '{"kinds":[1]}')
        assert proc.returncode == 0, proc.stderr
        assert "remote lacks" in proc.stdout
    finally:
        a.stop()
        b.stop()
    ids_a, ids_b = ids_in(a_db), ids_in(b_db)
    if direction == "down":
        assert ids_b <= ids_a and len(ids_a - ids_b) == only_a
    else:
        assert ids_a <= ids_b and len(ids_b - ids_a) == only_b


def test_default_local_is_the_nodes_own_relay(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text("[relay]\nhost = \"0.0.0.0\"\nport = 9\n")
    cmd = [sys.executable, "-m", "oa_node.cli", "relay", "sync", "ws://127.0.0.1:8", "-c", str(cfg)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "cannot connect to ws://127.0.0.1:9" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (["NEG-MSG", "oa-sync", "zz"], "bad negentropy message"),
        (["NEG-MSG", "oa-sync", "6100000205" + "aa" * 32], "bad negentropy message"),
        (["NEG-ERR", "oa-sync", "blocked: too many records"], "refused the sync: blocked"),
        (["CLOSED", "x", "no"], "does it support NIP-77?"),
        (["NOTICE", "unknown message type 'NEG-OPEN'"], "does it support NIP-77?"),
    ],
)
def test_hostile_or_unaware_remote_is_one_clear_error(
    tmp_path: Path, answer: list, expected: str
) -> None:
    """A remote that answers NEG-OPEN with garbage, a refusal or nothing: one error line."""
    from websockets.asyncio.server import serve

    from oa_node.client.errors import ClientError
    from oa_node.client.negsync import sync

    async def remote(ws) -> None:  # type: ignore[no-untyped-def]
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == "NEG-OPEN":  # answers for this session name it ("oa-sync" here)
                await ws.send(json.dumps([msg[1] if x == "oa-sync" else x for x in answer]))

    async def local(ws) -> None:  # type: ignore[no-untyped-def]
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == "REQ":
                await ws.send(json.dumps(["EOSE", msg[1]]))

    async def go() -> str:
        async with serve(remote, "127.0.0.1", 0) as r, serve(local, "127.0.0.1", 0) as lo:
            rport = next(iter(r.sockets)).getsockname()[1]
            lport = next(iter(lo.sockets)).getsockname()[1]
            with pytest.raises(ClientError) as err:
                await sync(f"ws://127.0.0.1:{lport}", f"ws://127.0.0.1:{rport}", {}, "both",
                           timeout=1.0)
            return str(err.value)

    assert expected in asyncio.run(go())


@pytest.mark.parametrize("refusal", ["CLOSED", "NEG-ERR"])
def test_auth_required_neg_open_is_retried_after_auth(refusal: str) -> None:
    """A remote that refuses NEG-OPEN with CLOSED or NEG-ERR ``auth-required:`` gets the
    signer's AUTH (checked against its challenge) and the same NEG-OPEN again."""
    from websockets.asyncio.server import serve

    from oa_node.client.errors import ClientError
    from oa_node.client.negsync import sync
    from oa_node.nostr import nip42
    from oa_node.nostr.event import Event
    from oa_node.nostr.negentropy import Negentropy, Storage
    from oa_node.signer import LocalSigner

    theirs = Storage([(1_700_000_000 + i, bytes([i]) * 32) for i in range(1, 40)])
    signer = LocalSigner.generate()
    authed: list[str] = []

    async def remote(ws) -> None:  # type: ignore[no-untyped-def]
        url = f"ws://{ws.request.headers['Host']}"
        neg = Negentropy(theirs, 60000)
        await ws.send(json.dumps(["AUTH", "chal-1"]))
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == "AUTH":
                ev = Event.from_dict(msg[1])
                nip42.verify_auth_event(ev, "chal-1", url)
                authed.append(ev.pubkey)
                await ws.send(json.dumps(["OK", ev.id, True, ""]))
            elif msg[0] == "NEG-OPEN" and not authed:
                await ws.send(json.dumps([refusal, msg[1], "auth-required: members only"]))
            elif msg[0] in ("NEG-OPEN", "NEG-MSG"):
                out = neg.reconcile(bytes.fromhex(msg[-1]))[0]
                await ws.send(json.dumps(["NEG-MSG", msg[1], out.hex() if out else "61"]))

    async def local(ws) -> None:  # type: ignore[no-untyped-def]
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == "REQ":
                await ws.send(json.dumps(["EOSE", msg[1]]))

    async def go() -> tuple[int, str]:
        async with serve(remote, "127.0.0.1", 0) as r, serve(local, "127.0.0.1", 0) as lo:
            rurl = f"ws://127.0.0.1:{next(iter(r.sockets)).getsockname()[1]}"
            lurl = f"ws://127.0.0.1:{next(iter(lo.sockets)).getsockname()[1]}"
            with pytest.raises(ClientError) as err:
                await sync(lurl, rurl, {}, "up", timeout=5.0)
            res = await sync(lurl, rurl, {}, "up", timeout=5.0, signer=signer)
            return res.need, str(err.value)

    need, without_key = asyncio.run(go())
    assert need == len(theirs) and authed == [signer.public_key]
    assert "auth-required: members only (no key to authenticate with)" in without_key


def test_a_second_with_more_events_than_a_page_is_an_error_not_a_silent_gap(
    tmp_path: Path,
) -> None:
    """REQs page by ``until`` only: past the relay's page size within one second they
    cannot read the rest. The REQ path says so (COUNT tells); the store path has no page."""
    from harness.sync_seed import _fill
    from oa_node.nostr.event import EventTemplate, sign_event
    from oa_node.nostr.keys import generate_secret_key

    secret = generate_secret_key()
    crowd = [sign_event(EventTemplate(kind=1, content=str(i), tags=[], created_at=1_700_000_000
                                      + (0 if i < 120 else -i)), secret) for i in range(130)]
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    asyncio.run(_fill(a_db, crowd))
    asyncio.run(_fill(b_db, crowd[:5]))
    cfg = tmp_path / "relay.toml"
    cfg.write_text("[relay.limits]\nmax_limit = 50\n")
    a = RelayProcess(a_db, extra=["--no-rate-limits", "--config", str(cfg)])
    b = RelayProcess(b_db, extra=["--no-rate-limits"])
    a.start()
    b.start()
    try:
        proc = _sync(a.url, b.url, "--direction", "up")
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "120 events at created_at 1700000000" in proc.stderr
        node = tmp_path / "node.toml"
        node.write_text(f'[relay]\nhost = "127.0.0.1"\nport = {a.port}\n'
                        f'sqlite_path = "{a_db}"\n')
        cmd = [sys.executable, "-m", "oa_node.cli", "relay", "sync", b.url, "-c", str(node),
               "--direction", "up", "--json"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["published"] == 125
    finally:
        a.stop()
        b.stop()
    assert ids_in(b_db) == {e.id for e in crowd}
