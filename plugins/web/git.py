"""The GitAfter view: NIP-34 events on the node's relays, read as plain Nostr events
(repository announcements 30617, patches 1617, pull requests 1618, issues 1621, statuses
1630-1633, comments 1111/1622) and rendered as HTML here; nothing of the ``gitafter``
plugin is imported. Every field is an author's text: escaped where it is shown, a diff
line by line, bounded in size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .pages import badge, dl, esc, table, when

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.nostr.event import Event

REPO, PATCH, PULL, ISSUE, PULL_UPDATE = 30617, 1617, 1618, 1621, 1619
STATUS = {1630: "open", 1631: "applied", 1632: "closed", 1633: "draft"}
COMMENTS = (1111, 1622)
MAX_DIFF_CHARS = 200_000


@dataclass
class GitView:
    repos: list[Event] = field(default_factory=list)
    items: list[Event] = field(default_factory=list)  # patches, pull requests, issues
    statuses: list[Event] = field(default_factory=list)
    comments: list[Event] = field(default_factory=list)
    updates: list[Event] = field(default_factory=list)  # pull request updates (1619)
    error: str = ""

    def revisions_of(self, item: Event) -> list[Event]:
        """Later revisions of a proposal by its author: patches replying to it, or
        pull request updates naming it, oldest first."""
        pool = self.updates if item.kind == PULL else self.items
        return sorted((e for e in pool if e.id != item.id and e.pubkey == item.pubkey
                       and e.kind in (PATCH, PULL_UPDATE)
                       and (item.id in e.tag_values("e") or item.id in e.tag_values("E"))),
                      key=lambda e: e.created_at)
    def status_of(self, item: Event) -> str:
        """The newest status by the item's author or a repository owner it names."""
        owners = {item.pubkey} | {a.split(":")[1] for a in item.tag_values("a")
                                  if a.count(":") >= 2}
        best: Event | None = None
        for st in self.statuses:
            if item.id in st.tag_values("e") and st.pubkey in owners and (
                    best is None or st.created_at > best.created_at):
                best = st
        return STATUS[best.kind] if best is not None else "open"

    def comments_on(self, item: Event) -> list[Event]:
        return sorted((c for c in self.comments if item.id in c.tag_values("E")
                       or item.id in c.tag_values("e")), key=lambda c: c.created_at)


