"""Job schemas: validation with field paths, round trips, hashes, job-type registration."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from oa_node.canonical import canonical_hash
from oa_node.config import ConfigError, load, validate
from oa_node.executors.builtin import REPO_INDEX, SANDBOX_RUN
from oa_node.executors.hashing import (
    input_sha256,
    output_sha256,
    tree_sha256,
    verification_digest,
)
from oa_node.executors.jobtype import ExecContext, JobType, Verdict
from oa_node.executors.repo_index_schema import RepoIndexRequest, RepoIndexResult
from oa_node.executors.sandbox_run_schema import SandboxRunRequest, SandboxRunResult
from oa_node.executors.schema import SchemaError
from oa_node.hookspecs import hookimpl
from oa_node.node import core_sections
from oa_node.plugin_manager import PluginHost

H = "a" * 64
REQUEST: dict[str, Any] = {
    "sandbox": {"provider": "docker", "image_digest": "sha256:" + "b" * 64,
                "network_policy": "none",
                "resources": {"memory_mb": 256, "cpus": 0.5, "timeout_secs": 30, "disk_mb": 64}},
    "repo": {"source": "https://example.org/r.git", "git_ref": "v1.0", "mount_path": "/workspace"},
    "commands": [{"cmd": "pytest -q", "workdir": "tests", "continue_on_fail": False},
                 {"cmd": ["make", "check"]}],
    "env": {"CI": "1"},
    "verification": {"mode": "objective", "redundancy": 2, "adjudication": "majority_vote"},
    "artifacts": ["dist/*.whl"],
}

RESULT: dict[str, Any] = {
    "env_info": {"image_digest": "sha256:" + "b" * 64, "hostname": "sandbox",
                 "system_info": {"kernel": "6.1"}},
    "runs": [{"cmd": "pytest -q", "exit_code": 0, "duration_ms": 1200, "stdout_sha256": H,
              "stderr_sha256": H, "stdout_preview": "1 passed in 0.12s", "stderr_preview": ""},
             {"cmd": ["make", "check"], "exit_code": 0, "duration_ms": 10,
              "stdout_sha256": H, "stderr_sha256": H}],
    "artifacts": [{"path": "dist/x.whl", "sha256": H, "size_bytes": 10,
                   "mime_type": "application/zip"}],
    "status": "success",
    "error": None,
    "provenance": {"provider_pubkey": "c" * 64, "input_sha256": H, "output_sha256": H,
                   "executed_at": 1700000000, "duration_ms": 1300},
}


def broken(path: list[Any], value: Any, doc: dict[str, Any] = REQUEST) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def test_request_parses_with_defaults_and_round_trips() -> None:
    req = SandboxRunRequest.from_dict(REQUEST)
    assert req.commands[1].cmd == ["make", "check"] and req.commands[1].workdir == "."
    assert req.sandbox.resources.pids == 256
    again = SandboxRunRequest.from_dict(req.to_dict())
    assert again == req
    minimal = SandboxRunRequest.from_dict({"commands": [{"cmd": "true"}]})
    assert minimal.sandbox.network_policy == "none" and minimal.repo is None
    assert minimal.sandbox.resources.memory_mb == 512


@pytest.mark.parametrize(("path", "value", "where", "what"), [
    (["commands", 0, "workdir"], "../etc", "commands[0].workdir", "traversal"),
    (["commands", 0, "workdir"], "a/../../b", "commands[0].workdir", "traversal"),
    (["commands", 0, "workdir"], "/etc", "commands[0].workdir", "outside the workspace"),
    (["artifacts", 0], "../../secret", "artifacts[0]", "traversal"),
    (["artifacts", 0], "/etc/passwd", "artifacts[0]", "relative"),
    (["commands", 1, "cmd"], [], "commands[1].cmd", "empty"),
    (["commands", 0, "shell"], True, "commands[0].shell", "unknown field"),
    (["sandbox", "image_digest"], "ubuntu:latest", "sandbox.image_digest", "sha256"),
    (["sandbox", "network_policy"], "host", "sandbox.network_policy", "one of"),
    (["sandbox", "resources", "memory_mb"], "lots", "sandbox.resources.memory_mb", "integer"),
    (["sandbox", "resources", "timeout_secs"], 0, "sandbox.resources.timeout_secs", "greater"),
    (["repo", "mount_path"], "/etc", "repo.mount_path", "system folder"),
    (["repo", "mount_path"], "relative", "repo.mount_path", "absolute"),
    (["repo", "git_ref"], "--upload-pack=evil", "repo.git_ref", "not a valid git ref"),
    (["repo", "source"], "-oProxyCommand=x", "repo.source", "command-line option"),
    (["repo", "source"], "https://tok3n@example.org/x", "repo.source", "https://***@"),
    (["repo", "source"], "https://u:pw@example.org/x", "repo.source", "carries credentials"),
    (["repo", "source"], KeyError, "repo.source", "missing"),
    (["env"], {"1BAD": "x"}, "env.1BAD", "variable name"),
    (["env"], {"OK": 5}, "env.OK", "string"),
    (["verification", "redundancy"], 0, "verification.redundancy", "at least"),
    (["commands"], "make", "commands", "list"),
])
def test_request_errors_name_the_field(path: list[Any], value: Any, where: str, what: str) -> None:
    with pytest.raises(SchemaError) as info:
        SandboxRunRequest.from_dict(broken(path, value))
    assert info.value.path == where
    assert what in str(info.value)


def test_empty_command_list_is_valid_schema_but_not_runnable() -> None:
    req = SandboxRunRequest.from_dict({"commands": []})
    result = SANDBOX_RUN.executor(req, ExecContext())
    assert result.status == "error" and "no commands" in (result.error or "")
    assert result.runs == ()


def test_result_round_trip_and_errors() -> None:
    res = SandboxRunResult.from_dict(RESULT)
    assert SandboxRunResult.from_dict(res.to_dict()) == res
    assert res.runs[1].stdout_bytes == 0  # oa-node additions default when absent
    with pytest.raises(SchemaError, match=r"runs\[0\].stdout_sha256"):
        SandboxRunResult.from_dict(broken(["runs", 0, "stdout_sha256"], "XYZ", RESULT))
    with pytest.raises(SchemaError, match="status"):
        SandboxRunResult.from_dict(broken(["status"], "done", RESULT))


def test_repo_index_request_and_result() -> None:
    req = RepoIndexRequest.from_dict({"repo_url": "https://example.org/r.git",
                                      "index_types": ["digests", "symbols"]})
    assert req.git_ref == "HEAD" and req.expected_tree_sha256 is None
    assert RepoIndexRequest.from_dict(req.to_dict()) == req
    for bad, where in [({"index_types": ["digests", "digests"]}, "index_types"),
                       ({"index_types": ["ast"]}, "index_types[0]"),
                       ({"index_types": []}, "index_types"),
                       ({"expected_tree_sha256": "xyz"}, "expected_tree_sha256")]:
        with pytest.raises(SchemaError) as info:
            RepoIndexRequest.from_dict({"repo_url": "https://example.org/r.git", **bad})
        assert info.value.path == where
    res = RepoIndexResult.from_dict({
        "tree_sha256": H, "digests": [{"path": "a.py", "sha256": H, "bytes": 3}],
        "artifacts": [{"index_type": "digests", "sha256": H, "bytes": 50}],
        "provenance": RESULT["provenance"]})
    assert res.status == "success" and RepoIndexResult.from_dict(res.to_dict()) == res


def test_input_hash_is_over_the_document_as_sent() -> None:
    sparse = {"commands": [{"cmd": "true"}]}
    parsed = SandboxRunRequest.from_dict(sparse)
    assert input_sha256(parsed) == input_sha256(sparse) == canonical_hash(sparse)
    # A request built in code hashes its normalised form.
    built = SandboxRunRequest(commands=parsed.commands)
    assert input_sha256(built) == canonical_hash(built.to_dict())
    assert input_sha256(built) != input_sha256(sparse)


def test_output_hash_excludes_provenance() -> None:
    a = output_sha256(RESULT)
    other = broken(["provenance", "duration_ms"], 1, RESULT)
    assert output_sha256(other) == a
    assert output_sha256(broken(["status"], "failed", RESULT)) != a


def test_tree_hash_sorts_by_path() -> None:
    d1 = {"path": "b", "sha256": H, "bytes": 1}
    d2 = {"path": "a", "sha256": H, "bytes": 2}
    assert tree_sha256([d1, d2]) == tree_sha256([d2, d1]) == canonical_hash([d2, d1])


def test_verification_digest_ignores_timing_and_logs_not_outcomes() -> None:
    base = verification_digest(RESULT)
    noisy = copy.deepcopy(RESULT)
    noisy["runs"][0].update(duration_ms=99999, stdout_sha256="f" * 64,
                            stdout_preview="1 passed in 9.99s")
    noisy["env_info"]["hostname"] = "elsewhere"
    noisy["provenance"]["executed_at"] = 1800000000
    assert verification_digest(noisy) == base
    assert verification_digest(broken(["runs", 0, "exit_code"], 1, RESULT)) != base
    assert verification_digest(broken(["artifacts", 0, "sha256"], "e" * 64, RESULT)) != base
    index = {"tree_sha256": H, "artifacts": [{"index_type": "digests", "sha256": H}]}
    assert verification_digest(index) != verification_digest({**index, "tree_sha256": "0" * 64})


class EchoRequest:
    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def from_dict(cls, value: Any) -> EchoRequest:
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise SchemaError("text", "expected a string")
        return cls(value["text"])

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text}


class ThirdPartyPlugin:
    """A throwaway in-process plugin adding a job type through the public hook."""

    @staticmethod
    @hookimpl
    def register_job_types(register: Any) -> None:
        register(JobType(
            schema_id="example.echo.v1",
            request_model=EchoRequest,
            result_model=EchoRequest,
            executor=lambda req, ctx: EchoRequest(req.text.upper()),
            verifier=lambda req, res: Verdict(ok=res.text == req.text.upper()),
        ))


def test_a_third_party_plugin_adds_a_job_type() -> None:
    host = PluginHost()  # no plugin at all: the built-in job types are the core's
    host.register(ThirdPartyPlugin(), "echo")
    types = host.registries.job_types()
    assert set(types) == {"oa.sandbox_run.v1", "oa.repo_index.v1", "example.echo.v1"}
    assert types["oa.repo_index.v1"] is REPO_INDEX
    echo = types["example.echo.v1"]
    req = echo.request_model.from_dict({"text": "hi"})  # type: ignore[attr-defined]
    res = echo.executor(req, ExecContext())  # type: ignore[attr-defined]
    assert res.text == "HI" and echo.verifier(req, res).ok  # type: ignore[attr-defined]


def test_registering_a_schema_twice_is_refused_unless_replacing_a_builtin() -> None:
    import dataclasses

    class Dup:
        @staticmethod
        @hookimpl
        def register_job_types(register: Any) -> None:
            register(SANDBOX_RUN)

    host = PluginHost()
    host.register(Dup(), "dup")
    with pytest.raises(ValueError, match="registered twice"):
        host.registries.job_types()

    mine = dataclasses.replace(SANDBOX_RUN, description="mine")

    class Replacer:
        @staticmethod
        @hookimpl
        def register_job_types(register: Any) -> None:
            register(mine, replace=True)

    host = PluginHost()
    host.register(Replacer(), "replacer")
    assert host.registries.job_types()["oa.sandbox_run.v1"] is mine
    host = PluginHost()  # a second replacement of the same schema is refused
    host.register(Replacer(), "replacer")
    host.register(type("Other", (Replacer,), {})(), "other")
    with pytest.raises(ValueError, match="registered twice"):
        host.registries.job_types()
    host = PluginHost()  # replace=True is for built-ins only

    class Echo2:
        @staticmethod
        @hookimpl
        def register_job_types(register: Any) -> None:
            register(dataclasses.replace(SANDBOX_RUN, schema_id="example.echo.v1"),
                     replace=True)

    host.register(ThirdPartyPlugin(), "echo")
    host.register(Echo2(), "echo2")
    with pytest.raises(ValueError, match="registered twice"):
        host.registries.job_types()


def test_job_schemas_are_known_with_the_sandbox_plugin_disabled(tmp_path: Any) -> None:
    """A buyer-only node that disables the sandbox still knows every built-in schema."""
    from oa_node.node import build_node
    from oa_node.plugins.buyer.engine import Buyer
    from oa_node.plugins.buyer.settings import BuyerSettings

    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[plugins]\ndisable = ["sandbox"]\n')
    node = build_node(cfg, services=False)
    assert "sandbox" not in {p.name for p in node.plugins.loaded}
    assert "sandbox" not in node.config
    buyer = Buyer(node, BuyerSettings())
    try:
        assert buyer.job_type("oa.sandbox_run.v1") is SANDBOX_RUN
        assert buyer.job_type("oa.repo_index.v1") is REPO_INDEX
    finally:
        buyer.close()


def test_sandbox_config_section(tmp_path: Any) -> None:
    from oa_node.plugins.sandbox.config import sandbox_section, settings_from_config

    sections = [*core_sections(), sandbox_section()]
    cfg = validate(sections, {"node": {"data_dir": str(tmp_path)},
                              "sandbox": {"allowed_url_schemes": ["https", "file"],
                                          "max_memory_mb": 256, "workdir": "jobs"}})
    s = settings_from_config(cfg)
    assert s.allowed_url_schemes == ("https", "file") and s.workdir == tmp_path / "jobs"
    assert s.cap(4096, 8, 10_000, 10**6, 10**6).memory_mb == 256
    bad = tmp_path / "node.toml"
    bad.write_text('[sandbox]\nallowed_url_schemes = ["ext"]\n')
    with pytest.raises(ConfigError, match=r"sandbox\.allowed_url_schemes"):
        load(bad, sections)
    bad.write_text('[sandbox]\nimage = "ubuntu"\n')
    with pytest.raises(ConfigError, match=r"sandbox\.image"):
        load(bad, sections)


@pytest.mark.parametrize("path, value", [
    (["runs", 0, "exit_code"], 10**400),  # an int no JSON number can hold
    (["runs", 0, "stdout_preview"], "\ud800"),  # a lone surrogate (valid JSON escape)
    (["env_info", "system_info", "load"], float("nan")),
], ids=["huge-int", "lone-surrogate", "nan"])
def test_verifiers_answer_unhashable_results_with_a_failed_verdict(path: list[Any],
                                                                   value: Any) -> None:
    hostile = broken(path, value, RESULT)
    verdict = SANDBOX_RUN.verifier(REQUEST, hostile)
    assert not verdict.ok and "canonical" in verdict.problems[0], verdict
    index_req = {"repo_url": "https://example.org/r.git"}
    index_res = {"tree_sha256": H, "status": "error", "error": "\ud800",
                 "provenance": RESULT["provenance"]}
    verdict = REPO_INDEX.verifier(index_req, index_res)
    assert not verdict.ok and "canonical" in verdict.problems[0], verdict
