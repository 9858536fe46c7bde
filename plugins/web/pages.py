"""The dashboard's pages, rendered on the server as HTML strings.

Every value is passed through :func:`esc` (``html.escape`` with quotes) where it is put in
the page, text or attribute alike, whatever its origin; markup is only ever this module's
own literals. No inline script or style (the CSP forbids both): the look is
``/static/style.css`` and plots are inline SVG with presentation attributes.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from .data import JobView, Latency, RelayHealth, ResultView

NAV = (("/", "Node"), ("/jobs", "Jobs"), ("/providers", "Providers"), ("/git", "GitAfter"),
       ("/frost", "FROST"), ("/wallet", "Wallet"))

#: colours of the latency parts, in order
PART_COLOURS = {"publish": "#6c8ebf", "provider": "#d79b00", "sandbox": "#82b366",
                "verify": "#9673a6", "payment": "#b85450"}

PREVIEW_CHARS = 4000
ON = ' class="on"'


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(ts: Any) -> str:
    """A timestamp as local time; one no clock can show (an event's hostile ``created_at``)
    is shown as the number, never an error that would take the page down."""
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return str(ts)


def page(title: str, body: str, *, active: str = "", node_name: str = "") -> str:
    nav = "".join(f'<a href="{href}"{ON if href == active else ""}>{esc(name)}</a>'
                  for href, name in NAV)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)} · oa-node</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/static/style.css">'
            '<script src="/static/live.js" defer></script></head><body>'
            f'<header><span class="brand">oa-node</span> <span class="name">{esc(node_name)}'
            f'</span><nav>{nav}</nav></header><main><h1>{esc(title)}</h1>{body}</main>'
            "</body></html>")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """``rows`` are cells already escaped (or markup made here from escaped parts)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def dl(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def badge(word: Any) -> str:
    w = esc(word)
    return f'<span class="badge b-{w}">{w}</span>'


def login_page(error: str = "") -> str:
    err = f'<p class="error">{esc(error)}</p>' if error else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Log in · oa-node</title>"
            '<link rel="stylesheet" href="/static/style.css">'
            '<script src="/static/login.js" defer></script></head><body><main class="login">'
            f"<h1>oa-node dashboard</h1>{err}"
            '<form method="post" action="/login" id="login">'
            '<label for="token">Token (printed by <code>oa-node web</code>, kept in the data'
            ' dir)</label><input type="password" id="token" name="token" autocomplete="off"'
            ' required><button type="submit">Log in</button></form></main></body></html>')


# --- Node ----------------------------------------------------------------------------------

def node_page(*, name: str, pubkey: str, npub: str, services: list[str], data_dir: str,
              relays: list[RelayHealth], counts: dict[str, dict[str, int]],
              latencies: list[Latency]) -> str:
    ident = dl([("name", esc(name)), ("pubkey", f"<code>{esc(pubkey)}</code>"),
                ("npub", f"<code>{esc(npub)}</code>"),
                ("data dir", f"<code>{esc(data_dir)}</code>"),
                ("services in this process", esc(", ".join(services) or "none"))])
    rows = [[f"<code>{esc(r.url)}</code>", badge("up" if r.ok else "down"), esc(r.detail),
             esc(when(r.checked_at))] for r in relays]
    relay_html = table(["relay", "health", "detail", "checked"], rows, "relays") if rows \
        else "<p>No relays configured ([node] relays).</p>"
    count_rows = []
    for side, states in counts.items():
        count_rows.append([esc(side), esc(sum(states.values())),
                           esc(", ".join(f"{s} {n}" for s, n in sorted(states.items())))])
    return (f"<section><h2>Identity</h2>{ident}</section>"
            f"<section><h2>Relays</h2>{relay_html}</section>"
            f"<section><h2>Jobs</h2>{table(['side', 'jobs', 'by state'], count_rows)}</section>"
            "<section><h2>Job latency, recent jobs</h2>"
            f"{latency_plot(latencies)}</section>")


def latency_plot(latencies: list[Latency], width: int = 720) -> str:
    """Stacked horizontal bars, one per job (oldest at the top), seconds on the x axis."""
    rows = [(lat, lat.parts()) for lat in latencies if lat.parts()]
    if not rows:
        return '<p class="empty">No finished buyer job yet.</p>'
    longest = max(sum(v for _, v in parts) for _, parts in rows) or 1.0
    left, bar_h, gap, top = 110, 14, 6, 24
    plot_w = width - left - 60
    height = top + len(rows) * (bar_h + gap) + 30
    out = [f'<svg class="plot" role="img" aria-label="job latency split" width="{width}"'
           f' height="{height}" viewBox="0 0 {width} {height}"'
           ' xmlns="http://www.w3.org/2000/svg">']
    x = left
    for part, colour in PART_COLOURS.items():  # legend
        out.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="13" font-size="11">{esc(part)}</text>')
        x += 90
    for i, (lat, parts) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(f'<text x="{left - 6}" y="{y + 11}" font-size="11" text-anchor="end">'
                   f"{esc(lat.job_id[:12])}</text>")
        x0 = float(left)
        for part, secs in parts:
            w = secs / longest * plot_w
            out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}"'
                       f' fill="{PART_COLOURS[part]}"><title>{esc(part)}: {secs:.3f} s'
                       "</title></rect>")
            x0 += w
        total = sum(v for _, v in parts)
        out.append(f'<text x="{x0 + 4:.1f}" y="{y + 11}" font-size="10">{total:.2f} s</text>')
    axis_y = top + len(rows) * (bar_h + gap) + 4
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}"'
               ' stroke="#888"/>')
    for k in range(5):
        xs = left + plot_w * k / 4
        out.append(f'<text x="{xs:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle">'
                   f"{longest * k / 4:.2f}s</text>")
    out.append("</svg>")
    return "".join(out)


