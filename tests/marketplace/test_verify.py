"""The buyer's verification (pure): one result's checks, and the decision across results."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from oa_node.canonical import canonical_json
from oa_node.executors.builtin import SANDBOX_RUN
from oa_node.executors.hashing import (
    attestation,
    input_sha256,
    output_sha256,
    verification_digest,
)
from oa_node.nostr import nip90
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.verify import ResultCheck, check_result, decide
from oa_node.signer import LocalSigner

SCHEMA = "oa.sandbox_run.v1"
IMAGE = "sha256:" + "1" * 64
REQUEST: dict[str, Any] = {
    "sandbox": {"provider": "docker", "image_digest": IMAGE, "network_policy": "none",
                "resources": {"memory_mb": 256, "cpus": 1, "timeout_secs": 30}},
    "commands": [{"cmd": "pytest -q"}], "env": {},
    "verification": {"mode": "objective", "redundancy": 1, "adjudication": "none"},
}


def result_doc(request: dict[str, Any], provider: str, exit_code: int = 0,
               image: str = IMAGE) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": "success" if exit_code == 0 else "failed", "error": None,
        "env_info": {"image_digest": image, "hostname": "h", "system_info": {}},
        "runs": [{"cmd": "pytest -q", "exit_code": exit_code, "duration_ms": 5,
                  "stdout_sha256": "a" * 64, "stderr_sha256": "b" * 64}],
        "artifacts": [],
    }
    doc["provenance"] = {"provider_pubkey": provider, "input_sha256": input_sha256(request),
                         "output_sha256": output_sha256(doc), "executed_at": 1,
                         "duration_ms": 9,
                         "attestation": attestation(provider, verification_digest(doc))}
    return doc


@pytest.fixture
def keys() -> dict[str, LocalSigner]:
    return {n: LocalSigner.generate() for n in ("buyer", "provider", "other")}


def request_event(keys: dict[str, LocalSigner], doc: dict[str, Any] = REQUEST,
                  **kw: Any) -> Event:
    return keys["buyer"].sign_now(nip90.request_template(SCHEMA, canonical_json(doc), **kw))


def result_event(keys: dict[str, LocalSigner], request: Event, doc: dict[str, Any],
                 signer: str = "provider", **kw: Any) -> Event:
    return keys[signer].sign_now(nip90.result_template(request, canonical_json(doc), SCHEMA,
                                                       **kw))


def check(keys: dict[str, LocalSigner], request: Event, result: Event,
          plaintext: str | None = None, doc: dict[str, Any] = REQUEST,
          **kw: Any) -> ResultCheck:
    parsed = nip90.parse_result(result)
    return check_result(parsed, result.content if plaintext is None else plaintext,
                        requests=[request], request_doc=doc,
                        buyer=keys["buyer"].public_key, job_type=SANDBOX_RUN, **kw)


def test_an_honest_result_passes_with_its_digest(keys: dict[str, LocalSigner]) -> None:
    req = request_event(keys)
    doc = result_doc(REQUEST, keys["provider"].public_key, exit_code=1)
    c = check(keys, req, result_event(keys, req, doc))
    assert c.ok, c.problems
    assert c.status == "failed" and c.digest == verification_digest(doc)


def test_binding_and_signature_problems(keys: dict[str, LocalSigner]) -> None:
    pk = keys["provider"].public_key
    req = request_event(keys)
    doc = result_doc(REQUEST, pk)
    good = result_event(keys, req, doc)
    forged = dataclasses.replace(good, content=good.content.replace('"exit_code":0',
                                                                    '"exit_code":0 '))
    assert "bad event id or signature" in check(keys, req, forged).problems
    # a result answering another of the buyer's requests
    other_req = request_event(keys, {**REQUEST, "env": {"A": "1"}})
    stray = result_event(keys, other_req, doc)
    assert "answers a request that is not this job's" in check(keys, req, stray).problems
    # a result for this request, read by a buyer it is not addressed to
    c = check_result(nip90.parse_result(good), good.content, requests=[req],
                     request_doc=REQUEST, buyer=keys["other"].public_key, job_type=SANDBOX_RUN)
    assert c.problems == ("result is not addressed to this buyer (p tag)",)
    # wrong kind for the request (5050 answered at 6930)
    t = nip90.result_template(req, canonical_json(doc), SCHEMA)
    t.kind = 6930
    wrong_kind = keys["provider"].sign_now(t)
    assert "kind 6930 does not answer request kind 5050" in check(keys, req, wrong_kind).problems


def test_named_provider_encryption_and_content(keys: dict[str, LocalSigner]) -> None:
    pk = keys["provider"].public_key
    req = request_event(keys, provider=keys["other"].public_key)
    c = check(keys, req, result_event(keys, req, result_doc(REQUEST, pk)))
    assert "the request named other providers" in c.problems
    enc_req = request_event(keys, provider=pk, encrypted=True)
    clear = result_event(keys, enc_req, result_doc(REQUEST, pk))
    assert "the request was encrypted but the result was sent in clear" in check(
        keys, enc_req, clear).problems
    assert not check(keys, enc_req, clear, decrypt_error="bad mac").ok
    req = request_event(keys)
    res = result_event(keys, req, result_doc(REQUEST, pk))
    assert any("not JSON" in p for p in check(keys, req, res, plaintext="{").problems)
    assert "content is not a JSON object" in check(keys, req, res, plaintext="[]").problems


def test_objective_checks_of_the_schema(keys: dict[str, LocalSigner]) -> None:
    pk = keys["provider"].public_key
    req = request_event(keys)
    # computed for another request document: input hash differs
    other = {**REQUEST, "env": {"X": "y"}}
    c = check(keys, req, result_event(keys, req, result_doc(other, pk)))
    assert "provenance.input_sha256 does not match this request" in c.problems
    # another image than asked for
    c = check(keys, req, result_event(keys, req, result_doc(REQUEST, pk, image="sha256:"
                                                            + "2" * 64)))
    assert any("asked for" in p for p in c.problems)
    # an edited result whose output hash no longer matches
    doc = result_doc(REQUEST, pk)
    doc["runs"][0]["exit_code"] = 3
    c = check(keys, req, result_event(keys, req, doc))
    assert "provenance.output_sha256 does not match the result" in c.problems
    # provenance naming another provider
    c = check(keys, req, result_event(keys, req, result_doc(REQUEST, keys["other"].public_key)))
    assert "provenance names another provider" in c.problems


def test_the_attestation_binds_the_signer_not_the_digest(keys: dict[str, LocalSigner]
                                                         ) -> None:
    """Two honest providers of one job reach the same verification digest (the key-free
    part, which the buyer recomputes and compares) with different attestations; a copy
    re-signed with its provenance key swapped and the original's attestation kept fails,
    and so does one that keeps the original's key; one naming no provider fails too."""
    req = request_event(keys)
    mine = result_doc(REQUEST, keys["provider"].public_key)
    theirs = result_doc(REQUEST, keys["other"].public_key)
    a = check(keys, req, result_event(keys, req, mine))
    b = check(keys, req, result_event(keys, req, theirs, signer="other"))
    assert a.ok and b.ok, (a.problems, b.problems)
    assert a.digest == b.digest == verification_digest(mine)
    assert mine["provenance"]["attestation"] != theirs["provenance"]["attestation"]
    assert mine["provenance"]["attestation"] == attestation(keys["provider"].public_key,
                                                            a.digest)
    swapped = {**mine, "provenance": {**mine["provenance"],
                                      "provider_pubkey": keys["other"].public_key}}
    c = check(keys, req, result_event(keys, req, swapped, signer="other"))
    assert not c.ok and any("attestation" in p for p in c.problems), c.problems
    kept = check(keys, req, result_event(keys, req, mine, signer="other"))
    assert kept.problems == ("provenance names another provider",)
    anonymous = {**mine, "provenance": {**mine["provenance"], "provider_pubkey": "",
                                        "attestation": attestation("", a.digest)}}
    c = check(keys, req, result_event(keys, req, anonymous))
    assert c.problems == ("provenance names no provider",)


