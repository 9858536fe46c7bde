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
