"""In-container job runner: one container per job, no ``docker exec`` round trips.

This file is standalone (stdlib only, Python >= 3.9) because it runs *inside* the sandbox
image, started as the container's own process (``python3 -I runner.py``). The host speaks to
it over the container's attached stdin/stdout:

stdin:  one JSON line (the job spec), then an uncompressed tar stream of the workspace.
stdout: frames ``OA1 <kind> <length>\\n<payload>``. Kinds: ``info`` (system facts, JSON),
        ``run`` (one finished command, JSON), ``end`` (summary, JSON) and finally
        ``artifacts`` with length ``-1``: a tar stream of the collected artifacts up to EOF.

The commands' own output never reaches stdout: it is read from pipes, hashed in full and
only a capped preview is kept, so a job printing 1 GiB costs the host a few hundred bytes.
The runner enforces the job deadline itself (so the later commands are reported as not
run); the host keeps a harder watchdog in case the runner cannot.
"""

import ctypes
import glob
import hashlib
import json
import os
import platform
import selectors
import signal
import stat
import sys
import tarfile
import time

PROTOCOL = "OA1"
TIMEOUT_EXIT = 124
MAX_ARTIFACTS = 128
READ_CHUNK = 1 << 16
DRAIN_GRACE_SECS = 1.0
OUT = sys.stdout.buffer


def frame(kind, payload):
    if not isinstance(payload, bytes):
        payload = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    OUT.write(f"{PROTOCOL} {kind} {len(payload)}\n".encode() + payload)
    OUT.flush()


def make_undumpable():
    """Keep same-uid job processes from reading /proc/1/fd or ptrace-ing the runner."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass


def read_spec():
    line = sys.stdin.buffer.readline(1 << 20)
    if not line.endswith(b"\n"):
        raise ValueError("job spec line missing or longer than 1 MiB")
    return json.loads(line)


def extract_workspace(root):
    """Unpack the host's tar stream; member names are checked to stay under ``root``."""
    real_root = os.path.realpath(root)
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
        for member in tar:
            target = os.path.realpath(os.path.join(root, member.name))
            if target != real_root and not target.startswith(real_root + os.sep):
                raise ValueError(f"workspace tar member escapes the workspace: {member.name!r}")
            if not (member.isfile() or member.isdir() or member.issym()):
                continue
            member.uid = member.gid = os.getuid()
            member.mode &= 0o755 if not member.isdir() else 0o777
            member.mode |= 0o600 if not member.isdir() else 0o700
            tar.extract(member, root, set_attrs=True, numeric_owner=True)