# --- Jobs ----------------------------------------------------------------------------------

def _title_of(data: dict[str, Any]) -> str:
    """A job's one-line description: its commands (sandbox_run) or its repository."""
    doc = data.get("doc") if isinstance(data.get("doc"), dict) else {}
    cmds = doc.get("commands")
    if isinstance(cmds, list) and cmds:
        return " && ".join(str(c.get("cmd") if isinstance(c, dict) else c) for c in cmds)
    repo = doc.get("repo")
    return str(repo.get("url") if isinstance(repo, dict) else repo or "")


def jobs_page(buyer: list[Any], provider: list[Any]) -> str:
    brows = []
    for rec in buyer:
        d = rec.data
        link = f'<a href="/jobs/{quote(rec.id, safe="")}"><code>{esc(rec.id[:16])}</code></a>'
        brows.append([link, esc(d.get("schema")), badge(rec.state), esc(d.get("level") or ""),
                      esc(d.get("max_price_msat")),
                      f'<span class="title">{esc(_title_of(d)[:300])}</span>',
                      esc(when(rec.created_at))])
    prows = []
    for rec in provider:
        d = rec.data
        prows.append([f"<code>{esc(rec.id[:16])}</code>", esc(d.get("schema")), badge(rec.state),
                      esc(d.get("status") or ""), esc(d.get("price_msat")),
                      f"<code>{esc(str(d.get('buyer') or '')[:16])}</code>",
                      esc(when(rec.created_at))])
    b = table(["job", "schema", "state", "level", "bid msat", "what", "submitted"], brows,
              "jobs buyer") if brows else '<p class="empty">No job submitted by this node.</p>'
    p = table(["request", "schema", "state", "status", "price msat", "buyer", "received"], prows,
              "jobs provider") if prows else '<p class="empty">No job taken by this node.</p>'
    return (f"<section><h2>As a buyer</h2>{b}</section>"
            f"<section><h2>As a provider</h2>{p}</section>")


def job_page(view: JobView, lat: Latency) -> str:
    rec, d = view.record, view.record.data
    summary = dl([
        ("job", f"<code>{esc(rec.id)}</code>"), ("schema", esc(d.get("schema"))),
        ("state", badge(rec.state)), ("verification level", esc(d.get("level") or "-")),
        ("bid", f"{esc(d.get('max_price_msat'))} msat"), ("redundancy", esc(d.get("redundancy"))),
        ("encrypted request", esc(bool(d.get("encrypted")))),
        ("what", f'<span class="title">{esc(_title_of(d))}</span>'),
        ("submitted", esc(when(d.get("submitted_at")))),
    ])
    hist = table(["at", "from", "to", "receipt"], [
        [esc(when(h.at)), esc(h.from_state or ""), badge(h.to_state),
         f'<code class="receipt">{esc(_short_json(_no_preimages(h.receipt)))}</code>']
        for h in view.history])
    results = "".join(_result(r) for r in view.results) or '<p class="empty">No result yet.</p>'
    return (f"<section>{summary}</section>"
            f"{_escrow(rec)}"
            f"<section><h2>Latency</h2>{latency_plot([lat])}</section>"
            f"<section><h2>Results</h2>{results}</section>"
            f"<section><h2>History</h2>{hist}</section>")


