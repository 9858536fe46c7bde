"""``oa-node web`` in a real browser (Debian chromium through Selenium) over a real node.

Without Docker: the token is made 0600, only 127.0.0.1 listens, a wrong token is refused
and the right one logs in (cookie, not the token, from then on), the answers carry a strict
CSP, nothing but the login takes a POST, a foreign Host is refused. With Docker: one
``oa-node start`` runs relay, ledger wallet, provider, buyer and the dashboard; a real job
whose command and output carry hostile strings runs, and every page shows it literally
without running anything.
"""

from __future__ import annotations

import http.client
import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.wait import port_open, wait_until
from tests.marketplace.conftest import REPO_ROOT, free_port
from tests.marketplace.world import PASSING, both_roles_config, make_repo, write_config

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>']
LOGIN_LINE = re.compile(r"log in: (http://127\.0\.0\.1:(\d+)/login#token=([\w-]+))")


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"oa-node {' '.join(args)} -> {out.returncode}\n{out.stderr}"
    return out


def launch(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "oa_node.cli", *args], cwd=REPO_ROOT,
                                stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)
    return proc.returncode


def login_url(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> tuple[str, int,
                                                                                       str]:
    def found() -> Any:
        if proc.poll() is not None:
            raise AssertionError(f"node exited: {log.read_text()}")
        return LOGIN_LINE.search(log.read_text())

    m = wait_until(found, timeout, "the dashboard's login URL")
    return m.group(1), int(m.group(2)), m.group(3)


def request(port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}",
                                                   **(headers or {})})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def raw(port: int, data: bytes) -> bytes:
    """What the dashboard answers to ``data`` sent as is."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the listening TCP sockets on ``port`` (IPv4 and IPv6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                out.add(addr)
    return out


def no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError(f"a dialog opened: {text!r}")


def log_in(driver: Any, url: str) -> None:
    driver.get(url)
    wait_until(lambda: driver.current_url.rstrip("/").endswith(str(url.split("/")[2])), 30,
               "the login to land on the node page")
    assert "token=" not in driver.current_url


def test_token_login_and_localhost_only(tmp_path: Path, browser: Any,
                                        screenshots: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "n", {
        "node": {"data_dir": ".", "relays": [f"ws://127.0.0.1:{free_port()}"],
                 "name": "<b>bold</b>"},
        "web": {"port": port},
    })
    log = tmp_path / "web.log"
    proc = launch(["web", "-c", str(cfg)], log)
    try:
        url, bound, token = login_url(proc, log)
        assert bound == port
        token_file = tmp_path / "n" / "web.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token_file.read_text().strip() == token
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only

        # raw HTTP: no page without the cookie, strict headers, read-only, Host checked
        resp = request(port, "GET", "/")
        assert resp.status == 303 and resp.headers["Location"] == "/login"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert request(port, "GET", "/", headers={"Host": "evil.example:80"}).status == 421
        assert request(port, "GET", f"/?token={token}").status == 303  # no token in URLs
        assert request(port, "POST", "/jobs", body="").status == 405
        wrong = request(port, "POST", "/login", body="token=nope",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert wrong.status == 401 and "Set-Cookie" not in wrong.headers
        big = request(port, "POST", "/login", body="token=" + "x" * 10_000,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert big.status == 413
        assert raw(port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert raw(port, b"GET / HTTP/1.1\r\nX: " + b"y" * 40_000 + b"\r\n\r\n"
                   ).startswith(b"HTTP/1.1 431 ")

        # the browser: a wrong token stays on the login page, the right one gets in
        browser.get(f"http://127.0.0.1:{port}/login#token=wrong-token-0123456789")
        wait_until(lambda: "Wrong token" in browser.page_source, 30, "the refusal")
        assert browser.get_cookies() == []
        browser.save_screenshot(str(screenshots / "login-refused.png"))
        browser.get(url)
        wait_until(lambda: browser.find_elements("css selector", "h1")
                   and browser.find_element("css selector", "h1").text == "Node", 30,
                   "the node page after login")
        assert "token" not in browser.current_url
        (cookie,) = browser.get_cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert token not in cookie["value"]
        # the node's name is remote-ish text too: shown literally
        assert browser.find_element("css selector", "header .name").text == "<b>bold</b>"
        assert browser.find_elements("css selector", "header b") == []
        body = browser.find_element("tag name", "body").text
        assert "down" in body  # the configured relay is not running
        no_alert(browser)
        browser.save_screenshot(str(screenshots / "node-empty.png"))
    finally:
        assert stop(proc) == 0, log.read_text()


PRICE = 3_000
DEPOSIT = 100_000
NAME = "dash<script>alert(3)</script>"  # the provider's name in its announcement


@pytest.mark.docker
def test_every_page_shows_a_real_job_and_runs_no_hostile_text(
        tmp_path: Path, sandbox_image: str, browser: Any, screenshots: Path) -> None:
    relay_port, web_port = free_port(), free_port()
    relay = f"ws://127.0.0.1:{relay_port}"
    folder = tmp_path / "node"
    cfg = both_roles_config(folder, relay_port, sandbox_image, cli, name=NAME, price=PRICE,
                            deposit=DEPOSIT, buyer={"audit_rate": 0.0, "escrow": "on"},
                            extra={"web": {"enabled": True, "port": web_port}})
    repo = make_repo(tmp_path / "repo", PASSING)
    log = tmp_path / "node.log"
    node = launch(["start", "-c", str(cfg)], log)
    try:
        url, _, _ = login_url(node, log)
        wait_until(lambda: port_open(relay_port), 30, "the relay")
        (ad,) = wait_until(lambda: json.loads(cli(
            "providers", "--json", "--timeout", "3", "-c", str(cfg)).stdout), 60,
            "the node's own provider announcement", interval=0.5)
        cmd = "echo " + " ".join(f"'{h}'" for h in HOSTILE)
        out = cli("job", "submit", "sandbox_run", "--repo", repo, "--ref", "main",
                  "--cmd", cmd, "--provider", ad["npub"], "--wait", "--wait-timeout", "150",
                  "-c", str(cfg), timeout=200)
        assert "paid" in out.stdout, out.stdout
        (job,) = json.loads(cli("job", "list", "--json", "-c", str(cfg)).stdout)
        job_id = job["id"]

        timings: dict[str, float] = {}

        def visit(path: str, name: str, expect: str) -> str:
            t0 = time.perf_counter()
            browser.get(f"http://127.0.0.1:{web_port}{path}")
            wait_until(lambda: expect in browser.find_element("tag name", "body").text, 30,
                       f"{expect!r} on {path}")
            timings[name] = time.perf_counter() - t0
            no_alert(browser)
            browser.save_screenshot(str(screenshots / f"{name}.png"))
            text: str = browser.find_element("tag name", "body").text
            return text

        log_in(browser, url)
        node_text = visit("/", "node", "Identity")
        assert "relay" in log.read_text() and relay in node_text and "up" in node_text
        assert "provider" in node_text and "buyer" in node_text and "web" in node_text
        svg = browser.find_elements("css selector", "svg.plot rect")
        assert len(svg) > 5, "the latency plot has bars"
        # the embedded relay's counters follow the relay live (server-sent events), no reload
        live = browser.find_element("css selector", '[data-live="events_ingested"]')
        stored = int(browser.find_element("css selector", '[data-live="events_stored"]').text)
        before = int(live.text)
        assert before > 0 and stored > 0
        cli("relay", "publish", "-r", relay, "-k", "1", "-c", HOSTILE[0], "--key-file",
            str(folder / "node.key"))
        wait_until(lambda: int(live.text) > before, 30, "the live counter to move")
        assert browser.find_element("css selector", "h1").text == "Node"  # the same page

        jobs_text = visit("/jobs", "jobs", job_id[:16])
        assert "paid" in jobs_text and "structural" in jobs_text
        for h in HOSTILE:  # literal in the jobs table: the command is the job's title
            assert h in jobs_text

        job_text = visit(f"/jobs/{job_id}", "job", "Runs")
        assert "exit 0" in job_text and "pass" in job_text
        assert f"paid {PRICE} msat" in job_text
        assert "Every verification check passed." in job_text
        (escrow,) = browser.find_elements("css selector", "table.escrow tbody tr")
        assert f"released {PRICE}" in escrow.text  # funded before work, released on a pass
        assert "preimage" not in browser.page_source
        # the provider's trajectory, read back from the relay and audited
        assert browser.find_elements("css selector", ".traj-ok"), job_text
        steps = browser.find_elements("css selector", "table.timeline tbody tr")
        assert len(steps) >= 3 and steps[0].text.startswith("0 ")
        stdout = browser.find_element("css selector", "pre.stdout").text
        assert stdout.strip() == " ".join(HOSTILE)  # the provider's output, literal
        for h in HOSTILE:
            assert h in browser.find_element("css selector", "code.cmd").text
        # nothing the hostile text names became an element
        assert browser.find_elements("css selector", "img") == []
        assert [e.get_attribute("src") for e in browser.find_elements("css selector", "script")
                ] == [f"http://127.0.0.1:{web_port}/static/live.js"]

        providers_text = visit("/providers", "providers", "Announcements")
        assert NAME in providers_text and f"oa.sandbox_run.v1: {PRICE} msat" in providers_text
        assert "pass structural 1" in providers_text  # this buyer's verdict on it
        assert "no heartbeat promised" in providers_text  # this node runs no NIP-SA agent
        assert browser.find_elements("css selector", "main script, header script") == []

        wallet_text = visit("/wallet", "wallet", "Default wallet")
        assert f"{PRICE:,}" in wallet_text  # the provider's earnings, the default wallet
        conns = {r.text.split()[0]: r.text for r in browser.find_elements(
            "css selector", "table.connections tbody tr")}
        assert set(conns) == {"earn", "spend"}
        assert conns["spend"].split()[1] == f"{DEPOSIT - PRICE:,}"
        assert "walletconnect" not in browser.page_source
        earn_uri = (folder / "wallet.uri").read_text()
        assert earn_uri.split("secret=")[1][:16] not in browser.page_source

        # no page logged a CSP violation or ran any script error
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        print("page load seconds:", {k: round(v, 3) for k, v in timings.items()})
        (screenshots / "timings.json").write_text(json.dumps(timings, indent=1))
    finally:
        code = stop(node)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-4000:]


PATCH = """From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: t <t@example.org>
Subject: [PATCH] {title}

