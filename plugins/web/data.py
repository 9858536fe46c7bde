"""What the dashboard shows, read without changing anything: the node's public API, the job
ledgers the buyer and provider keep in the data dir (documented in docs/ARCHITECTURE.md,
read through :class:`oa_node.ledger.LedgerReader`, ``mode=ro``), and live capabilities.

Every value that came from a relay, a provider or a wallet is hostile: it is returned as
data (never markup) and the pages escape it; result documents are parsed as JSON objects
only, and anything else is reported as unreadable.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oa_node.ledger import BUYER_JOBS, PROVIDER_JOBS, LedgerReader, Record

if TYPE_CHECKING:
    from oa_node.node import Node



def buyer_ledger(node: Node) -> LedgerReader:
    return LedgerReader(node.data_dir / BUYER_JOBS[0], BUYER_JOBS[1])


def provider_ledger(node: Node) -> LedgerReader:
    return LedgerReader(node.data_dir / PROVIDER_JOBS[0], PROVIDER_JOBS[1])


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


@dataclass
class Latency:
    """Where a buyer's job spent its time, seconds (``None``: that step did not happen)."""

    job_id: str
    publish: float | None = None
    provider: float | None = None  # from publication to the first result, less the sandbox
    sandbox: float | None = None  # the runs' durations as the result reports them
    verify: float | None = None
    payment: float | None = None

    def parts(self) -> list[tuple[str, float]]:
        return [(k, v) for k in ("publish", "provider", "sandbox", "verify", "payment")
                if (v := getattr(self, k)) is not None and v >= 0]


@dataclass
class ResultView:
    result_id: str
    provider: str
    valid: Any
    problems: list[Any]
    verdict: Any
    payment: Any
    refusal: Any
    doc: dict[str, Any] | None = None
    unreadable: str | None = None
    received_at: float | None = None
    trajectory: Any = None  # oa_node.trajectory.TrajectoryRef the result carries
    audit: Any = None  # its TrajectoryReport, or the error text reading it


@dataclass
class JobView:
    record: Record
    history: list[Any]
    results: list[ResultView] = field(default_factory=list)


def history_at(history: list[Any], state: str) -> float | None:
    for h in history:
        if h.to_state == state:
            return float(h.at)
    return None


async def buyer_job(node: Node, job_id: str) -> JobView | None:
    """A buyer job with its results, decrypted with the node's key when encrypted."""
    from oa_node.nostr import nip90
    from oa_node.nostr.errors import ProtocolError
    from oa_node.nostr.event import Event
    from oa_node.trajectory import TrajectoryRef

    reader = buyer_ledger(node)
    rec = reader.get(job_id)
    if rec is None:
        return None
    view = JobView(rec, reader.history(job_id))
    data = rec.data
    results = data.get("results") if isinstance(data.get("results"), dict) else {}
    for rid, r in results.items():
        r = r if isinstance(r, dict) else {}
        check = r.get("check") if isinstance(r.get("check"), dict) else {}
        entry = ResultView(
            str(rid), str(check.get("provider") or ""), check.get("ok"),
            list(check.get("problems") or []) if isinstance(check.get("problems"), list)
            else [], _get(data, "verdicts", rid), _get(data, "payments", rid),
            _get(data, "refusals", rid), received_at=_num(r.get("received_at")))
        try:
            event = Event.from_dict(r["event"])
            entry.trajectory = TrajectoryRef.from_tags(event.tags, event.pubkey)
            entry.doc = await nip90.result_document(event, node.signer.nip44_decrypt)
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            entry.unreadable = f"{type(exc).__name__}: {exc}"
        view.results.append(entry)
    return view


async def audit_trajectories(node: Node, view: JobView, timeout: float = 5.0) -> None:
    """Read and check each result's trajectory on the node's relays only (a hint naming
    another relay is not followed): steps in order, gaps, the chain, the hash."""
    from oa_node.trajectory import read_ref

    for r in view.results:
        if r.trajectory is None or not node.config["node"]["relays"]:
            continue
        try:
            r.audit = await read_ref(node.pool, r.trajectory, timeout=timeout)
        except Exception as exc:  # unreadable is a finding, shown as such
            r.audit = f"{type(exc).__name__}: {exc}"[:300]


def _get(data: dict[str, Any], name: str, key: str) -> Any:
    table = data.get(name)
    return table.get(key) if isinstance(table, dict) else None


