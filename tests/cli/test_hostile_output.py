"""Hostile text from relays, files and users through every command that prints it (#14.2).

Each command runs in-process against a real relay on 127.0.0.1; hypothesis feeds strings
full of Rich markup (``[/]``, ``[bold]``, ``[link=...]``), ANSI/C0/C1 sequences, bidi
overrides, zero-width characters and 1 MB lines. Every command must exit 0, show the
text literally (control characters as visible escapes) and print no raw ESC, C1 or bidi
character. ``--json`` output stays exact.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from oa_node import cli_kit
from oa_node.cli import make_app
from oa_node.cli_kit import UNSAFE_RANGES, clean
from oa_node.plugins.gitafter import nip34
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from oa_node.signer import LocalSigner
from tests.gitafter.conftest import GIT_ENV, ThreadRelay, commit_file, new_repo, publish_raw

UNSAFE = {c for lo, hi in UNSAFE_RANGES for c in range(lo, hi + 1)}
BIG = "<1 MB line>"  # an example that stands for a 1 MB line (hypothesis prints it)


def big(text: str) -> str:
    return "[/]\x1b[2J" + "x" * 1_000_000 if text == BIG else text

MARKUP = ["[/]", "[bold]", "[/bold]", "[link=https://evil.example]", "[red]", "[cover]",
          "[buyer]", "\\", "[", "]", ":smile:", "[@click=quit]", "[#ff0000 on blue]"]
CONTROLS = ["\x1b[2J", "\x1b[31m", "\x1b]8;;https://evil\x07", "\x1b]0;title\x07", "\x9b",
            "\x85", "\x07", "\x08", "\r", "\x00", "\x7f", "\u202e", "\u202d", "\u2066",
            "\u2069", "\u200b", "\u200f", "\ufeff", "\u2028", "\t", "\n"]
hostile = st.lists(st.one_of(st.sampled_from(MARKUP + CONTROLS),
                             st.text(st.characters(exclude_categories=("Cs",)), max_size=12)),
                   min_size=1, max_size=12).map("".join)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


class BigRelay(ThreadRelay):
    """The gitafter test relay, accepting 1 MB contents."""

    def start(self) -> str:
        self.thread.start()
        s = RelaySettings(host="127.0.0.1", port=0, purge_interval=0.5)
        s.rate_limits = RateLimits.off()
        s.limits.max_message_length = 8 * 1024 * 1024
        s.limits.max_content_length = 4 * 1024 * 1024
        self.server = RelayServer(SQLiteStore(self.db), None, s)
        self.port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(20)
        return self.url


@dataclass
class World:
    relay: BigRelay
    root: Path
    repo_dir: Path
    key_file: Path
    signer: LocalSigner
    repo: nip34.RepoRef
    runner: CliRunner
    app: Any

    def run(self, *args: str) -> Any:
        return self.runner.invoke(self.app, list(args), catch_exceptions=True)

    def ok(self, *args: str) -> str:
        res = self.run(*args)
        assert res.exit_code == 0, (args[:3], res.exit_code, res.output[-2000:], res.exception)
        if "--json" not in args:  # JSON is exact, not sanitised
            check_safe(res.stdout)
        check_safe(res.stderr)
        return res.stdout

    def git(self, *args: str) -> str:
        return self.ok("git", *args, "-C", str(self.repo_dir))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("OA_NODE_CONFIG", raising=False)
        mp.setenv("HOME", str(root / "home"))
        for k, v in GIT_ENV.items():
            mp.setenv(k, v)
        # A wide console: wrapping would split the text this test looks for.
        mp.setattr(cli_kit.console, "width", 10_000_000)
        mp.setattr(cli_kit.err_console, "width", 10_000_000)
        relay = BigRelay(root / "relay.db")
        relay.start()
        try:
            repo_dir = root / "repo"
            new_repo(repo_dir, "maintainer")
            commit_file(repo_dir, "README.md", "hello\n", "initial commit")
            signer = LocalSigner.generate()
            key_file = root / "m.key"
            from oa_node.signer import write_key_file

            write_key_file(key_file, signer.secret_key)
            w = World(relay, root, repo_dir, key_file, signer,
                      nip34.RepoRef("demo", signer.public_key, relays=(relay.url,)),
                      CliRunner(), make_app())
            w.git("init", "-d", "demo", "--key-file", str(key_file), "--relay", relay.url)
            yield w
        finally:
            relay.stop()


def check_safe(output: str) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in output if ord(c) in UNSAFE and c != "\n"})
    assert not bad, f"raw control/format characters in the output: {bad}"


def squash(text: str) -> str:
    return "".join(text.split())


def visible(value: str, output: str, *, one_line: bool = True, limit: int | None = 200) -> None:
    """``value`` shows literally in ``output`` (white space aside: Rich expands tabs)."""
    want = squash(clean(value, one_line=one_line, limit=limit if one_line else None))
    assert want in squash(output), (want[:300], output[:3000])


def patch_text(subject: str, body: str) -> str:
    return (f"From {'0' * 40} Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: [PATCH] {subject}\n\n{body}\n"
            "---\n README.md | 1 +\n\ndiff --git a/README.md b/README.md\n")


# --- gitafter ---------------------------------------------------------------------------------


@SETTINGS
@example(text="[/]")
@example(text="[cover] \x1b[2J\u202eevil")
@example(text=BIG)
@given(text=hostile)
def test_git_proposals_and_issues_show_hostile_text(world: World, text: str) -> None:
    text = big(text)
    subject = "S" + text.replace("\n", " ")[:100_000]
    issue_id = publish_raw(world.relay.url, world.signer, nip34.ISSUE, "body " + text,
                           nip34.issue_template(world.repo, subject=subject, content="x",
                                                labels=[text[:50] or "l"]).tags)
    patch_id = publish_raw(world.relay.url, world.signer, nip34.PATCH,
                           patch_text(subject, text),
                           nip34.patch_template(world.repo, "x", commit=None).tags)
    # What the relay and parser made of it, exactly (--json is not sanitised).
    proposals = json.loads(world.git("list", "--json"))["proposals"]
    shown_subject = next(p["subject"] for p in proposals if p["id"] == patch_id)

    out = world.git("list", "--status", "all")
    visible(shown_subject, out)
    out = world.git("show", patch_id, "--patches")
    visible(shown_subject, out)
    visible(patch_text(subject, text), out, one_line=False)
    assert " [1] " in out or " [cover] " in out

    issues = json.loads(world.git("issue", "list", "--json"))["issues"]
    got = next(i for i in issues if i["id"] == issue_id)
    assert got["subject"] == subject.strip() and got["content"] == "body " + text
    out = world.git("issue", "list")
    visible(got["subject"], out)
    out = world.git("issue", "show", issue_id)
    visible(got["subject"], out)
    visible("body " + text, out, one_line=False)
    visible(", ".join(got["labels"]), out)


@SETTINGS
@example(text="[/]")
@example(text="x\ud800y")
@given(text=st.one_of(hostile, st.text(st.characters(), min_size=1, max_size=20)))
def test_git_issue_create_shows_the_subject_or_refuses_it(world: World, text: str) -> None:
    subject = "S" + text
    res = world.run("git", "issue", "create", "-s", subject, "-m", text, "-C",
                    str(world.repo_dir), "--key-file", str(world.key_file))
    if any(0xD800 <= ord(c) <= 0xDFFF for c in subject):
        # Not text (e.g. invalid UTF-8 in argv): refused before publishing, as one line.
        from oa_node.errors import UserError

        assert res.exit_code == 1 and isinstance(res.exception, UserError), res.exception
        assert "\n" not in str(res.exception)
        return
    assert res.exit_code == 0, (res.output, res.exception)
    check_safe(res.stdout)
    visible(subject.strip(), res.stdout)


# --- relay query -------------------------------------------------------------------------------


@SETTINGS
@example(text="[/] \x1b[31m\u202e")
@example(text=BIG)
@given(text=hostile)
def test_relay_query_shows_hostile_content(world: World, text: str) -> None:
    from oa_node.nostr.event import EventTemplate

    text = big(text)
    ev = world.signer.sign_now(EventTemplate(kind=1, content=text, tags=[["t", text[:100]]]))
    path = world.root / "ev.json"
    path.write_text(ev.to_json(), encoding="utf-8")
    world.ok("relay", "publish", str(path), "-r", world.relay.url)
    out = world.ok("relay", "query", "-r", world.relay.url, "--id", ev.id)
    visible(text, out, limit=80)
    raw = world.ok("relay", "query", "-r", world.relay.url, "--id", ev.id, "--json")
    assert json.loads(raw)["content"] == text  # exact, not sanitised


def test_json_output_is_exact(world: World) -> None:
    text = "[/] \x1b[31m \u202e \x9b"
    issue_id = publish_raw(world.relay.url, world.signer, nip34.ISSUE, text,
                           nip34.issue_template(world.repo, subject="S" + text,
                                                content="x").tags)
    got = json.loads(world.git("issue", "show", issue_id, "--json"))
    assert got["subject"] == "S" + text and got["content"] == text
    assert os.environ.get("OA_NODE_CONFIG") is None


# --- a node config for the buyer and NIP-SA commands ----------------------------------------------


@pytest.fixture(scope="module")
def node_cfg(world: World) -> Path:
    from oa_node.signer import write_key_file

    data = world.root / "node"
    data.mkdir()
    write_key_file(data / "node.key", LocalSigner.generate().secret_key)
    cfg = data / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{data}"\nrelays = ["{world.relay.url}"]\n',
                   encoding="utf-8")
    return cfg


_seq = iter(range(1_000_000))


@SETTINGS
@example(text="[/] [bold]\x1b[31m\u202e")
@given(text=hostile)
def test_providers_show_hostile_announcements(world: World, node_cfg: Path, text: str) -> None:
    from oa_node.nostr import nip90

    signer = LocalSigner.generate()  # a fresh provider each time: its ad is the newest
    schema = "oa." + text[:60]
    tpl = nip90.handler_template(f"h{next(_seq)}", {schema: 7}, name="N" + text)
    publish_raw(world.relay.url, signer, tpl.kind, tpl.content, tpl.tags)
    ads = json.loads(world.ok("providers", "-c", str(node_cfg), "--json"))
    ad = next(a for a in ads if a["pubkey"] == signer.public_key)
    out = world.ok("providers", "-c", str(node_cfg))
    visible(ad["name"], out)
    visible(", ".join(f"{s} {ad['pricing_msat'].get(s, '?')}" for s in ad["schemas"]), out)


@SETTINGS
@example(text="[/] (oa-node start with [buyer] enabled) \x1b[2J\u202e")
@given(text=hostile)
def test_job_status_and_list_show_hostile_ledger_text(world: World, node_cfg: Path,
                                                      text: str) -> None:
    from oa_node.plugins.buyer.ledger import open_buyer_ledger

    job_id = f"{next(_seq):064x}"
    rid = "ab" * 32
    provider = LocalSigner.generate().public_key
    ledger = open_buyer_ledger(node_cfg.parent)
    try:
        ledger.create(job_id, {
            "schema": "oa." + text, "redundancy": 1, "max_price_msat": 5, "encrypted": False,
            "last_feedback": {"status": "processing", "info": text},
            "results": {rid: {"check": {"provider": provider, "ok": False,
                                        "problems": [text], "status": text}}},
            "refusals": {rid: "R" + text}})
    finally:
        ledger.close()
    out = world.ok("job", "status", job_id, "-c", str(node_cfg))
    visible(text, out)  # the feedback info and the problem
    visible("R" + text, out)
    visible("oa." + text, out)
    out = world.ok("job", "list", "-c", str(node_cfg))
    visible("oa." + text, out)


@SETTINGS
@example(text="[/]\x1b]8;;https://evil\x07[link=x]\u202e")
@example(text=BIG)
@given(text=hostile)
def test_agent_trajectory_show_and_list_show_hostile_text(world: World, node_cfg: Path,
                                                          text: str) -> None:
    from oa_node.nostr.nipsa import TrajectorySession, trajectory_event_template

    text = big(text)
    agent = LocalSigner.generate()
    session = ("s" + "".join(c for c in text[:40] if not c.isspace() and c != ":")
               + str(next(_seq)))
    s_tpl = TrajectorySession(session, 1_700_000_000, repo="R" + text[:300_000],
                              sha=text[:64] or "x").to_template()
    s_ev = agent.sign_now(s_tpl)
    publish_raw(world.relay.url, agent, s_tpl.kind, s_tpl.content, s_tpl.tags,
                created_at=s_ev.created_at)
    step = trajectory_event_template(pubkey=agent.public_key, session_id=session, root=s_ev.id,
                                     seq=0, previous=None, type="user",
                                     payload={"text": text})
    publish_raw(world.relay.url, agent, step.kind, step.content, step.tags)
    common = ["-c", str(node_cfg), "--author", agent.public_key]
    report = json.loads(world.ok("agent", "trajectory", "show", session, *common, "--json"))
    assert report["session_id"] == session and report["ok"], report["problems"]
    out = world.ok("agent", "trajectory", "show", session, *common)
    visible(session, out)
    visible("R" + text[:300_000], out)
    step_json = json.dumps({"text": text}, ensure_ascii=False, sort_keys=True)
    visible(step_json, out, limit=100)
    out = world.ok("agent", "trajectory", "list", *common)
    visible(session, out)
    visible("R" + text[:300_000], out)