def _no_preimages(value: Any) -> Any:
    """``value`` without any ``preimage`` (an unreleased escrow's is the buyer's secret)."""
    if isinstance(value, dict):
        return {k: _no_preimages(v) for k, v in value.items() if k != "preimage"}
    if isinstance(value, list):
        return [_no_preimages(v) for v in value]
    return value


ESCROW_OPEN = ("published", "feedback", "result_received", "verified")


def _escrow(rec: Any) -> str:
    """Per provider offered escrow: offered, funded (locked), released, or returned."""
    d = rec.data
    offered = d.get("escrow") if isinstance(d.get("escrow"), dict) else {}
    if not offered:
        return ""
    funding = d.get("funding") if isinstance(d.get("funding"), dict) else {}
    payments = d.get("payments") if isinstance(d.get("payments"), dict) else {}
    released = {p.get("provider") for p in payments.values()
                if isinstance(p, dict) and p.get("escrow")}
    rows = []
    for provider, offer in offered.items():
        fund = funding.get(provider) if isinstance(funding.get(provider), dict) else None
        if provider in released:
            state = "released"
        elif fund is None:
            state = "offered" if rec.state in ESCROW_OPEN else "never funded"
        else:
            state = "locked" if rec.state in ESCROW_OPEN else "returned"
        rows.append([f"<code>{esc(str(provider)[:16])}</code>", badge(state),
                     esc(fund.get("amount_msat") if fund else ""),
                     f"<code>{esc(str((offer or {}).get('payment_hash', ''))[:24])}</code>"
                     if isinstance(offer, dict) else ""])
    return ("<section><h2>Escrow</h2>"
            f"{table(['provider', 'state', 'locked msat', 'payment hash'], rows, 'escrow')}"
            "</section>")


def _short_json(value: Any, limit: int = 400) -> str:
    import json

    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _result(r: ResultView) -> str:
    payment = r.payment if isinstance(r.payment, dict) else None
    paid = (f"paid {esc(payment.get('amount_msat'))} msat" if payment
            else f"not paid: {esc(r.refusal)}" if r.refusal else "not paid")
    head = dl([("result", f"<code>{esc(r.result_id)}</code>"),
               ("provider", f"<code>{esc(r.provider)}</code>"),
               ("verdict", badge(r.verdict or ("valid" if r.valid else "invalid"))),
               ("payment", paid), ("received", esc(when(r.received_at)))])
    problems = "".join(f"<li>{esc(p)}</li>" for p in r.problems)
    checks = f'<h4>Verification problems</h4><ul class="problems">{problems}</ul>' if problems \
        else '<p class="ok">Every verification check passed.</p>' if r.valid else ""
    doc = r.doc
    if doc is None:
        return (f'<article class="result">{head}{checks}'
                f'<p class="error">unreadable: {esc(r.unreadable)}</p></article>')
    body = dl([("status", badge(doc.get("status"))), ("error", esc(doc.get("error") or "-"))])
    return (f'<article class="result">{head}{checks}{body}{_runs(doc.get("runs"))}'
            f'{_artifacts(doc.get("artifacts"))}{_trajectory(r)}</article>')


