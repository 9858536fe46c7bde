"""The buyer's record of providers (its own verdicts) and who counts as distinct."""

from __future__ import annotations

from pathlib import Path

from oa_node.plugins.buyer.reputation import Reputation
from oa_node.plugins.buyer.verify import ResultCheck, decide


def test_record_is_once_per_result_and_cheating_needs_more_than_structure(
        tmp_path: Path) -> None:
    rep = Reputation(tmp_path)
    rep.record("j1", [("r1", "good", "pass", "audited"), ("r2", "sloppy", "fail", "structural"),
                      ("r3", "liar", "fail", "redundant:2"), ("r4", "new", "pass", "structural")])
    rep.record("j1", [("r1", "good", "fail", "audited")])  # a replay changes nothing
    assert rep.of("good")["passes_by_level"] == {"audited": 1} and rep.of("good")["fails"] == 0
    assert rep.known_good("good")
    assert not rep.known_good("new")  # structural passes: any key can send those
    assert not rep.cheated("sloppy") and rep.of("sloppy")["fails"] == 1
    assert rep.cheated("liar") and not rep.known_good("liar")
    assert set(rep.all()) == {"good", "sloppy", "liar", "new"}
    rep.close()
    again = Reputation(tmp_path)  # durable
    assert again.cheated("liar")
    again.close()


def test_only_distinct_providers_count_towards_k() -> None:
    checks = [ResultCheck("s1", "sybil1", True, (), "fake"),
              ResultCheck("s2", "sybil2", True, (), "fake"),
              ResultCheck("h1", "named", True, (), "real")]
    assert decide(checks, 2).outcome == "pass"  # every key counted: the Sybils win
    d = decide(checks, 2, distinct={"named"})
    assert d.outcome == "wait" and set(d.uncounted) == {"s1", "s2"}
    d = decide(checks, 2, distinct={"named", "known"}, final=True)
    assert d.outcome == "reject" and "not counted as distinct" in d.reason
    more = [*checks, ResultCheck("h2", "known", True, (), "real")]
    d = decide(more, 2, distinct={"named", "known"})
    assert d.outcome == "pass" and d.passed == ("h1", "h2")
    assert set(d.failed) == {"s1", "s2"}  # they disagree with two distinct providers


def test_labels_from_trusted_keys_join_the_record(tmp_path: Path) -> None:
    """Only labels signed by a trusted key count, with their level; own verdicts win."""
    from oa_node.nostr import nip90
    from oa_node.plugins.buyer.labels import label_template
    from oa_node.signer import LocalSigner

    friend, stranger = LocalSigner.generate(), LocalSigner.generate()
    provider, buyer = LocalSigner.generate(), LocalSigner.generate()
    request = buyer.sign_now(nip90.request_template("oa.sandbox_run.v1", "{}"))
    result = provider.sign_now(nip90.result_template(request, "{}", "oa.sandbox_run.v1"))
    other = provider.sign_now(nip90.result_template(request, "{ }", "oa.sandbox_run.v1"))
    caught = friend.sign_now(label_template(result, "fail", "lied", "audited",
                                            "oa.sandbox_run.v1", request.id))
    smear = stranger.sign_now(label_template(other, "fail", "lied", "audited",
                                             "oa.sandbox_run.v1", request.id))
    rep = Reputation(tmp_path)
    rep.record("own", [(other.id, provider.public_key, "pass", "audited")])
    assert rep.import_labels([caught, smear], {friend.public_key}) == 1
    assert rep.import_labels([caught], {friend.public_key}) == 0  # once
    assert rep.of(provider.public_key)["cheated"] == 1  # the friend's audited fail
    assert rep.of(provider.public_key)["passes"] == 1  # the stranger's smear ignored
    rep.close()