def test_runs_must_show_the_work_the_status_claims() -> None:
    """Honest shapes pass (a limit hit between commands, a failure that stops the run); a
    run after a stopping one, or a status the runs do not show, fails."""
    from oa_node.executors.sandbox_run import verify_sandbox_run
    from tests.marketplace.rogue import forged_success, sealed

    req = {**REQUEST, "commands": [{"cmd": "a"}, {"cmd": "b"}, {"cmd": "c"}]}

    def verdict(status: str, codes: list[int], timed_out: int = -1) -> tuple[str, ...]:
        doc = forged_success(req, "")
        doc["runs"] = [{**doc["runs"][i], "exit_code": c, "timed_out": i == timed_out}
                       for i, c in enumerate(codes)]
        doc["status"] = status
        return verify_sandbox_run(req, sealed(doc, req, "")).problems

    assert verdict("success", [0, 0, 0]) == ()
    assert verdict("failed", [0, 1]) == ()
    assert verdict("timeout", [0, 0]) == ()  # the limit was reached before command 2
    assert verdict("timeout", [0, 124], timed_out=1) == ()
    assert verdict("failed", [1, 0]) == ("runs continue after runs[0], where the runner stops",)
    assert verdict("timeout", [0, 0, 0]) == (
        "status timeout, but every command finished in time",)
    assert verdict("failed", [0, 0]) == ("status failed, but no command failed",)
    assert verdict("success", [0, 0]) == (
        "status success, but not every command ran and passed",)