def _trajectory(r: ResultView) -> str:
    """The provider's trajectory as a timeline, with what reading it back found."""
    ref = r.trajectory
    if ref is None:
        return ('<h4>Trajectory</h4><p class="empty">None referenced (an encrypted job has'
                " none).</p>")
    head = dl([("session", f"<code>{esc(ref.session_id)}</code>"),
               ("claimed hash", f"<code>{esc(ref.trajectory_hash)}</code>")])
    report = r.audit
    if report is None:
        return f"<h4>Trajectory</h4>{head}"
    if isinstance(report, str):
        return f'<h4>Trajectory</h4>{head}<p class="error">unreadable: {esc(report)}</p>'
    verdict = ('<p class="ok traj-ok">Audit: complete, no gap, chain and hash match.</p>'
               if report.ok else '<ul class="problems traj-problems">' + "".join(
                   f"<li>{esc(p)}</li>" for p in report.problems) + "</ul>")
    facts = dl([("steps", esc(len(report.steps))),
                ("missing seqs", esc(", ".join(map(str, report.missing_seqs)) or "none")),
                ("recomputed hash", f"<code>{esc(report.computed_hash)}</code>")])
    rows = [[esc(st.seq), esc(when(st.event.created_at)), badge(st.type),
             f'<code class="receipt">{esc(_short_json(_no_preimages(st.payload), 200))}</code>']
            for st in report.steps]
    timeline = table(["seq", "at", "step", "payload"], rows, "timeline")
    return f"<h4>Trajectory</h4>{head}{verdict}{facts}{timeline}"


def _runs(runs: Any) -> str:
    if not isinstance(runs, list) or not runs:
        return ""
    out = ["<h4>Runs</h4>"]
    for i, run in enumerate(runs, 1):
        if not isinstance(run, dict):
            continue
        cmd = run.get("cmd")
        cmd = " ".join(str(c) for c in cmd) if isinstance(cmd, list) else cmd
        flags = [f for f in ("timed_out", "oom_killed") if run.get(f)]
        flagged = f" ({', '.join(flags)})" if flags else ""
        out.append(f'<div class="run"><p>run {i}: <code class="cmd">{esc(cmd)}</code> → exit '
                   f'<b class="exit">{esc(run.get("exit_code"))}</b> in '
                   f'{esc(run.get("duration_ms"))} ms{esc(flagged)}'
                   "</p>")
        for stream in ("stdout", "stderr"):
            preview = run.get(f"{stream}_preview")
            if isinstance(preview, str) and preview.strip():
                out.append(f'<p class="stream">{stream} ({esc(run.get(f"{stream}_bytes"))} bytes)'
                           f'</p><pre class="{stream}">{esc(preview[-PREVIEW_CHARS:])}</pre>')
        out.append("</div>")
    return "".join(out)


def _artifacts(artifacts: Any) -> str:
    if not isinstance(artifacts, list) or not artifacts:
        return ""
    rows = [[f"<code>{esc(a.get('path'))}</code>", esc(a.get("size_bytes")),
             f"<code>{esc(a.get('sha256'))}</code>"] for a in artifacts if isinstance(a, dict)]
    return "<h4>Artifacts</h4>" + table(["path", "bytes", "sha256"], rows)


# --- Wallet ----------------------------------------------------------------------------------

def wallet_page(balance: int | None, status: str, buyer: list[Any], provider: list[Any],
                ledger: list[tuple[dict[str, Any], list[dict[str, Any]]]] | None = None) -> str:
    bal = (f'<p class="balance"><b>{balance:,}</b> msat</p>' if balance is not None
           else f'<p class="empty">{esc(status)}</p>')
    spent = []
    for rec in buyer:
        payments = rec.data.get("payments")
        for rid, p in (payments.items() if isinstance(payments, dict) else []):
            if isinstance(p, dict):
                spent.append([esc(when(rec.updated_at)), "paid", f"<code>{esc(rec.id[:16])}</code>",
                              esc(p.get("amount_msat")), esc(p.get("fee_msat", "")),
                              f"<code>{esc(str(rid)[:16])}</code>"])
    for rec in provider:
        if rec.state == "paid":
            spent.append([esc(when(rec.updated_at)), "earned", f"<code>{esc(rec.id[:16])}</code>",
                          esc(rec.data.get("amount_msat", rec.data.get("price_msat"))), "", ""])
    hist = table(["when", "what", "job", "amount msat", "fee msat", "result"], spent) \
        if spent else '<p class="empty">No payment made or received by a job yet.</p>'
    return (f"<section><h2>Default wallet</h2>{bal}<p class=\"note\">Connection URIs and "
            "secrets are never shown here.</p></section>"
            f"<section><h2>Job payments</h2>{hist}</section>{_ledger(ledger)}")