def latency(view: JobView) -> Latency:
    """The split of one finished buyer job, from its ledger timestamps and its result."""
    data, hist = view.record.data, view.history
    out = Latency(view.record.id)
    submitted, published = _num(data.get("submitted_at")), _num(data.get("published_at"))
    first = _num(data.get("first_result_at"))
    decided = history_at(hist, "verified") or history_at(hist, "rejected")
    paid = history_at(hist, "paid") or history_at(hist, "refused")
    if submitted is not None and published is not None:
        out.publish = published - submitted
    sandbox = 0.0
    for r in view.results:
        runs = (r.doc or {}).get("runs")
        for run in runs if isinstance(runs, list) else []:
            ms = _num(run.get("duration_ms")) if isinstance(run, dict) else None
            sandbox += (ms or 0.0) / 1000.0
        break  # the first result's runs
    if published is not None and first is not None:
        out.sandbox = sandbox
        out.provider = max(first - published - sandbox, 0.0)
    if first is not None and decided is not None:
        out.verify = decided - first
    if decided is not None and paid is not None:
        out.payment = paid - decided
    return out


async def recent_latencies(node: Node, limit: int = 30) -> list[Latency]:
    out = []
    for rec in buyer_ledger(node).all(limit):
        if rec.state in ("paid", "refused", "rejected", "verified"):
            view = await buyer_job(node, rec.id)
            if view is not None:
                out.append(latency(view))
    return list(reversed(out))


@dataclass
class RelayHealth:
    url: str
    ok: bool
    detail: str
    checked_at: float


class RelayProbe:
    """Each configured relay's reachability (a websocket opened and closed), at most once
    every ``every`` seconds per relay so page loads do not hammer relays."""

    def __init__(self, every: float = 15.0) -> None:
        self.every = every
        self._cache: dict[str, RelayHealth] = {}

    async def check(self, urls: list[str]) -> list[RelayHealth]:
        import anyio
        import websockets

        out = []
        for url in urls:
            known = self._cache.get(url)
            if known is not None and time.time() - known.checked_at < self.every:
                out.append(known)
                continue
            t0 = time.perf_counter()
            try:
                with anyio.fail_after(3):
                    async with websockets.connect(url, open_timeout=3, close_timeout=1):
                        pass
                health = RelayHealth(url, True, f"{(time.perf_counter() - t0) * 1000:.0f} ms",
                                     time.time())
            except Exception as exc:  # any failure is the relay's health, shown as such
                health = RelayHealth(url, False, f"{type(exc).__name__}: {exc}"[:200],
                                     time.time())
            self._cache[url] = health
            out.append(health)
        return out


async def wallet_balance(node: Node) -> tuple[int | None, str]:
    """The default wallet's balance (msat) and how it went; never a secret."""
    from oa_node.wallet import Wallet

    wallet = node.capability(Wallet)
    if wallet is None:
        return None, "no wallet in this process (run the dashboard in `oa-node start`)"
    import anyio

    try:
        with anyio.fail_after(10):
            return int(await wallet.get_balance()), "ok"
    except Exception as exc:  # a wallet's error text is shown escaped, never a URI
        from oa_node.redact import redact

        return None, redact(f"{type(exc).__name__}: {exc}")[:200]


class ProviderAds:
    """The providers' NIP-89 announcements (31990) on the node's relays: the newest valid,
    unexpired one per (provider, d), asked at most once every ``every`` seconds."""

    def __init__(self, every: float = 15.0) -> None:
        self.every = every
        self._at = 0.0
        self._ads: list[Any] = []
        self.error = ""
        self.liveness: dict[str, Liveness] = {}

    async def get(self, node: Node) -> list[Any]:
        from oa_node.nostr import nip90

        if time.time() - self._at < self.every:
            return self._ads
        self._at = time.time()
        if not node.config["node"]["relays"]:
            self.error = "no relays configured ([node] relays)"
            return []
        try:
            events = await node.pool.query({"kinds": [31990], "limit": 500}, 5.0)
            self.error = ""
        except Exception as exc:  # an unreachable relay is shown, not raised
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            return self._ads
        self._ads = nip90.newest_handlers(events)
        self.liveness = await provider_liveness(node, sorted({i.provider for i in self._ads}))
        return self._ads


