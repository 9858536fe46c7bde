"""The dashboard service: the login token, the session cookie, and the routes.

The token (32 random bytes, url-safe) is kept 0600 in the data dir (``oa_node.files``) and
printed as a login URL whose token is in the *fragment* (``/login#token=...``): browsers
never send a fragment, so the token reaches the server only in the login POST, never in a
request line, a log or a Referer. ``/static/login.js`` moves it into the form and submits.
The cookie is not the token but an HMAC of it (HttpOnly, SameSite=Strict), compared in
constant time; every other request without it is sent to the login page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from oa_node.files import read_private, write_private

from . import data, git, pages
from .http import HttpServer, Request, Response
from .settings import WebSettings
from .static import LIVE_JS, LOGIN_JS, STYLE_CSS

if TYPE_CHECKING:
    from oa_node.node import Node

log = logging.getLogger("oa_node.web")

COOKIE = "oa_web"
STATIC = {"style.css": (STYLE_CSS.encode(), "text/css; charset=utf-8"),
          "login.js": (LOGIN_JS.encode(), "text/javascript; charset=utf-8"),
          "live.js": (LIVE_JS.encode(), "text/javascript; charset=utf-8")}
#: live streams (``/live``) open at once, and how long one lasts before the browser
#: reconnects (EventSource does so by itself): a forgotten tab holds nothing for long
MAX_STREAMS = 8
STREAM_SECS = 300.0
LIVE_EVERY = 2.0


def load_token(path: Path) -> str:
    """The dashboard's token, made (0600) on first use; a file others may read is refused."""
    if not path.exists():
        try:
            write_private(path, secrets.token_urlsafe(32) + "\n")
        except FileExistsError:  # made meanwhile by another process
            pass
    token = read_private(path, "dashboard token").strip()
    if len(token) < 16:
        from oa_node.errors import UserError

        raise UserError(f"{path}: dashboard token too short; remove the file to make a new one")
    return token


def session_of(token: str) -> str:
    return hmac.new(token.encode(), b"oa-node web session", hashlib.sha256).hexdigest()