def _ledger(ledger: list[tuple[dict[str, Any], list[dict[str, Any]]]] | None) -> str:
    """The connections of the ledger wallet this node serves, with budgets and history."""
    if ledger is None:
        return ""
    rows, moves = [], []
    for c, hist in ledger:
        budget = (f"{c.get('budget_msat'):,} msat per {c.get('budget_period')}"
                  if isinstance(c.get("budget_msat"), int) else "none")
        rows.append([esc(c.get("name")), esc(f"{c.get('balance_msat', 0):,}"), esc(budget),
                     esc(when(c.get("created_at"))), esc("revoked" if c.get("revoked") else "")])
        moves += [[esc(when(m.get("created_at"))), esc(c.get("name")),
                   esc(m.get("delta_msat")), esc(m.get("reason")),
                   f"<code>{esc(str(m.get('ref') or '')[:24])}</code>"] for m in hist]
    moves.sort(key=lambda r: r[0], reverse=True)
    conns = table(["connection", "balance msat", "budget", "created", ""], rows, "connections") \
        if rows else '<p class="empty">No connection.</p>'
    hist = table(["when", "connection", "msat", "what", "ref"], moves) if moves else ""
    return (f"<section><h2>Ledger wallet served by this node</h2>{conns}"
            f"<h4>History</h4>{hist}</section>")


# --- Providers -------------------------------------------------------------------------------

def _pulse(live: Any) -> str:
    if live is None or live.heartbeat is None:
        return "no heartbeat promised" + (f", seen {esc(when(live.last_alive))}"
                                          if live is not None and live.last_alive else "")
    state = "stale" if live.stale(time.time()) else "alive"
    return (f"{badge(state)} every {esc(live.heartbeat)} s, last "
            f"{esc(when(live.last_alive)) or 'never'}")


def providers_page(ads: list[Any], error: str, rep: dict[str, dict[str, int]],
                   live: dict[str, Any] | None = None) -> str:
    from oa_node.nostr import nip19

    rows = []
    for info in ads:
        prices = ", ".join(f"{s}: {p} msat" for s, p in sorted(info.pricing_msat.items()))
        record = rep.get(info.provider, {})
        rows.append([esc(info.name), f"<code>{esc(nip19.npub_encode(info.provider)[:24])}…</code>",
                     esc(", ".join(info.schemas)), esc(prices),
                     esc(", ".join(f"{k} {v}" for k, v in sorted(info.limits.items()))[:300]),
                     esc(when(info.event.created_at)), _pulse((live or {}).get(info.provider)),
                     esc(", ".join(f"{k} {v}" for k, v in sorted(record.items())) or "-")])
    err = f'<p class="error">{esc(error)}</p>' if error else ""
    ad_html = table(["name", "provider", "schemas", "prices", "limits", "announced",
                     "liveness (NIP-SA)", "this buyer's record"], rows, "providers") if rows \
        else '<p class="empty">No provider announcement on the node\'s relays.</p>'
    known = [[f"<code>{esc(p[:16])}</code>",
              esc(", ".join(f"{k} {v}" for k, v in sorted(r.items())))]
             for p, r in sorted(rep.items())]
    rep_html = table(["provider", "verdicts"], known) if known \
        else '<p class="empty">This node has no verdict on any provider yet.</p>'
    return (f"<section><h2>Announcements (NIP-89)</h2>{err}{ad_html}</section>"
            f"<section><h2>Reputation (this buyer's verdicts)</h2>{rep_html}</section>")


def relay_section(stats: dict[str, int] | None, rates: list[tuple[float, float, float]]
                  ) -> str:
    """The embedded relay: counters updated live (``data-live``, filled by ``/live``), and
    events per second over the last hour."""
    if stats is None:
        return ('<section><h2>Embedded relay</h2><p class="empty">This process runs no relay'
                " (or the dashboard runs apart from it: `oa-node web`).</p></section>")
    ingest = f"{rates[-1][1]:.2f}" if rates else "-"
    fanout = f"{rates[-1][2]:.2f}" if rates else "-"
    items = dl([("connections", f'<span data-live="connections">{esc(stats["connections"])}'
                 "</span>"),
                ("events stored", f'<span data-live="events_stored">'
                 f'{esc(stats["events_stored"])}</span>'),
                ("ingest, events/s", f'<span data-live="ingest_rate">{esc(ingest)}</span>'),
                ("fan-out, events/s", f'<span data-live="fanout_rate">{esc(fanout)}</span>'),
                ("since start", f'<span data-live="events_ingested">'
                 f'{esc(stats["events_ingested"])}</span> new events, <span data-live='
                 f'"events_delivered">{esc(stats["events_delivered"])}</span> deliveries')])
    return (f'<section class="relay"><h2>Embedded relay <span class="live">live</span></h2>'
            f"{items}<h4>Events per second, last hour</h4>{rate_plot(rates)}</section>")


