"""The pure NIP-34 module: event shapes, parsing of hostile input, threading and status rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import generate_secret_key, public_key_hex
from oa_node.plugins.gitafter import nip34
from oa_node.plugins.gitafter.nip34 import (
    CommitObject,
    Committer,
    Nip34Error,
    RepoRef,
    TrajectoryRef,
)

OWNER = generate_secret_key()
CO = generate_secret_key()  # a co-maintainer
AUTHOR = generate_secret_key()
STRANGER = generate_secret_key()
REPO = RepoRef("demo", public_key_hex(OWNER), name="Demo", relays=("ws://127.0.0.1:1",),
               maintainers=(public_key_hex(CO),), euc="e" * 40, clone=("https://x/demo.git",))


def sign(secret: bytes, t: EventTemplate, created_at: int = 1_700_000_000) -> Event:
    if t.created_at is None:
        t.created_at = created_at
    return sign_event(t, secret)


def patch_text(commit: str = "a" * 40, subject: str = "[PATCH 1/2] fix it") -> str:
    return (f"From {commit} Mon Sep 17 00:00:00 2001\nFrom: A <a@x>\nDate: Tue, 1 Jan 2030 "
            f"00:00:00 +0000\nSubject: {subject}\n\n---\n a.txt | 1 +\n\ndiff --git a/a.txt "
            "b/a.txt\n")


COMMITTER = Committer("A", "a@x", 1_700_000_000, -90)


def commit_obj(commit: str, parent: str = "b" * 40, sig: str = "") -> CommitObject:
    return CommitObject(commit, "c" * 40, (parent,), COMMITTER, sig)


def tags_named(e: Event | EventTemplate, name: str) -> list[list[str]]:
    return [t for t in e.tags if t[0] == name]


# --- announcement and state ---------------------------------------------------------------------


def test_announcement_round_trip() -> None:
    ev = sign(OWNER, REPO.to_template())
    assert ev.kind == 30617 and ["r", "e" * 40, "euc"] in ev.tags
    assert ["relays", "ws://127.0.0.1:1"] in ev.tags
    assert ["maintainers", public_key_hex(CO)] in ev.tags
    back = RepoRef.from_event(ev)
    assert back == REPO
    assert back.coordinate == f"30617:{public_key_hex(OWNER)}:demo"
    assert back.all_maintainers == {public_key_hex(OWNER), public_key_hex(CO)}


def test_personal_fork_owner_is_not_a_maintainer() -> None:
    fork = RepoRef("demo", public_key_hex(AUTHOR), personal_fork=True)
    back = RepoRef.from_event(sign(AUTHOR, fork.to_template()))
    assert back.personal_fork and back.all_maintainers == frozenset()


def test_announcement_errors() -> None:
    with pytest.raises(Nip34Error, match="no 'd' tag"):
        RepoRef.from_event(sign(OWNER, EventTemplate(30617, "", [["name", "x"]])))
    with pytest.raises(Nip34Error, match="not a repository"):
        RepoRef.from_event(sign(OWNER, EventTemplate(1, "", [["d", "x"]])))
    with pytest.raises(Nip34Error, match="repository address"):
        nip34.parse_coordinate("30617:nothex:demo")
    for kind in ("\u00b2", "9" * 5000):  # isdigit() but not an int() we can take
        with pytest.raises(Nip34Error, match="repository address"):
            nip34.parse_coordinate(f"{kind}:{REPO.owner}:demo")


def test_state_event() -> None:
    t = nip34.state_template("demo", {"refs/heads/main": "a" * 40, "refs/tags/v1": "b" * 40},
                             "refs/heads/main")
    assert t.tags == [["d", "demo"], ["refs/heads/main", "a" * 40], ["refs/tags/v1", "b" * 40],
                      ["HEAD", "ref: refs/heads/main"]]
    refs, head = nip34.parse_state(sign(OWNER, t))
    assert refs == {"refs/heads/main": "a" * 40, "refs/tags/v1": "b" * 40}
    assert head == "ref: refs/heads/main"
    with pytest.raises(Nip34Error):
        nip34.state_template("demo", {"refs/remotes/x": "a" * 40}, None)


# --- patches ----------------------------------------------------------------------------------


def test_patch_threading_tags() -> None:
    root = sign(AUTHOR, nip34.patch_template(REPO, patch_text(), commit=commit_obj("a" * 40)))
    assert ["t", "root"] in root.tags and not tags_named(root, "e")
    assert ["a", REPO.coordinate] in root.tags
    assert ["r", "e" * 40] in root.tags and ["r", "e" * 40, "euc"] not in root.tags
    assert ["p", REPO.owner] in root.tags
    assert ["commit", "a" * 40] in root.tags and ["r", "a" * 40] in root.tags
    assert ["parent-commit", "b" * 40] in root.tags
    assert ["committer", "A", "a@x", "1700000000", "-90"] in root.tags
    assert ["commit-pgp-sig", ""] in root.tags
    second = nip34.patch_template(REPO, patch_text("d" * 40), commit=commit_obj("d" * 40),
                                  thread_root=root.id, reply_to=root.id)
    assert tags_named(second, "e") == [["e", root.id, "", "root"], ["e", root.id, "", "reply"]]
    assert ["t", "root"] not in second.tags
    rev = nip34.patch_template(REPO, patch_text(), commit=None, revision_of=root.id,
                               cover_letter=True)
    assert ["t", "root"] in rev.tags and ["t", "root-revision"] in rev.tags
    assert ["e", root.id, "", "reply"] in rev.tags and ["t", "cover-letter"] in rev.tags


@pytest.mark.parametrize(("content", "tags", "message"), [
    ("just words", [], "not `git format-patch` output"),
    ("From " + "a" * 40 + " Mon Sep 17 00:00:00 2001\nFrom: x\n\nbody", [], "no 'Subject:'"),
    (patch_text(), [["commit", "zz"]], "is not a commit id"),
    (patch_text(), [["commit", "f" * 40]], "'commit' tag says ffffffffffff"),
    (patch_text(), [["parent-commit", "nope"]], "'parent-commit'"),
    (patch_text(), [["committer", "A", "a@x"]], "'committer' tag"),
    (patch_text(), [["committer", "A", "a@x", "soon", "0"]], "'committer' tag"),
    # str.isdigit() takes these but int() does not; a huge value breaks int() or git's date
    (patch_text(), [["committer", "A", "a@x", "\u00b2", "0"]], "'committer' tag"),
    (patch_text(), [["committer", "A", "a@x", "1700000000", "-\u00b3"]], "'committer' tag"),
    (patch_text(), [["committer", "A", "a@x", "9" * 5000, "0"]], "'committer' tag"),
    (patch_text(), [["committer", "A", "a@x", "1700000000", "6000"]], "'committer' tag"),
])
def test_malformed_patches(content: str, tags: list[list[str]], message: str) -> None:
    ev = sign(AUTHOR, EventTemplate(1617, content, [["t", "root"], *tags]))
    with pytest.raises(Nip34Error, match=message) as info:
        nip34.parse_patch(ev, "1/3")
    assert str(info.value).startswith(f"patch {ev.id[:8]} (1/3)")


def test_parse_patch_fields() -> None:
    ev = sign(AUTHOR, nip34.patch_template(
        REPO, patch_text(subject="[PATCH 1/2] a very\n long subject"), commit=commit_obj(
            "a" * 40, sig="-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----"),
        trajectory=TrajectoryRef("s1", "ws://r", "0" * 64)))
    p = nip34.parse_patch(ev)
    assert p.subject == "[PATCH 1/2] a very long subject"
    assert nip34.strip_patch_prefix(p.subject) == "a very long subject"
    assert p.commit == "a" * 40 and p.parent_commit == "b" * 40 and p.committer == COMMITTER
    assert p.pgp_sig.startswith("-----BEGIN PGP") and p.is_root and not p.is_revision_root
    assert p.trajectory == TrajectoryRef("s1", "ws://r", "0" * 64)


def test_committer_dates_and_identities() -> None:
    assert COMMITTER.git_date == "1700000000 -0130"
    assert Committer("x", "y", 5, 330).git_date == "5 +0530"
    c = nip34.parse_git_identity("Jane Doe <jane@x.org> 1700000000 -0230")
    assert c == Committer("Jane Doe", "jane@x.org", 1_700_000_000, -150)
    with pytest.raises(Nip34Error):
        nip34.parse_git_identity("no email 12")


def test_commit_object_with_signature() -> None:
    raw = ("tree " + "1" * 40 + "\nparent " + "2" * 40 + "\nauthor A <a@x> 1 +0000\n"
           "committer B <b@x> 2 +0100\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n"
           " -----END PGP SIGNATURE-----\n\nmessage\n")
    obj = nip34.parse_commit_object("3" * 40, raw)
    assert obj.tree == "1" * 40 and obj.parents == ("2" * 40,)
    assert obj.committer == Committer("B", "b@x", 2, 60)
    assert obj.pgp_sig == "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----"


def make_series(n: int, secret: bytes = AUTHOR, base_time: int = 1_700_000_000) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        sha = f"{i + 1:040x}"
        t = nip34.patch_template(REPO, patch_text(sha), commit=commit_obj(sha),
                                 thread_root=out[0].id if out else None,
                                 reply_to=out[-1].id if out else None)
        out.append(sign(secret, t, base_time + i))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.randoms(use_true_random=False))
def test_series_order_independent_of_arrival(n: int, rnd: random.Random) -> None:
    chain = make_series(n)
    shuffled = chain[:]
    rnd.shuffle(shuffled)
    assert nip34.series(chain[0], shuffled) == chain


def test_series_takes_newest_child_and_ignores_other_threads() -> None:
    chain = make_series(3)
    # A later replacement for patch 2, and a patch from another thread.
    alt = sign(AUTHOR, nip34.patch_template(REPO, patch_text("9" * 40), commit=None,
                                            thread_root=chain[0].id, reply_to=chain[0].id),
               1_700_000_100)
    other = make_series(2, base_time=1_600_000_000)
    got = nip34.series(chain[0], [*chain, alt, *other])
    assert got == [chain[0], alt]


# --- statuses ----------------------------------------------------------------------------------


def status(secret: bytes, kind: int, root: Event, at: int, **kw: object) -> Event:
    return sign(secret, nip34.status_template(kind, root, REPO, **kw), at)  # type: ignore[arg-type]


def test_status_resolution() -> None:
    root = make_series(1)[0]
    maint = REPO.all_maintainers
    assert nip34.resolve_status(root, [], maint).name == "open"
    merged = status(OWNER, 1631, root, 10)
    stranger_close = status(STRANGER, 1632, root, 20)
    assert nip34.resolve_status(root, [merged, stranger_close], maint).event == merged
    co_draft = status(CO, 1633, root, 30)
    assert nip34.resolve_status(root, [merged, stranger_close, co_draft], maint).name == "draft"
    author_close = status(AUTHOR, 1632, root, 40)
    assert nip34.resolve_status(root, [co_draft, author_close, merged], maint).name == "closed"
    # A status about another root does not count, nor one that only replies to this one.
    other = make_series(1, base_time=1)[0]
    reply_only = sign(OWNER, EventTemplate(1632, "", [["e", other.id, "", "root"],
                                                      ["e", root.id, "", "reply"]]), 50)
    assert nip34.resolve_status(root, [merged, reply_only], maint).event == merged
    # ...but an unmarked e tag (some clients) does.
    unmarked = sign(OWNER, EventTemplate(1630, "", [["e", root.id]]), 60)
    assert nip34.resolve_status(root, [merged, unmarked], maint).event == unmarked


def test_revision_closed_when_root_applied_without_it() -> None:
    root = make_series(1)[0]
    rev = sign(AUTHOR, nip34.patch_template(REPO, patch_text(), commit=None,
                                            revision_of=root.id), 5)
    merged = status(OWNER, 1631, root, 10)
    assert nip34.resolve_status(root, [merged], REPO.all_maintainers, revision=rev).name \
        == "closed"
    merged_rev = status(OWNER, 1631, root, 11, revision=rev)
    assert nip34.resolve_status(root, [merged_rev], REPO.all_maintainers,
                                revision=rev).name == "applied"


def test_applied_status_tags_and_ngit_spelling() -> None:
    root = make_series(2)
    t = nip34.status_template(1631, root[0], REPO, applied_commits=["1" * 40, "2" * 40],
                              applied_patches=root, merge_commit="3" * 40)
    assert ["applied-as-commits", "1" * 40, "2" * 40] in t.tags
    assert ["merge-commit", "3" * 40] in t.tags and ["r", "3" * 40] in t.tags
    assert ["q", root[1].id, "", root[1].pubkey] in t.tags
    assert ["e", root[0].id, "", "root"] in t.tags and ["a", REPO.coordinate] in t.tags
    ngit = sign(OWNER, EventTemplate(1631, "", [["e", root[0].id, "", "root"],
                                                ["merge-commit-id", "4" * 40]]))
    assert nip34.Status(1631, ngit).merge_commit == "4" * 40
    with pytest.raises(Nip34Error):
        nip34.status_template(1631, root[0], REPO, merge_commit="nope")
    with pytest.raises(Nip34Error):
        nip34.status_template(1700, root[0], REPO)


def test_next_created_at() -> None:
    evs = make_series(2, base_time=100)
    assert nip34.next_created_at(50, evs) == 102
    assert nip34.next_created_at(500, evs) == 500


# --- proposals -----------------------------------------------------------------------------------


def test_proposal_revisions_only_from_author_or_maintainers() -> None:
    chain = make_series(2)
    hijack = sign(STRANGER, nip34.patch_template(REPO, patch_text("7" * 40), commit=None,
                                                 revision_of=chain[0].id), 1_800_000_000)
    prop = nip34.build_proposal(chain[0], [*chain, hijack], REPO.all_maintainers)
    assert prop.revision is None and [p.id for p in prop.patches] == [e.id for e in chain]
    own = sign(AUTHOR, nip34.patch_template(REPO, patch_text("8" * 40), commit=None,
                                            revision_of=chain[0].id), 1_700_000_500)
    prop = nip34.build_proposal(chain[0], [*chain, hijack, own], REPO.all_maintainers)
    assert prop.revision == own and [p.id for p in prop.patches] == [own.id]
    assert nip34.find_roots([*chain, hijack, own]) == [chain[0]]


def test_pull_request_and_updates() -> None:
    t = nip34.pr_template(REPO, subject="Big", description="desc", tip="1" * 40,
                          clone=["file:///fork"], branch_name="feat", merge_base="2" * 40)
    pr_ev = sign(AUTHOR, t)
    assert nip34.is_proposal_root(pr_ev)
    pr = nip34.parse_pr(pr_ev)
    assert (pr.tip, pr.clone, pr.branch_name, pr.merge_base) == \
        ("1" * 40, ("file:///fork",), "feat", "2" * 40)
    upd = sign(AUTHOR, nip34.pr_update_template(REPO, pr_ev, tip="3" * 40,
                                                clone=["file:///fork2"], merge_base=None),
               2_000_000_000)
    assert ["E", pr_ev.id] in upd.tags and ["P", pr_ev.pubkey] in upd.tags
    forged = sign(STRANGER, nip34.pr_update_template(REPO, pr_ev, tip="4" * 40,
                                                     clone=["file:///evil"], merge_base=None),
                  2_100_000_000)
    moved = nip34.apply_updates(pr, [upd, forged], REPO.all_maintainers)
    assert moved.tip == "3" * 40 and moved.updated_by == upd
    assert moved.clone[0] == "file:///fork2"
    assert moved.fetch_refs == [f"refs/nostr/{upd.id}", f"refs/nostr/{pr_ev.id}"]
    with pytest.raises(Nip34Error, match="clone URL"):
        nip34.pr_template(REPO, subject="x", description="", tip="1" * 40, clone=[],
                          branch_name=None, merge_base=None)
    no_tip = sign(AUTHOR, EventTemplate(1618, "", [["clone", "x"]]))
    with pytest.raises(Nip34Error, match="'c'"):
        nip34.parse_pr(no_tip)


def test_pr_as_revision_of_patches() -> None:
    chain = make_series(1)
    pr_ev = sign(AUTHOR, nip34.pr_template(REPO, subject="now a PR", description="",
                                           tip="5" * 40, clone=["u"], branch_name=None,
                                           merge_base=None, revision_of=chain[0].id), 2_000_000_000)
    assert not nip34.is_proposal_root(pr_ev)
    prop = nip34.build_proposal(chain[0], [chain[0], pr_ev], REPO.all_maintainers)
    assert prop.kind == "pr" and prop.pr is not None and prop.pr.tip == "5" * 40


# --- issues, comments, trajectories --------------------------------------------------------------


def test_issue_and_comment_tags() -> None:
    issue = sign(AUTHOR, nip34.issue_template(REPO, subject=" Bug ", content="text",
                                              labels=["bug"]))
    parsed = nip34.parse_issue(issue)
    assert parsed.subject == "Bug" and parsed.labels == ("bug",)
    c1 = sign(OWNER, nip34.comment_template(issue, issue, "first"), 10)
    assert c1.kind == 1111
    assert ["E", issue.id, "", issue.pubkey] in c1.tags and ["K", "1621"] in c1.tags
    assert ["P", issue.pubkey] in c1.tags and ["e", issue.id, "", issue.pubkey] in c1.tags
    assert ["k", "1621"] in c1.tags and ["p", issue.pubkey] in c1.tags
    c2 = sign(AUTHOR, nip34.comment_template(issue, c1, "second"), 20)
    assert ["e", c1.id, "", c1.pubkey] in c2.tags and ["k", "1111"] in c2.tags
    assert nip34.comments_for(issue, [c2, c1]) == [c1, c2]
    assert nip34.comment_parent(c2) == c1.id
    with pytest.raises(Nip34Error):
        nip34.comment_template(issue, issue, "  ")
    with pytest.raises(Nip34Error):
        nip34.issue_template(REPO, subject="", content="")


def test_trajectory_tags() -> None:
    ref = TrajectoryRef("sess", "ws://r", "a" * 64)
    assert ref.tags() == [["trajectory", "sess", "ws://r"], ["trajectory_hash", "a" * 64]]
    ev = sign(AUTHOR, EventTemplate(1617, "", [["trajectory", "sess", "ws://r"],
                                               ["trajectory_hash", "not-a-hash"]]))
    assert nip34.parse_trajectory(ev) == TrajectoryRef("sess", "ws://r", None)
    assert nip34.check_trajectory_hash("A" * 64) == "a" * 64
    with pytest.raises(Nip34Error):
        nip34.check_trajectory_hash("abc")


def test_comment_thread_order_when_clocks_tie() -> None:
    issue = sign(AUTHOR, nip34.issue_template(REPO, subject="x", content=""))
    a = sign(OWNER, nip34.comment_template(issue, issue, "a"), 10)
    b = sign(AUTHOR, nip34.comment_template(issue, a, "b"), 10)
    c = sign(AUTHOR, nip34.comment_template(issue, b, "c"), 10)
    d = sign(STRANGER, nip34.comment_template(issue, issue, "d"), 11)
    for perm in ([c, b, a, d], [d, a, c, b], [b, d, c, a]):
        assert nip34.comments_for(issue, perm) == [a, b, c, d]


def test_patch_carries_ngit_message_and_author_tags() -> None:
    """ngit's `description` (the exact message) and `author`, and our `commit-encoding`,
    are written from the commit and read back; a malformed `author` is refused like a
    malformed `committer`."""
    obj = CommitObject("a" * 40, "c" * 40, ("b" * 40,), COMMITTER, "",
                       Committer("Zoë", "z@x", 1_600_000_000, 345), "subj  \n\n---\nbody\n")
    ev = sign(AUTHOR, nip34.patch_template(REPO, patch_text(), commit=obj))
    assert ["description", "subj  \n\n---\nbody\n"] in ev.tags
    assert ["author", "Zoë", "z@x", "1600000000", "345"] in ev.tags
    assert not tags_named(ev, "commit-encoding")
    p = nip34.parse_patch(ev)
    assert p.description == "subj  \n\n---\nbody\n" and p.author == obj.author
    latin = CommitObject("a" * 40, "c" * 40, ("b" * 40,), COMMITTER, "", None, None,
                         "ISO-8859-1")
    ev = sign(AUTHOR, nip34.patch_template(REPO, patch_text(), commit=latin))
    assert not tags_named(ev, "description") and ["commit-encoding", "ISO-8859-1"] in ev.tags
    assert nip34.parse_patch(ev).encoding == "ISO-8859-1"
    # An encoding that could break a commit header is not taken.
    bad = sign(AUTHOR, EventTemplate(1617, patch_text(), [["commit-encoding", "x\nparent y"]]))
    assert nip34.parse_patch(bad).encoding is None
    bad = sign(AUTHOR, EventTemplate(1617, patch_text(), [["author", "A", "a@x", "soon", "0"]]))
    with pytest.raises(nip34.Nip34Error, match="'author' tag"):
        nip34.parse_patch(bad)
