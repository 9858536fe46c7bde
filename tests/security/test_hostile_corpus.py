"""A hostile-event corpus against every consumer of a running node (issue 14).

One real ``oa-node start`` runs the relay, the ledger wallet (and the node's wallet over
NWC), zaps, buyer, NIP-SA, FROSTR and a provider with real Docker. An attacker key then
publishes events whose every field is hostile — option-like values (``-x``,
``--upload-pack=...``), ``ext::`` and ``file://`` URLs, credentials in URLs, shell
metacharacters, terminal control and bidi characters, Rich markup, huge values, deeply
nested JSON — of every kind a plugin consumes: job requests (provider), results and
feedback (buyer), mentions, DMs and zap receipts (NIP-SA), FROSTR RPCs, NIP-47 requests
(wallet service), LNURL callbacks (zaps, over HTTP), and NIP-34 repositories, patches, pull
requests and issues read by ``oa-node git``.

What must hold: nothing is executed (a marker file the payloads try to create never
appears), nothing crashes (the node keeps running, its log holds no traceback, every
service still answers a benign request afterwards), the CLI readers exit 0 or 1 with one
line, and nothing is paid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.marketplace import toml_text, wallet_and_frost_sections
from harness.wait import free_port, stop_process, wait_until
from oa_node.client import RelayPool
from oa_node.nostr import kinds, nip47
from oa_node.nostr.event import Event, EventTemplate
from oa_node.signer import LocalSigner, write_key_file

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "oa.sandbox_run.v1"

pytestmark = pytest.mark.docker


def hostile_strings(marker: Path) -> list[str]:
    """Every value an attacker would try, each meant to run ``touch marker`` somewhere."""
    return [
        "-x", "--foo", f"--upload-pack=touch {marker};", f"-c core.sshCommand=touch {marker}",
        f"ext::sh -c touch% {marker}", "fd::0", "file:///etc/passwd", "/etc/passwd",
        "https://user:hunter2@127.0.0.1:1/x.git", "https://ghp_TOKEN@127.0.0.1:1/x.git",
        f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker} #", f"| touch {marker}",
        "\x1b[2J\x1b]0;pwned\x07\x1b[31mred", "\x9b31m c1", "\u202eevil\u2066", "[/]",
        "[bold]x[/bold][link=file:///etc/passwd]y[/link]", "<script>alert(1)</script>",
        "A" * 60_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 3_000 + "1" + "}" * 3_000,
        "9" * 400, "-1", "1e309", "NaN", "", " ", "\x00", "\ud800".encode(
            "utf-8", "surrogatepass").decode("utf-8", "replace"),
    ]


def cli(*args: str, timeout: float = 120, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    env.pop("OA_NODE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=cwd or REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@dataclass
class RunningNode:
    proc: subprocess.Popen[bytes]
    log: Path
    relay: str
    zaps_port: int
    pubkey: str
    wallet_uri: str
    frost_pubkey: str
    config: Path

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the node exited ({self.proc.returncode}):\n"
                                 f"{self.log.read_text()[-6000:]}")

    def wait(self, cond: Any, timeout: float, what: str) -> Any:
        def check() -> Any:
            self.alive()
            return cond()

        try:
            return wait_until(check, timeout, what, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()[-6000:]}") from None


@pytest.fixture
def node(tmp_path: Path, sandbox_image: str) -> Iterator[RunningNode]:
    folder = tmp_path / "conf"
    folder.mkdir()
    data = folder / "data"
    signer = LocalSigner.generate()
    write_key_file(folder / "node.key", signer.secret_key)
    port, zaps_port = free_port(), free_port()
    relay = f"ws://127.0.0.1:{port}"
    sections: dict[str, dict[str, Any]] = {
        "node": {"data_dir": "data", "key_file": str(folder / "node.key"), "relays": [relay],
                 "name": "victim", "log_level": "debug"},
        "relay": {"enabled": True, "port": port, "rate_limits": {
            "ip_events_per_second": 0, "pubkey_events_per_second": 0,
            "ip_reqs_per_second": 0}},
        "ledger_wallet": {"enabled": True},
    }
    cfg = folder / "node.toml"
    cfg.write_text(toml_text(sections))
    out = cli("wallet", "create", "node", "--json", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    uri = json.loads(out.stdout)["uri"]
    wallet_and_frost, frost_key = wallet_and_frost_sections(data, uri)
    sections |= {
        **wallet_and_frost,
        "zaps": {"enabled": True, "port": zaps_port},
        "buyer": {"enabled": True},
        "nipsa": {"enabled": True, "heartbeat": 0, "triggers": ["mention", "dm", "zap"]},
        "sandbox": {"image": sandbox_image},
        "provider": {"enabled": True, "lookback_secs": 0},
    }
    cfg.write_text(toml_text(sections))
    log = tmp_path / "node.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
    running = RunningNode(proc, log, relay, zaps_port, signer.public_key, uri,
                          frost_key, cfg)
    try:
        running.wait(lambda: all(f"starting service {s}" in log.read_text() for s in (
            "relay", "ledger_wallet", "zaps", "buyer", "nipsa", "frostr", "provider")),
            60, "every service to start")
        running.wait(lambda: anyio.run(_announced, relay, signer.public_key), 60,
                     "the provider's announcement")
        yield running
    finally:
        stop_process(proc, 30)


async def _announced(relay: str, pubkey: str) -> bool:
    async with RelayPool([relay]) as pool:
        return bool(await pool.query([{"kinds": [kinds.HANDLER_INFO], "authors": [pubkey]}], 5))


async def _publish_all(relay: str, attacker: LocalSigner,
                       templates: list[EventTemplate]) -> list[Event]:
    """Sign and publish each; the relay may refuse some (that is fine), none may be lost
    silently by the client."""
    events = [attacker.sign_now(t) for t in templates]
    async with RelayPool([relay], signer=attacker) as pool:
        for e in events:
            await pool.publish(e, 10)
    return events


def _job_templates(h: str, victim: str) -> list[EventTemplate]:
    doc = {"sandbox": {"provider": "docker", "image_digest": h, "network_policy": h,
                       "resources": {"memory_mb": h, "cpus": h, "timeout_secs": h}},
           "repo": {"source": h, "git_ref": h}, "commands": [{"cmd": h}], "env": {h: h},
           "verification": {"mode": h, "redundancy": 1, "adjudication": h}}
    url_doc = {"sandbox": {"provider": "docker", "image_digest": "sha256:" + "0" * 64,
                           "network_policy": "none",
                           "resources": {"memory_mb": 256, "cpus": 1.0, "timeout_secs": 60}},
               "repo": {"source": h, "git_ref": "main"}, "commands": [{"cmd": "true"}],
               "env": {}, "verification": {"mode": "objective", "redundancy": 1,
                                           "adjudication": "none"}}
    base = [["param", "schema", SCHEMA], ["t", SCHEMA], ["p", victim]]
    hostile_tags = [["bid", h], ["relays", h, h], ["expiration", h], ["encrypted", h],
                    ["param", h, h], ["i", h, h, h], ["p", h]]
    return [
        EventTemplate(kinds.JOB_REQUEST, json.dumps(doc), base + hostile_tags),
        EventTemplate(kinds.JOB_REQUEST, json.dumps(url_doc), base),
        EventTemplate(kinds.JOB_REQUEST, h, [*base, ["encrypted"]]),
        EventTemplate(kinds.JOB_REQUEST, h, [["t", SCHEMA], ["param", "schema", h]]),
    ]


def _consumer_templates(h: str, node: RunningNode, svc: str) -> list[EventTemplate]:
    victim = node.pubkey
    rid = "f" * 64
    return [
        # the buyer: results and feedback addressed to it
        EventTemplate(6050, h, [["e", rid], ["p", victim], ["request", h], ["amount", h, h],
                                ["status", h], ["encrypted"]]),
        EventTemplate(6050, h, [["e", h], ["p", victim], ["amount", "10", h]]),
        EventTemplate(kinds.JOB_FEEDBACK, h, [["e", rid], ["p", victim], ["status", h, h],
                                              ["amount", h, h]]),
        # NIP-SA triggers: a mention, a DM, a zap receipt
        EventTemplate(1, h, [["p", victim], ["e", h], [h, h]]),
        EventTemplate(4, h, [["p", victim]]),
        EventTemplate(kinds.ZAP_RECEIPT, h, [["p", victim], ["bolt11", h], ["description", h],
                                             ["P", h], ["preimage", h]]),
        # FROSTR: an RPC to the share holder
        EventTemplate(20000, h, [["p", node.frost_pubkey]]),
        # NIP-47: a request to the wallet service
        EventTemplate(kinds.NWC_REQUEST, h, [["p", svc], ["encryption", h],
                                             ["expiration", h]]),
        # NIP-34: what `oa-node git` reads
        EventTemplate(30617, h, [["d", "evil"], ["name", h], ["description", h],
                                 ["clone", h], ["web", h], ["relays", h],
                                 ["maintainers", h], ["r", h, "euc"]]),
        EventTemplate(1617, h, [["a", "30617:{ATTACKER}:evil"], ["subject", h],
                                ["commit", h], ["parent-commit", h], ["t", "root"]]),
        EventTemplate(1618, h, [["a", "30617:{ATTACKER}:evil"], ["subject", h],
                                ["c", "a" * 40], ["clone", h], ["branch-name", h]]),
        EventTemplate(1621, h, [["a", "30617:{ATTACKER}:evil"], ["subject", h],
                                ["t", h]]),
        # what `oa-node providers` and `agent trajectory` read
        EventTemplate(kinds.HANDLER_INFO, h, [["d", h[:100] or "x"], ["k", "5050"], ["t", h],
                                              ["price", h, h]]),
        EventTemplate(39230, h, [["d", h[:100] or "x"], ["repo", h], ["p", h]]),
        EventTemplate(39231, h, [["a", f"39230:{{ATTACKER}}:{h[:100] or 'x'}"], ["seq", h],
                                 ["e", h]]),
    ]


def _http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _lnurl_attacks(node: RunningNode, attacker: LocalSigner, h: str) -> None:
    zap_request = attacker.sign_now(EventTemplate(9734, h, [
        ["p", node.pubkey], ["amount", h], ["relays", h, node.relay], ["lnurl", h],
        ["e", h], ["a", h], ["P", h]]))
    queries = [
        {"amount": h}, {"amount": "1000", "nostr": h},
        {"amount": "21000", "nostr": json.dumps(zap_request.to_dict())},
        {"amount": "1000", "comment": h},
    ]
    for q in queries:
        status, body = _http(node.zaps_port, "/lnurlp/victim/callback?"
                             + urllib.parse.urlencode(q))
        assert status in (200, 400, 404, 413, 414, 429, 503), (status, body[:200])
        json.loads(body)  # a JSON answer, never a server error page
    status, _ = _http(node.zaps_port, "/.well-known/lnurlp/"
                      + urllib.parse.quote(h[:200], safe=""))
    assert status in (200, 400, 404, 414, 429), status


def test_hostile_corpus_runs_nothing_crashes_nothing_pays_nothing(
        node: RunningNode, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    corpus = hostile_strings(marker)
    attacker = LocalSigner.generate()
    svc = nip47.parse_uri(node.wallet_uri).wallet_pubkey
    templates: list[EventTemplate] = []
    for h in corpus:
        templates += _job_templates(h, node.pubkey)
        for t in _consumer_templates(h, node, svc):
            tags = [[v.replace("{ATTACKER}", attacker.public_key) for v in tag]
                    for tag in t.tags]
            templates.append(EventTemplate(t.kind, t.content, tags))
    anyio.run(_publish_all, node.relay, attacker, templates)
    for h in corpus:
        _lnurl_attacks(node, attacker, h)

    # Canaries, published after the corpus: each consumer handles its events in order, so
    # its answer to a canary means it got through everything before it.
    canary_job = anyio.run(_publish_all, node.relay, attacker, [EventTemplate(
        kinds.JOB_REQUEST, json.dumps({"not": "a request"}),
        [["param", "schema", SCHEMA], ["t", SCHEMA], ["p", node.pubkey]])])[0]
    canary_mention = anyio.run(_publish_all, node.relay, attacker, [EventTemplate(
        1, "hello agent", [["p", node.pubkey]])])[0]

    async def provider_answered() -> bool:
        async with RelayPool([node.relay]) as pool:
            got = await pool.query([{"kinds": [kinds.JOB_FEEDBACK], "authors": [node.pubkey],
                                     "#e": [canary_job.id]}], 5)
        return any(e.first_tag_value("status") == "error" for e in got)

    async def agent_ticked() -> bool:
        async with RelayPool([node.relay]) as pool:
            got = await pool.query([{"kinds": [39210], "authors": [node.pubkey]}], 5)
        return any(canary_mention.id in json.dumps(e.tags) for e in got)

    node.wait(lambda: anyio.run(provider_answered), 120,
              "the provider's refusal of the canary request")
    node.wait(lambda: anyio.run(agent_ticked), 120, "the agent's tick for the canary mention")

    # The wallet service still answers a real NWC client, and nothing was paid.
    async def balance() -> int:
        from oa_node.plugins.nwc.client import NWCWallet

        async with NWCWallet(node.wallet_uri, timeout=20) as wallet:
            return await wallet.get_balance()

    assert anyio.run(balance) == 0
    status, body = _http(node.zaps_port, "/.well-known/lnurlp/victim")
    assert status == 200 and json.loads(body)["tag"] == "payRequest"

    # The CLI readers: exit 0 or a one-line refusal, nothing run.
    work = tmp_path / "clone"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    repo = f"30617:{attacker.public_key}:evil"
    common = ["-C", str(work), "--relay", node.relay, "--repo", repo]
    readers = [
        ["git", "list", *common], ["git", "issue", "list", *common],
        ["relay", "query", "--relay", node.relay, "-k", "1617", "-k", "1621", "--limit", "500"],
        ["providers", "-c", str(node.config), "--timeout", "5", "--all"],
        ["agent", "trajectory", "list", "--author", attacker.public_key, "-c",
         str(node.config)],
    ]
    proposals = anyio.run(_ids, node.relay, attacker.public_key, [1617, 1618, 1621])
    for pid in proposals:
        readers.append(["git", "show", pid, *common])
        readers.append(["git", "checkout", pid, *common, "--allow-scheme", "file",
                        "--allow-scheme", "https"])
    for args in readers:
        out = cli(*args, cwd=work)
        assert out.returncode in (0, 1), (args, out.returncode, out.stderr[-3000:])
        assert "Traceback" not in out.stderr, (args, out.stderr[-3000:])
        if out.returncode == 1:
            assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr[-3000:])
        assert "\x1b" not in out.stdout and "\u202e" not in out.stdout, args

    node.alive()
    text = node.log.read_text()
    assert "Traceback" not in text, text[text.index("Traceback") - 2000:][:6000]
    assert not marker.exists(), "a hostile value ran a command"


async def _ids(relay: str, author: str, kinds_: list[int]) -> list[str]:
    async with RelayPool([relay]) as pool:
        events = await pool.query([{"kinds": kinds_, "authors": [author], "limit": 500}], 10)
    return [e.id for e in events][:40]