def rate_plot(rates: list[tuple[float, float, float]], width: int = 720,
              height: int = 160) -> str:
    """Two polylines (ingest, fan-out) over the last hour; time on x, events/s on y."""
    if len(rates) < 2:
        return '<p class="empty">Not enough samples yet (one every 10 s).</p>'
    now = rates[-1][0]
    top = max(max(r[1], r[2]) for r in rates) or 1.0
    left, bottom, plot_w, plot_h = 50, height - 20, width - 70, height - 40

    def pts(i: int) -> str:
        return " ".join(f"{left + plot_w * (1 - (now - r[0]) / 3600):.1f},"
                        f"{bottom - plot_h * r[i] / top:.1f}" for r in rates)

    return (f'<svg class="plot rates" role="img" aria-label="relay events per second"'
            f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
            ' xmlns="http://www.w3.org/2000/svg">'
            f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#888"/>'
            f'<line x1="{left}" y1="{bottom - plot_h}" x2="{left}" y2="{bottom}" stroke="#888"/>'
            f'<text x="{left - 4}" y="{bottom - plot_h + 4}" font-size="10" text-anchor="end">'
            f"{top:.1f}/s</text>"
            f'<text x="{left - 4}" y="{bottom}" font-size="10" text-anchor="end">0</text>'
            f'<text x="{left}" y="{height - 4}" font-size="10">-60 min</text>'
            f'<text x="{left + plot_w}" y="{height - 4}" font-size="10" text-anchor="end">now'
            "</text>"
            f'<polyline fill="none" stroke="#6c8ebf" stroke-width="1.5" points="{pts(1)}"/>'
            f'<polyline fill="none" stroke="#d79b00" stroke-width="1.5" points="{pts(2)}"/>'
            f'<text x="{left + 10}" y="12" font-size="11" fill="#6c8ebf">ingest</text>'
            f'<text x="{left + 70}" y="12" font-size="11" fill="#d79b00">fan-out</text></svg>')


# --- FROST -----------------------------------------------------------------------------------

def frost_page(status: dict[str, Any] | None, error: str = "") -> str:
    """The group this node holds a share of, and which holders answer a ping now."""
    from oa_node.nostr import nip19

    if status is None:
        return ('<section><p class="empty">This process holds no FROST share ([frostr] '
                f"enabled, or [node] signer = \"frost\").</p>{esc(error)}</section>")
    peers = status.get("peers") or []
    reachable = 1 + sum(1 for p in peers if p.get("online"))
    k, n = status.get("threshold"), status.get("members")
    can = isinstance(k, int) and reachable >= k
    head = dl([("group key", f"<code>{esc(status.get('group_public_key'))}</code>"),
               ("npub", f"<code>{esc(nip19.npub_encode(str(status.get('group_public_key'))))}"
                "</code>"),
               ("threshold", f"{esc(k)} of {esc(n)}"), ("this holder", esc(status.get("idx"))),
               ("reachable now", f"{reachable} of {esc(n)} (this one included): "
                + badge("can sign" if can else "cannot sign"))])
    rows = [[esc(status.get("idx")), "(this node)", badge("up"), ""]] + [
        [esc(p.get("idx")), f"<code>{esc(str(p.get('share_key'))[:16])}…</code>",
         badge("up" if p.get("online") else "down"),
         esc(p.get("rtt_ms") if p.get("online") else p.get("error"))] for p in peers]
    return (f"<section><h2>Group</h2>{head}</section>"
            f"<section><h2>Holders</h2>"
            f"{table(['idx', 'share key', 'ping', 'rtt ms / error'], rows)}</section>")