def reputation(records: list[Record]) -> dict[str, dict[str, int]]:
    """This buyer's record of each provider from its own ledger: verdicts on their results
    (``pass`` by level, ``fail``, ``undecided``) and refused invoices."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        d = rec.data
        results = d.get("results") if isinstance(d.get("results"), dict) else {}
        verdicts = d.get("verdicts") if isinstance(d.get("verdicts"), dict) else {}
        refusals = d.get("refusals") if isinstance(d.get("refusals"), dict) else {}
        for rid, r in results.items():
            check = r.get("check") if isinstance(r, dict) else None
            who = str(check.get("provider") or "") if isinstance(check, dict) else ""
            if not who:
                continue
            row = out.setdefault(who, {})
            verdict = verdicts.get(rid)
            if verdict == "pass":
                key = f"pass {d.get('level') or '?'}"
            elif verdict is not None:
                key = str(verdict)
            else:
                continue
            row[key] = row.get(key, 0) + 1
            if rid in refusals:
                row["refused"] = row.get("refused", 0) + 1
    return out


class RelaySampler:
    """The embedded relay's counters sampled every ``every`` seconds for the last hour, so
    the node page can plot events per second (ingest and fan-out) without asking the relay
    for history it does not keep."""

    def __init__(self, every: float = 10.0, span: float = 3600.0) -> None:
        from collections import deque

        self.every = every
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=int(span / every) + 1)

    async def run(self, node: Node) -> None:
        import anyio

        while True:
            stats = await relay_stats(node)
            if stats is not None:
                self.samples.append((time.time(), stats["events_ingested"],
                                     stats["events_delivered"]))
            await anyio.sleep(self.every)

    def rates(self) -> list[tuple[float, float, float]]:
        """``(time, ingest/s, fan-out/s)`` between consecutive samples."""
        s = list(self.samples)
        return [(t1, max(i1 - i0, 0) / (t1 - t0), max(d1 - d0, 0) / (t1 - t0))
                for (t0, i0, d0), (t1, i1, d1) in itertools.pairwise(s) if t1 > t0]


async def relay_stats(node: Node) -> dict[str, int] | None:
    """The embedded relay's counters (``oa_node.relaystats``), ``None`` when this process
    runs no relay."""
    from oa_node.relaystats import RelayStats

    stats = node.capability(RelayStats)
    if stats is None:
        return None
    raw = await stats.relay_stats()
    return {k: int(raw.get(k, 0)) for k in ("connections", "events_stored", "events_ingested",
                                             "events_delivered")}


#: a provider whose promised heartbeat has been silent this many beats is shown stale
STALE_FACTOR = 3.0


@dataclass
class Liveness:
    heartbeat: int | None = None  # promised by an active NIP-SA schedule (39202)
    last_alive: int | None = None  # its newest schedule or tick (39210/39211)

    def stale(self, now: float) -> bool:
        if self.heartbeat is None:
            return False
        return self.last_alive is None or now - self.last_alive > STALE_FACTOR * self.heartbeat


def liveness(events: list[Any], pubkeys: set[str]) -> dict[str, Liveness]:
    """Each provider's NIP-SA pulse from ``events``: only events it signed, unexpired and
    well formed count, so a relay cannot vouch for a provider."""
    from oa_node.nostr import kinds
    from oa_node.nostr.errors import ProtocolError
    from oa_node.nostr.nip40 import is_expired
    from oa_node.nostr.nipsa import SCHEDULE_D, AgentSchedule, TickRequest, TickResult

    out = {pk: Liveness() for pk in pubkeys}
    schedule_at: dict[str, int] = {}
    for ev in events:
        if ev.pubkey not in pubkeys or is_expired(ev) or not ev.verify():
            continue
        live = out[ev.pubkey]
        try:
            if ev.kind == kinds.AGENT_SCHEDULE and ev.d_tag == SCHEDULE_D:
                schedule = AgentSchedule.from_event(ev)
                if ev.created_at >= schedule_at.get(ev.pubkey, -1):
                    schedule_at[ev.pubkey] = ev.created_at
                    live.heartbeat = schedule.heartbeat if schedule.active else None
            elif ev.kind == kinds.TICK_REQUEST:
                TickRequest.from_event(ev)
            elif ev.kind == kinds.TICK_RESULT:
                TickResult.from_event(ev)
            else:
                continue
        except ProtocolError:
            continue
        live.last_alive = max(live.last_alive or 0, ev.created_at)
    return out


async def provider_liveness(node: Node, pubkeys: list[str]) -> dict[str, Liveness]:
    from oa_node.nostr import kinds
    from oa_node.nostr.nipsa import SCHEDULE_D

    if not pubkeys:
        return {}
    filters: list[dict[str, Any]] = [
        {"kinds": [kinds.AGENT_SCHEDULE], "authors": pubkeys[:50], "#d": [SCHEDULE_D]}]
    filters += [{"kinds": [kinds.TICK_REQUEST, kinds.TICK_RESULT], "authors": [pk],
                 "limit": 2} for pk in pubkeys[:9]]
    try:
        events = await node.pool.query(filters, 5.0)
    except Exception:  # unknown liveness is shown as unknown
        return {}
    return liveness(events, set(pubkeys))