def rc(rid: str, provider: str, digest: str = "d1", ok: bool = True, clear: bool = False
       ) -> ResultCheck:
    return ResultCheck(rid, provider, ok, () if ok else ("bad",), digest if ok else "",
                       clear=clear)


def test_decide_redundancy_one() -> None:
    d = decide([rc("r1", "a", ok=False), rc("r2", "b")], 1)
    assert d.outcome == "pass" and d.passed == ("r2",) and d.failed == {"r1": "bad"}
    assert decide([rc("r1", "a", ok=False)], 1).outcome == "wait"
    final = decide([rc("r1", "a", ok=False)], 1, final=True)
    assert final.outcome == "reject" and final.failed == {"r1": "bad"}
    assert decide([], 1, final=True).outcome == "reject"


def test_decide_agreement_disagreement_and_audit() -> None:
    agree = decide([rc("r1", "a"), rc("r2", "b")], 2)
    assert agree.outcome == "pass" and set(agree.passed) == {"r1", "r2"}
    split = [rc("r1", "a", "honest"), rc("r2", "b", "liar")]
    assert decide(split, 2).outcome == "tiebreak"
    audited = decide(split, 2, audit_digest="honest")
    assert audited.outcome == "pass" and audited.passed == ("r1",)
    assert "audit" in audited.failed["r2"]
    nobody = decide(split, 2, audit_digest="third")
    assert nobody.outcome == "reject" and set(nobody.failed) == {"r1", "r2"}
    # 2 of 3 agree: the majority passes without an audit, the odd one fails
    three = decide([rc("r1", "a", "x"), rc("r2", "b", "y"), rc("r3", "c", "x")], 2)
    assert three.outcome == "pass" and set(three.passed) == {"r1", "r3"}
    assert "disagrees" in three.failed["r2"]


def test_decide_waits_then_rejects_too_few_and_counts_each_provider_once() -> None:
    assert decide([rc("r1", "a")], 2).outcome == "wait"
    late = decide([rc("r1", "a")], 2, final=True)
    assert late.outcome == "reject" and "too few" in late.failed["r1"]
    twice = decide([rc("r1", "a"), rc("r2", "a")], 2, final=True)
    assert twice.outcome == "reject"
    assert twice.failed["r2"] == "a second result from the same provider"


def test_decide_passes_exactly_k_in_arrival_order() -> None:
    """More agreeing results than asked for: the first ``redundancy`` pass (are paid), the
    rest are surplus, never more passes than K, with or without an audit."""
    burst = [rc(f"r{i}", f"p{i}") for i in range(5)]
    one = decide(burst, 1)
    assert one.passed == ("r0",) and one.surplus == ("r1", "r2", "r3", "r4")
    two = decide(burst, 2)
    assert two.passed == ("r0", "r1") and len(two.surplus) == 3
    audited = decide(burst, 2, audit_digest="d1")
    assert audited.passed == ("r0", "r1") and len(audited.surplus) == 3


def test_decide_never_counts_clear_results_at_redundancy_above_one() -> None:
    """A result in clear can be read by anyone and re-attested under any key: at K > 1 it
    is no vote (recorded as uncounted, surplus when it agrees with a passing group); at
    K = 1 there is no agreement to fake and it counts as before."""
    clear = [rc("r1", "a", clear=True), rc("r2", "b", clear=True)]
    assert decide(clear, 1).passed == ("r1",)
    waiting = decide(clear, 2)
    assert waiting.outcome == "wait" and waiting.uncounted == ("r1", "r2")
    late = decide(clear, 2, final=True)
    assert late.outcome == "reject" and not late.passed and "sent in clear" in late.reason
    mixed = decide([rc("r1", "a", clear=True), rc("r2", "b"), rc("r3", "c")], 2)
    assert mixed.passed == ("r2", "r3") and mixed.surplus == ("r1",)
    # an audit does not make a clear result count either
    assert decide(clear, 2, final=True, audit_digest="d1").outcome == "reject"
    assert ResultCheck.from_dict(rc("r1", "a", clear=True).to_dict()).clear