def oom_kills():
    """The memory cgroup's OOM-kill count (cgroup v2 memory.events, v1 memory.oom_control)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                for ln in fh:
                    parts = ln.split()
                    if len(parts) == 2 and parts[0] == "oom_kill":
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return None


def system_info(spec):
    def read(path):
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return None

    mem = read("/sys/fs/cgroup/memory.max") or read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "os": read("/etc/debian_version") and ("debian " + read("/etc/debian_version")),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "cgroup_memory_limit": mem,
        "uid": os.getuid(),
    }


class Stream:
    """One command output pipe: full-stream sha256, byte count and a capped preview."""

    def __init__(self, fd, cap):
        self.fd = fd
        self.cap = cap
        self.hash = hashlib.sha256()
        self.size = 0
        self.preview = bytearray()

    def feed(self, data):
        self.hash.update(data)
        self.size += len(data)
        room = self.cap - len(self.preview)
        if room > 0:
            self.preview += data[:room]


def reap(pid):
    """Reap every exited child (we may be PID 1); return ``pid``'s exit code once seen."""
    code = None
    while True:
        try:
            got, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if got == 0:
            return code
        if got == pid:
            if os.WIFEXITED(status):
                code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                code = 128 + os.WTERMSIG(status)


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def run_command(command, env, cwd, deadline, cap):
    """Run one command; returns (exit_code, timed_out, stdout Stream, stderr Stream)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    argv = command if isinstance(command, list) else ["/bin/sh", "-c", command]
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setsid()
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 65536)
            for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:
            try:
                os.write(2, (f"oa-runner: cannot run command: {exc}\n").encode())
            finally:
                os._exit(127)
    os.close(out_w)
    os.close(err_w)
    streams = {out_r: Stream(out_r, cap), err_r: Stream(err_r, cap)}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    code = None
    timed_out = False
    drain_until = None
    while streams and sel.get_map():
        now = time.monotonic()
        if code is None:
            code = reap(pid)
            if code is not None:
                # Background leftovers of the finished command must not keep it alive.
                kill_group(pid)
                drain_until = now + DRAIN_GRACE_SECS
        if code is None and now >= deadline:
            kill_group(pid)
            timed_out = True
            drain_until = now + DRAIN_GRACE_SECS
            code = TIMEOUT_EXIT
        if drain_until is not None and now >= drain_until:
            break
        limit = drain_until if drain_until is not None else deadline
        wait = max(0.0, min(0.2, limit - now))
        for key, _ in sel.select(wait):
            try:
                data = os.read(key.fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if data:
                streams[key.fd].feed(data)
            else:
                sel.unregister(key.fd)
    sel.close()
    while code is None:
        left = deadline - time.monotonic()
        if left <= 0:
            kill_group(pid)
            timed_out, code = True, TIMEOUT_EXIT
            break
        code = reap(pid)
        if code is None:
            time.sleep(min(0.01, left))
    kill_group(pid)
    reap(-1)
    result = (code, timed_out, streams[out_r], streams[err_r])
    for fd in streams:
        os.close(fd)
    return result


def collect_artifacts(root, patterns):
    """Regular files matched by ``patterns`` (dirs recurse), never through a symlink."""
    real_root = os.path.realpath(root)
    found = []
    seen = set()

    def inside(path):
        parent = os.path.realpath(os.path.dirname(path))
        return parent == real_root or parent.startswith(real_root + os.sep)

    def add(path):
        rel = os.path.relpath(path, root)
        if rel in seen or not inside(path):
            return
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            seen.add(rel)
            found.append(rel)

    for pattern in patterns:
        for match in sorted(glob.glob(pattern, root_dir=root, recursive=True)):
            path = os.path.join(root, match)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or not inside(path):
                continue
            if stat.S_ISDIR(st.st_mode):
                for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                    dirnames.sort()
                    for name in sorted(filenames):
                        add(os.path.join(dirpath, name))
            else:
                add(path)
    return found


def main():
    started = time.monotonic()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    make_undumpable()
    spec = read_spec()
    deadline = started + float(spec["timeout_secs"])
    root = spec["mount_path"]
    cap = int(spec["preview_bytes"])
    frame("info", system_info(spec))
    extract_workspace(root)
    os.chdir(root)
    env = dict(spec["base_env"])
    env.update(spec["env"])
    status = "success"
    error = None
    for index, command in enumerate(spec["commands"]):
        if time.monotonic() >= deadline:
            status, error = "timeout", f"time limit reached before command {index}"
            break
        cwd = os.path.normpath(os.path.join(root, command["workdir"]))
        if not os.path.isdir(cwd):
            msg = "oa-runner: workdir not found: {}\n".format(command["workdir"]).encode()
            frame("run", {"index": index, "cmd": command["cmd"], "exit_code": 127,
                          "duration_ms": 0, "timed_out": False, "oom_killed": False,
                          "stdout": [hashlib.sha256().hexdigest(), 0, ""],
                          "stderr": [hashlib.sha256(msg).hexdigest(), len(msg),
                                     msg[:cap].decode("utf-8", "replace")]})
            if not command["continue_on_fail"]:
                status, error = "failed", "workdir {!r} does not exist".format(command["workdir"])
                break
            continue
        ooms = oom_kills()
        t0 = time.monotonic()
        code, timed_out, out, err = run_command(command["cmd"], env, cwd, deadline, cap)
        after = oom_kills()
        oom = ooms is not None and after is not None and after > ooms
        frame("run", {
            "index": index,
            "cmd": command["cmd"],
            "exit_code": code,
            "duration_ms": int((time.monotonic() - t0) * 1000),
            "timed_out": timed_out,
            "oom_killed": oom,
            "stdout": [out.hash.hexdigest(), out.size, out.preview.decode("utf-8", "replace")],
            "stderr": [err.hash.hexdigest(), err.size, err.preview.decode("utf-8", "replace")],
        })
        if timed_out:
            status, error = "timeout", f"command {index} exceeded the time limit"
            break
        if code != 0 and not command["continue_on_fail"]:
            status = "failed"
            note = " (killed: out of memory)" if oom else ""
            error = f"command {index} exited with {code}{note}"
            break
    artifacts = []
    if status != "timeout" and spec["artifacts"]:
        artifacts = collect_artifacts(root, spec["artifacts"])
        if len(artifacts) > MAX_ARTIFACTS:
            status = "error"
            error = f"artifact patterns match {len(artifacts)} files (at most {MAX_ARTIFACTS})"
            artifacts = []
    frame("end", {"status": status, "error": error, "artifacts": artifacts,
                  "duration_ms": int((time.monotonic() - started) * 1000)})
    OUT.write((f"{PROTOCOL} artifacts -1\n").encode())
    with tarfile.open(fileobj=OUT, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in artifacts:
            if time.monotonic() >= deadline:
                break
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    OUT.flush()


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report, never hang: the host turns this into status error
        sys.stderr.write(f"oa-runner: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        sys.exit(3)