class GitEvents:
    """The NIP-34 events on the node's relays, asked at most every ``every`` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._at = 0.0
        self._view = GitView()

    async def get(self, node: Node) -> GitView:
        if time.time() - self._at < self.every:
            return self._view
        self._at = time.time()
        if not node.config["node"]["relays"]:
            return GitView(error="no relays configured ([node] relays)")
        try:
            events = await node.pool.query([
                {"kinds": [REPO], "limit": 200},
                {"kinds": [PATCH, PULL, ISSUE, PULL_UPDATE], "limit": 500},
                {"kinds": sorted(STATUS), "limit": 1000}, {"kinds": list(COMMENTS), "limit": 1000},
            ], 5.0, max_events=3000)
        except Exception as exc:  # an unreachable relay is shown, not raised
            self._view.error = f"{type(exc).__name__}: {exc}"[:200]
            return self._view
        view = GitView()
        newest_repo: dict[tuple[str, str], Event] = {}
        for ev in events:
            if not ev.verify():
                continue
            if ev.kind == REPO:
                key = (ev.pubkey, ev.first_tag_value("d") or "")
                if key not in newest_repo or newest_repo[key].created_at < ev.created_at:
                    newest_repo[key] = ev
            elif ev.kind in (PATCH, PULL, ISSUE):
                view.items.append(ev)
            elif ev.kind == PULL_UPDATE:
                view.updates.append(ev)
            elif ev.kind in STATUS:
                view.statuses.append(ev)
            elif ev.kind in COMMENTS:
                view.comments.append(ev)
        view.repos = sorted(newest_repo.values(), key=lambda e: -e.created_at)
        view.items.sort(key=lambda e: -e.created_at)
        self._view = view
        return view


def _title(ev: Event) -> str:
    subject = ev.first_tag_value("subject")
    if subject:
        return subject
    for line in ev.content.splitlines():  # a patch: its "Subject:" line
        if line.startswith("Subject:"):
            return line[len("Subject:"):].strip()
    return ev.content.strip().splitlines()[0][:120] if ev.content.strip() else "(untitled)"


def _repo_of(ev: Event) -> str:
    for a in ev.tag_values("a"):
        parts = a.split(":", 2)
        if len(parts) == 3 and parts[0] == str(REPO):
            return parts[2]
    return ""


KIND_WORD = {PATCH: "patch", PULL: "pull request", ISSUE: "issue"}


def git_page(view: GitView) -> str:
    err = f'<p class="error">{esc(view.error)}</p>' if view.error else ""
    repos = [[esc(r.first_tag_value("name") or r.first_tag_value("d")),
              esc(r.first_tag_value("description") or ""),
              f"<code>{esc(', '.join(r.tag_values('clone')))}</code>",
              f"<code>{esc(r.pubkey[:16])}</code>", esc(when(r.created_at))] for r in view.repos]
    repo_html = table(["repository", "description", "clone", "maintainer", "announced"], repos) \
        if repos else '<p class="empty">No repository announced on the node\'s relays.</p>'
    rows = [[f'<a href="/git/{esc(ev.id)}">{esc(KIND_WORD[ev.kind])}</a>',
             f'<span class="title">{esc(_title(ev)[:300])}</span>', esc(_repo_of(ev)),
             badge(view.status_of(ev)), esc(len(view.comments_on(ev))),
             f"<code>{esc(ev.pubkey[:16])}</code>", esc(when(ev.created_at))]
            for ev in view.items]
    item_html = table(["kind", "title", "repository", "status", "comments", "author", "when"],
                      rows) if rows else '<p class="empty">No proposal or issue yet.</p>'
    return (f"<section><h2>Repositories</h2>{err}{repo_html}</section>"
            f"<section><h2>Proposals and issues</h2>{item_html}</section>")


def item_page(view: GitView, ev: Event) -> str:
    head = dl([("kind", esc(KIND_WORD[ev.kind])), ("title", f'<span class="title">'
               f"{esc(_title(ev))}</span>"), ("repository", esc(_repo_of(ev))),
               ("status", badge(view.status_of(ev))), ("author", f"<code>{esc(ev.pubkey)}</code>"),
               ("when", esc(when(ev.created_at))), ("event", f"<code>{esc(ev.id)}</code>")])
    if ev.kind == PATCH:
        body = f"<h2>Diff</h2>{render_diff(ev.content)}"
    elif ev.kind == PULL:
        body = dl([("clone", f"<code>{esc(', '.join(ev.tag_values('clone')))}</code>"),
                   ("commit", f"<code>{esc(ev.first_tag_value('c') or '')}</code>")]) + \
            f'<pre class="text">{esc(ev.content[:MAX_DIFF_CHARS])}</pre>'
    else:
        body = f'<pre class="text">{esc(ev.content[:MAX_DIFF_CHARS])}</pre>'
    revs = [[esc(when(r.created_at)), f'<a href="/git/{esc(r.id)}"><code>{esc(r.id[:16])}</code>'
             "</a>" if r.kind == PATCH else f"<code>{esc(r.id[:16])}</code>",
             esc(_title(r)[:200]) if r.kind == PATCH else
             f"<code>{esc(r.first_tag_value('c') or '')}</code>"] for r in view.revisions_of(ev)]
    if ev.kind != ISSUE:
        body += "<h2>Revisions</h2>" + (table(["when", "event", "title or commit"], revs,
                                              "revisions") if revs
                                        else '<p class="empty">None.</p>')
    comments = "".join(
        f'<article class="comment"><p><code>{esc(c.pubkey[:16])}</code> · {esc(when(c.created_at))}'
        f'</p><pre class="text">{esc(c.content[:20_000])}</pre></article>'
        for c in view.comments_on(ev)) or '<p class="empty">No comment.</p>'
    return (f"<section>{head}</section><section>{body}</section>"
            f"<section><h2>Comments</h2>{comments}</section>")


def render_diff(text: str) -> str:
    """A format-patch or unified diff, one escaped line per row, coloured by its kind."""
    if len(text) > MAX_DIFF_CHARS:
        text = text[:MAX_DIFF_CHARS] + "\n… (cut)"
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---", "diff --git", "index ")):
            cls = "meta"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append(f'<span class="{cls}">{esc(line)}</span>')
    return '<pre class="diff">' + "\n".join(out) + "</pre>"


def find(view: GitView, event_id: str) -> Any:
    return next((ev for ev in view.items if ev.id == event_id), None)