class Dashboard:
    def __init__(self, node: Node, token: str) -> None:
        self.node = node
        self._token = token
        self._session = session_of(token)
        self.probe = data.RelayProbe()
        self.ads = data.ProviderAds()
        self.sampler = data.RelaySampler()
        self.git = git.GitEvents()
        self._streams = 0

    def logged_in(self, req: Request) -> bool:
        cookie = req.cookie(COOKIE) or ""
        return hmac.compare_digest(cookie.encode(), self._session.encode())

    async def handle(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name in STATIC and req.method in ("GET", "HEAD"):
                return Response(200, *STATIC[name])
            return _text(404, "not found")
        if path == "/favicon.ico":  # no icon: say so without an error in the console
            return Response(204, b"", "image/x-icon")
        if path == "/login":
            return self.login(req)
        if req.method == "POST":
            return _text(405, "read-only: nothing but the login takes a POST")
        if not self.logged_in(req):
            return Response(303, b"", headers={"Location": "/login"})
        if path == "/":
            return _html(await self.node_page())
        if path == "/jobs":
            return _html(self.jobs_page())
        if path.startswith("/jobs/"):
            return await self.job_page(path[len("/jobs/"):])
        if path == "/live":
            return self.live()
        if path == "/git":
            view = await self.git.get(self.node)
            return _html(self._page("GitAfter", git.git_page(view), "/git"))
        if path.startswith("/git/"):
            return await self.git_item(path[len("/git/"):])
        if path == "/frost":
            return _html(await self.frost_page())
        if path == "/providers":
            return _html(await self.providers_page())
        if path == "/wallet":
            return _html(await self.wallet_page())
        return _html(self._page("Not found", "<p>No such page.</p>"), 404)

    def login(self, req: Request) -> Response:
        if req.method != "POST":
            return _html(pages.login_page())
        origin = req.headers.get("origin")
        if origin not in (None, "null") and origin.split("://", 1)[-1] != req.headers["host"]:
            return _text(403, "cross-origin login refused")
        given = (req.form.get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            log.warning("dashboard: a login with a wrong token")
            return _html(pages.login_page("Wrong token."), 401)
        cookie = f"{COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict"
        return Response(303, b"", headers={"Location": "/", "Set-Cookie": cookie})

    def _page(self, title: str, body: str, active: str = "") -> str:
        return pages.page(title, body, active=active, node_name=self.node.config["node"]["name"])

    async def node_page(self) -> str:
        from oa_node.nostr import nip19

        node = self.node
        pubkey = node.signer.public_key
        counts: dict[str, dict[str, int]] = {}
        for side, reader in (("buyer", data.buyer_ledger(node)),
                             ("provider", data.provider_ledger(node))):
            states: dict[str, int] = {}
            for rec in reader.all(10_000):
                states[rec.state] = states.get(rec.state, 0) + 1
            counts[side] = states
        relays = await self.probe.check(list(node.config["node"]["relays"]))
        body = pages.node_page(
            name=node.config["node"]["name"], pubkey=pubkey, npub=nip19.npub_encode(pubkey),
            services=[s.name for s in node.services], data_dir=str(node.data_dir),
            relays=relays, counts=counts, latencies=await data.recent_latencies(node))
        body += pages.relay_section(await data.relay_stats(node), self.sampler.rates())
        return self._page("Node", body, "/")

    def live(self) -> Response:
        """Server-sent events: the embedded relay's counters and rates every 2 s."""
        if self._streams >= MAX_STREAMS:
            return _text(503, "too many live views open")
        return Response(200, b"", "text/event-stream; charset=utf-8", stream=self._live())

    async def _live(self) -> AsyncIterator[bytes]:
        import json

        import anyio

        self._streams += 1
        try:
            yield b"retry: 5000\n\n"
            last: tuple[float, dict[str, int]] | None = None
            start = time.monotonic()
            while time.monotonic() - start < STREAM_SECS:
                stats = await data.relay_stats(self.node)
                if stats is not None:
                    now = time.monotonic()
                    shown: dict[str, str | int] = dict(stats)
                    if last is not None and now > last[0]:
                        dt = now - last[0]
                        for key, name in (("events_ingested", "ingest_rate"),
                                          ("events_delivered", "fanout_rate")):
                            shown[name] = f"{(stats[key] - last[1][key]) / dt:.2f}"
                    last = (now, stats)
                    yield f"data: {json.dumps(shown)}\n\n".encode()
                await anyio.sleep(LIVE_EVERY)
        finally:
            self._streams -= 1

    def jobs_page(self) -> str:
        body = pages.jobs_page(data.buyer_ledger(self.node).all(200),
                               data.provider_ledger(self.node).all(200))
        return self._page("Jobs", body, "/jobs")

    async def job_page(self, job_id: str) -> Response:
        if not _is_hex64(job_id):
            return _html(self._page("Not found", "<p>Not a job id.</p>"), 404)
        view = await data.buyer_job(self.node, job_id)
        if view is None:
            return _html(self._page("Not found", "<p>No such job in the buyer's ledger.</p>",
                                    "/jobs"), 404)
        await data.audit_trajectories(self.node, view)
        return _html(self._page(f"Job {job_id[:16]}", pages.job_page(view, data.latency(view)),
                                "/jobs"))

    async def git_item(self, event_id: str) -> Response:
        view = await self.git.get(self.node)
        ev = git.find(view, event_id) if _is_hex64(event_id) else None
        if ev is None:
            return _html(self._page("Not found", "<p>No such proposal or issue.</p>", "/git"),
                         404)
        return _html(self._page(git.KIND_WORD[ev.kind].capitalize(), git.item_page(view, ev),
                                "/git"))

    async def frost_page(self) -> str:
        from oa_node.threshold import FrostGroup

        group = self.node.capability(FrostGroup)
        status, error = None, ""
        if group is not None:
            try:
                status = await group.frost_status(3.0)
            except Exception as exc:  # a holder that cannot ping: said, not raised
                error = f"{type(exc).__name__}: {exc}"[:200]
        return self._page("FROST", pages.frost_page(status, error), "/frost")

    async def providers_page(self) -> str:
        ads = await self.ads.get(self.node)
        rep = data.reputation(data.buyer_ledger(self.node).all(2000))
        return self._page("Providers", pages.providers_page(ads, self.ads.error, rep,
                                                            self.ads.liveness),
                          "/providers")

    async def wallet_page(self) -> str:
        from oa_node.walletview import WalletLedger

        balance, status = await data.wallet_balance(self.node)
        view = self.node.capability(WalletLedger)
        served = None
        if view is not None:
            served = [(c, view.history_view(str(c["name"]), 10))
                      for c in view.connection_views()]
        body = pages.wallet_page(balance, status, data.buyer_ledger(self.node).all(200),
                                 data.provider_ledger(self.node).all(200), served)
        return self._page("Wallet", body, "/wallet")


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _html(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


def _text(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


async def serve(node: Node, settings: WebSettings) -> None:
    """Run the dashboard until cancelled."""
    import anyio

    token = load_token(node.data_dir / settings.token_file)
    dash = Dashboard(node, token)
    server = HttpServer(dash.handle, settings.host, settings.port,
                        allowed_hosts=lambda: _hosts(settings.host, server.port))
    try:
        await server.start()
    except OSError as exc:
        from oa_node.errors import UserError

        raise UserError(f"[web] host/port {settings.host}:{settings.port}: cannot listen: "
                        f"{exc.strerror or exc}") from None
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("dashboard listens on %s: reachable beyond this machine, over plain HTTP"
                    " (put a TLS proxy in front, or keep [web] host = 127.0.0.1)",
                    settings.host)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info("dashboard on http://%s:%d/", host, server.port)
    # the login URL on a line of its own, never wrapped by the log's console
    print(f"dashboard: log in: http://{host}:{server.port}/login#token={token}",
          file=sys.stderr, flush=True)
    try:
        await dash.sampler.run(node)
    finally:
        with anyio.CancelScope(shield=True):
            await server.close()


def _hosts(host: str, port: int) -> set[str]:
    names = {host, f"[{host}]"} | ({"localhost", "127.0.0.1"} if host == "127.0.0.1" else set())
    return {f"{n}:{port}" for n in names}
