"""The Docker sandbox against real Docker: results, hardening and every hostile job of issue 4.

Each hostile job is contained (the sandbox reports it in the outcome) and leaves the host
as it was: no container left behind, bounded host memory.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.wait import wait_until
from oa_node.sandbox.base import CancelToken, CommandSpec, Limits, RunSpec
from oa_node.sandbox.docker import LABEL_JOB, DockerSandbox

pytestmark = pytest.mark.docker

EMPTY = hashlib.sha256(b"").hexdigest()


def spec(*commands: str | list[str] | CommandSpec, **kw: Any) -> RunSpec:
    cmds = tuple(c if isinstance(c, CommandSpec) else CommandSpec(c) for c in commands)
    kw.setdefault("limits", Limits(memory_mb=256, cpus=1.0, pids=128, timeout_secs=30,
                                   disk_mb=64))
    return RunSpec(job_id=kw.pop("job_id", "test-job"), commands=cmds, **kw)


def containers(sb: DockerSandbox) -> list[Any]:
    sb.flush()
    return sb.client.api.containers(all=True, filters=sb.label_filter())


def wait_for_container(sb: DockerSandbox, timeout: float = 20) -> str:
    def running() -> str | None:
        found = containers(sb)
        return str(found[0]["Id"]) if found and found[0]["State"] == "running" else None

    return str(wait_until(running, timeout, "a running container"))


def test_runs_commands_in_order_with_hashes_previews_and_image_digest(
        docker_sandbox: DockerSandbox, sandbox_image: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "hello.txt").write_text("hello\n")
    (ws / "sub" / "run.sh").write_text("#!/bin/sh\necho from-sub\n")
    os.chmod(ws / "sub" / "run.sh", 0o755)
    out = docker_sandbox.run(spec(
        "cat hello.txt",
        CommandSpec("./run.sh; pwd", workdir="sub"),
        CommandSpec("echo oops >&2; exit 3", continue_on_fail=True),
        ["python3", "-c", "import sys; sys.stdout.write('x' * 10000)"],
        workspace=ws, env={"GREETING": "hi"}, limits=Limits(preview_bytes=100),
    ))
    assert out.status == "success", out.error
    assert out.image_digest == sandbox_image
    assert [r.exit_code for r in out.runs] == [0, 0, 3, 0]
    first = out.runs[0]
    assert first.stdout_preview == "hello\n"
    assert first.stdout_sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert first.stderr_sha256 == EMPTY and first.stdout_bytes == 6
    assert out.runs[1].stdout_preview == "from-sub\n/workspace/sub\n"
    assert out.runs[2].stderr_preview == "oops\n"
    big = out.runs[3]
    assert big.stdout_bytes == 10000 and big.stdout_preview == "x" * 100
    assert big.stdout_sha256 == hashlib.sha256(b"x" * 10000).hexdigest()
    assert out.hostname == "sandbox" and out.system_info["uid"] == 1000
    assert containers(docker_sandbox) == []


def test_failure_stops_later_commands_unless_continue_on_fail(
        docker_sandbox: DockerSandbox) -> None:
    out = docker_sandbox.run(spec("exit 2", "echo never"))
    assert out.status == "failed" and len(out.runs) == 1 and "exited with 2" in (out.error or "")
    out = docker_sandbox.run(spec(CommandSpec("true", workdir="missing"), "echo never"))
    assert out.status == "failed" and out.runs[0].exit_code == 127


def test_request_env_reaches_commands_only(docker_sandbox: DockerSandbox) -> None:
    out = docker_sandbox.run(spec("echo $GREETING; echo $HOME", env={"GREETING": "hi"}))
    assert out.runs[0].stdout_preview == "hi\n/tmp\n"


def test_hardening_inside_the_container(docker_sandbox: DockerSandbox) -> None:
    script = textwrap.dedent("""\
        grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
        id -u
        ls /sys/class/net
        cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max
        """)
    out = docker_sandbox.run(spec(script))
    text = out.runs[0].stdout_preview
    assert "CapEff:\t0000000000000000" in text and "CapBnd:\t0000000000000000" in text
    assert "NoNewPrivs:\t1" in text and "Seccomp:\t2" in text
    lines = text.splitlines()
    assert "1000" in lines and "128" in lines
    assert lines[lines.index("1000") + 1] == "lo"  # the only network interface


def test_writes_outside_workspace_and_tmp_fail(docker_sandbox: DockerSandbox) -> None:
    targets = ["/etc/evil", "/usr/evil", "/evil", "/home/sandbox/evil", "/var/tmp/evil",
               "/opt/oa/evil"]
    cmds = [CommandSpec(f"echo x > {t}", continue_on_fail=True) for t in targets]
    cmds += [CommandSpec("echo x > /workspace/ok && echo x > /tmp/ok && cat /workspace/ok")]
    out = docker_sandbox.run(spec(*cmds))
    assert all(r.exit_code != 0 for r in out.runs[:-1]), [r.stderr_preview for r in out.runs]
    assert all("Read-only file system" in r.stderr_preview for r in out.runs[:-1])
    assert out.runs[-1].exit_code == 0 and out.status == "success"


def test_no_network_even_to_the_hosts_loopback(docker_sandbox: DockerSandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    probe = (f"import socket\ns = socket.socket(); s.settimeout(3)\n"
             f"try:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED')\n"
             f"except OSError as e:\n    print('refused', e)\n")
    try:
        out = docker_sandbox.run(spec(["python3", "-c", probe], "ls /sys/class/net"))
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert out.runs[0].stdout_preview.startswith("refused"), out.runs[0].stdout_preview
    assert out.runs[1].stdout_preview == "lo\n"


def test_fork_bomb_is_stopped_by_the_pids_limit(docker_sandbox: DockerSandbox) -> None:
    counter = textwrap.dedent("""\
        import os, time
        n = 0
        while True:
            try:
                pid = os.fork()
            except OSError as e:
                print('stopped after', n, e.errno)
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
        """)
    bomb = ":(){ :|:& };:"
    out = docker_sandbox.run(spec(["python3", "-c", counter], bomb,
                                  limits=Limits(pids=64, timeout_secs=8)))
    words = out.runs[0].stdout_preview.split()
    assert words[:2] == ["stopped", "after"] and int(words[2]) < 64 and words[3] == "11"
    assert out.status in ("timeout", "failed", "success")
    assert containers(docker_sandbox) == []


def test_memory_bomb_is_stopped_and_reported_as_oom(docker_sandbox: DockerSandbox) -> None:
    out = docker_sandbox.run(spec(["python3", "-c", "x = bytearray(1 << 30); print('survived')"],
                                  "echo never", limits=Limits(memory_mb=64, timeout_secs=30)))
    assert out.status == "failed", out
    assert out.oom_killed and out.runs[0].oom_killed
    assert out.runs[0].exit_code == 137 and "out of memory" in (out.error or "")
    assert len(out.runs) == 1


def test_infinite_loop_times_out_and_later_commands_do_not_run(
        docker_sandbox: DockerSandbox) -> None:
    started = time.monotonic()
    out = docker_sandbox.run(spec("while :; do :; done", "echo never",
                                  limits=Limits(timeout_secs=2)))
    assert out.status == "timeout"
    assert len(out.runs) == 1 and out.runs[0].timed_out and out.runs[0].exit_code == 124
    assert time.monotonic() - started < 20
    assert containers(docker_sandbox) == []


def test_one_gib_of_stdout_is_hashed_in_full_without_filling_the_host(
        docker_sandbox: DockerSandbox) -> None:
    size = 1 << 30
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = docker_sandbox.run(spec(f"head -c {size} /dev/zero", limits=Limits(timeout_secs=120)))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.status == "success", out.error
    run = out.runs[0]
    assert run.stdout_bytes == size and len(run.stdout_preview) == 4096
    h = hashlib.sha256()
    block = b"\0" * (1 << 20)
    for _ in range(size >> 20):
        h.update(block)
    assert run.stdout_sha256 == h.hexdigest()
    assert (rss_after - rss_before) < 100 * 1024  # KiB: the stream never lands in memory


def test_cancel_kills_the_container(docker_sandbox: DockerSandbox) -> None:
    token = CancelToken()
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(
        docker_sandbox.run(spec("sleep 60", job_id="cancel-me"), token)))
    worker.start()
    wait_for_container(docker_sandbox)
    token.cancel()
    worker.join(30)
    assert result and result[0].status == "cancelled"
    assert containers(docker_sandbox) == []


def test_a_container_killed_mid_run_is_reported_and_removed(
        docker_sandbox: DockerSandbox) -> None:
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(
        docker_sandbox.run(spec("echo started; sleep 60"))))
    worker.start()
    cid = wait_for_container(docker_sandbox)
    docker_sandbox.client.api.kill(cid)
    worker.join(30)
    assert result and result[0].status == "error"
    assert "ended early" in (result[0].error or "")
    assert containers(docker_sandbox) == []


def test_leftovers_of_a_killed_client_are_removed_at_start(
        docker_sandbox: DockerSandbox, sandbox_image: str) -> None:
    namespace = docker_sandbox.namespace
    client_code = textwrap.dedent(f"""\
        from oa_node.sandbox.docker import DockerSandbox
        from oa_node.sandbox.base import RunSpec, CommandSpec, Limits
        sb = DockerSandbox(default_image={sandbox_image!r}, namespace={namespace!r})
        sb.run(RunSpec(job_id="orphan", commands=(CommandSpec("sleep 120"),),
                       limits=Limits(timeout_secs=120)))
        """)
    proc = subprocess.Popen([sys.executable, "-c", client_code])
    try:
        wait_for_container(docker_sandbox)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        left = containers(docker_sandbox)
        assert len(left) == 1 and left[0]["Labels"][LABEL_JOB] == "orphan"
        DockerSandbox(docker_sandbox.client, default_image=sandbox_image, namespace=namespace)
        assert containers(docker_sandbox) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_artifacts_are_collected_without_following_symlinks(
        docker_sandbox: DockerSandbox, tmp_path: Path) -> None:
    make = ("mkdir -p out/deep && echo one > out/a.txt && printf 'bin\\0' > out/deep/b.bin && "
            "ln -s /etc/passwd out/passwd-link && ln -s /etc out/etc-link && "
            "echo top > top.log")
    saved = tmp_path / "artifacts"
    out = docker_sandbox.run(spec(make, artifacts=("out", "*.log", "out/etc-link/*"),
                                  artifacts_dir=saved))
    assert out.status == "success", out.error
    paths = [a.path for a in out.artifacts]
    assert paths == ["out/a.txt", "out/deep/b.bin", "top.log"]
    a = out.artifacts[0]
    assert a.sha256 == hashlib.sha256(b"one\n").hexdigest() and a.size_bytes == 4
    assert a.mime_type == "text/plain"
    assert (saved / "out/deep/b.bin").read_bytes() == b"bin\0"
    assert not (saved / "out/passwd-link").exists()


def test_more_than_128_artifacts_is_an_error(docker_sandbox: DockerSandbox) -> None:
    out = docker_sandbox.run(spec("mkdir o && for i in $(seq 200); do : > o/$i; done",
                                  artifacts=("o/*",)))
    assert out.status == "error" and "at most 128" in (out.error or "")
    assert out.artifacts == []


def test_missing_image_and_empty_commands_are_errors(docker_sandbox: DockerSandbox) -> None:
    out = docker_sandbox.run(spec("true", image="sha256:" + "0" * 64))
    assert out.status == "error" and "not present" in (out.error or "")
    out = docker_sandbox.run(RunSpec(job_id="x", commands=()))
    assert out.status == "error" and "no commands" in (out.error or "")


def test_a_big_workspace_is_streamed_in_not_held_in_host_memory(
        docker_sandbox: DockerSandbox, tmp_path: Path) -> None:
    size = 200 << 20
    work = tmp_path / "ws"
    (work / "src").mkdir(parents=True)  # one top-level folder holding everything
    with open(work / "src" / "big.bin", "wb") as fh:
        fh.truncate(size)  # sparse on the host; tar still reads and sends every byte
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = docker_sandbox.run(spec("wc -c < src/big.bin", workspace=work,
                                  limits=Limits(memory_mb=512, timeout_secs=60, disk_mb=300)))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.status == "success", out.error
    assert out.runs[0].stdout_preview == f"{size}\n"
    assert (rss_after - rss_before) < 100 * 1024  # KiB
    assert containers(docker_sandbox) == []