---
 app.py | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/app.py b/app.py
index 0000000..1111111 100644
--- a/app.py
+++ b/app.py
@@ -1 +1 @@
-print("old")
+print("{hostile}")
"""


def test_gitafter_page_renders_proposals_and_issues_literally(tmp_path: Path, browser: Any,
                                                              screenshots: Path) -> None:
    relay_port, web_port = free_port(), free_port()
    relay = f"ws://127.0.0.1:{relay_port}"
    folder = tmp_path / "node"
    cfg = write_config(folder, {
        "node": {"data_dir": ".", "relays": [relay], "name": "git"},
        "relay": {"enabled": True, "port": relay_port},
        "web": {"enabled": True, "port": web_port},
    })
    log = tmp_path / "node.log"
    node = launch(["start", "-c", str(cfg)], log)
    try:
        url, _, _ = login_url(node, log)
        wait_until(lambda: port_open(relay_port), 30, "the relay")
        key = str(folder / "node.key")

        def publish(kind: int, content: str, *tags: str) -> str:
            out = cli("relay", "publish", "-r", relay, "-k", str(kind), "-c", content,
                      *[a for t in tags for a in ("-t", t)], "--key-file", key, "--json")
            return str(json.loads(out.stdout)["id"])

        pubkey = json.loads(cli("keys", "show", "--json", "-c", str(cfg)).stdout)["public_key"]
        repo_a = f"30617:{pubkey}:demo"
        publish(30617, "", "d=demo", f"name={HOSTILE[1]}", "description=a demo",
                "clone=https://example.org/demo.git")
        patch = publish(1617, PATCH.format(title=HOSTILE[0], hostile=HOSTILE[1]),
                        f"a={repo_a}")
        publish(1617, PATCH.format(title="v2 " + HOSTILE[0], hostile="v2"), f"a={repo_a}",
                f"e={patch}", "t=revision-root")
        issue = publish(1621, f"steps: {HOSTILE[1]}", f"a={repo_a}", f"subject={HOSTILE[0]}")
        publish(1632, "", f"e={issue}", f"a={repo_a}")
        publish(1111, f"a comment {HOSTILE[0]}", f"E={issue}", "K=1621")

        log_in(browser, url)
        browser.get(f"http://127.0.0.1:{web_port}/git")
        wait_until(lambda: "Proposals and issues" in browser.page_source, 30, "the git page")
        text = browser.find_element("tag name", "body").text
        assert HOSTILE[1] in text and HOSTILE[0] in text and "closed" in text
        no_alert(browser)
        browser.save_screenshot(str(screenshots / "gitafter.png"))

        browser.get(f"http://127.0.0.1:{web_port}/git/{patch}")
        wait_until(lambda: "Diff" in browser.page_source, 30, "the patch page")
        added = browser.find_elements("css selector", "pre.diff .add")
        assert [a.text for a in added] == [f'+print("{HOSTILE[1]}")']
        assert [d.text for d in browser.find_elements("css selector", "pre.diff .del")] == [
            '-print("old")']
        assert browser.find_elements("css selector", "main img, main script") == []
        (rev,) = browser.find_elements("css selector", "table.revisions tbody tr")
        assert f"[PATCH] v2 {HOSTILE[0]}" in rev.text
        no_alert(browser)
        browser.save_screenshot(str(screenshots / "gitafter-patch.png"))

        browser.get(f"http://127.0.0.1:{web_port}/git/{issue}")
        wait_until(lambda: "Comments" in browser.page_source, 30, "the issue page")
        text = browser.find_element("tag name", "body").text
        assert f"a comment {HOSTILE[0]}" in text and f"steps: {HOSTILE[1]}" in text
        assert "closed" in text
        no_alert(browser)
        browser.save_screenshot(str(screenshots / "gitafter-issue.png"))
    finally:
        code = stop(node)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-4000:]


def test_frost_page_shows_the_group_and_which_holders_answer(tmp_path: Path, browser: Any,
                                                             screenshots: Path) -> None:
    """A 2-of-3 group, holders 1 and 2 running (1 with the relay and the dashboard), 3 off."""
    relay_port, web_port = free_port(), free_port()
    relay = f"ws://127.0.0.1:{relay_port}"
    made = json.loads(cli("frost", "keygen", "--threshold", "2", "--shares", "3", "--out",
                          str(tmp_path), "--json").stdout)
    configs = []
    for s in made["shares"]:
        extra = {"relay": {"enabled": True, "port": relay_port},
                 "web": {"enabled": True, "port": web_port}} if s["idx"] == 1 else {}
        cfg = write_config(tmp_path / f"holder-{s['idx']}", {
            "node": {"data_dir": ".", "relays": [relay], "name": f"holder-{s['idx']}"},
            "frostr": {"enabled": True, "group": str(tmp_path / "group.txt"),
                       "share_file": s["file"], "request_timeout": 3.0},
            **extra})
        configs.append(cfg)
    procs = []
    try:
        log1 = tmp_path / "holder-1.log"
        procs.append(launch(["start", "-c", str(configs[0])], log1))
        url, _, _ = login_url(procs[0], log1)
        log2 = tmp_path / "holder-2.log"
        procs.append(launch(["start", "-c", str(configs[1])], log2))
        wait_until(lambda: "holder 2 ready" in log2.read_text(), 60, "holder 2")
        log_in(browser, url)
        browser.get(f"http://127.0.0.1:{web_port}/frost")
        wait_until(lambda: "Holders" in browser.page_source, 30, "the FROST page")
        text = browser.find_element("tag name", "body").text
        assert made["public_key"] in text and "2 of 3" in text
        assert "reachable now\n2 of 3 (this one included): can sign" in text, text
        rows = [r.text for r in browser.find_elements("css selector", "tbody tr")]
        assert rows[0].startswith("1 (this node) up")
        assert rows[1].startswith("2 ") and " up" in rows[1]
        assert rows[2].startswith("3 ") and " down" in rows[2]
        no_alert(browser)
        browser.save_screenshot(str(screenshots / "frost.png"))
    finally:
        for p in procs:
            stop(p)


def test_the_hostile_corpus_in_issues_runs_nothing_and_breaks_no_page(
        tmp_path: Path, browser: Any) -> None:
    """Every string of the security corpus (tests/security) as an issue's subject and body,
    from another key: the list and each issue page load, show no element the strings name
    and open no dialog; the node keeps serving."""
    import anyio

    from oa_node.client import RelayPool
    from oa_node.nostr.event import EventTemplate
    from oa_node.signer import LocalSigner
    from tests.security.test_hostile_corpus import hostile_strings

    relay_port, web_port = free_port(), free_port()
    relay = f"ws://127.0.0.1:{relay_port}"
    cfg = write_config(tmp_path / "node", {
        "node": {"data_dir": ".", "relays": [relay], "name": "corpus"},
        "relay": {"enabled": True, "port": relay_port},
        "web": {"enabled": True, "port": web_port},
    })
    marker = tmp_path / "pwned"
    corpus = hostile_strings(marker)
    log = tmp_path / "node.log"
    node = launch(["start", "-c", str(cfg)], log)
    try:
        url, _, _ = login_url(node, log)
        wait_until(lambda: port_open(relay_port), 30, "the relay")
        attacker = LocalSigner.generate()

        async def publish() -> list[str]:
            ids = []
            async with RelayPool([relay]) as pool:
                for h in corpus:
                    ev = await attacker.sign(EventTemplate(
                        kind=1621, content=h[:60_000],
                        tags=[["a", f"30617:{attacker.public_key}:{h[:200]}"],
                              ["subject", h[:1000]]]))
                    if (await pool.publish(ev)).ok:
                        ids.append(ev.id)
            return ids

        ids = anyio.run(publish)
        assert len(ids) >= len(corpus) - 2, (len(ids), len(corpus))  # a relay may refuse a few
        log_in(browser, url)
        browser.get(f"http://127.0.0.1:{web_port}/git")
        wait_until(lambda: "Proposals and issues" in browser.page_source, 30, "the git page")
        rows = browser.find_elements("css selector", "tbody tr")
        assert len(rows) >= len(ids)
        assert "<script>alert(1)</script>" in browser.find_element("tag name", "body").text
        for event_id in ids:
            browser.get(f"http://127.0.0.1:{web_port}/git/{event_id}")
            wait_until(lambda: "Comments" in browser.page_source, 30, f"issue {event_id[:8]}")
            no_alert(browser)
            assert browser.find_elements("css selector", "main img, main script, main a[href"
                                         "^='file'], main b, main link") == []
        assert not marker.exists()
        assert request(port_of(url), "GET", "/login").status == 200  # still serving
    finally:
        code = stop(node)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-4000:]


def port_of(url: str) -> int:
    return int(url.split("/")[2].rsplit(":", 1)[1])
