"""Parsing a stranger's files for ``oa.repo_index.v1``, in a child process with limits.

``ast.parse`` and ``tomllib``/``json`` on hostile input can take a lot of memory, stack or
time; a crash or a hang there must cost one file's entry, never the provider. So the
parent (:func:`parse_files`) runs this file as a script (``python -I -S``: standard library
only, no site, no environment) that first limits itself (``RLIMIT_AS`` = the configured
memory, ``RLIMIT_CPU`` = the job's remaining time, no core files, no files written, few
descriptors), then parses the listed files one by one and writes one JSON line per file.
The parent waits at most ``file_secs`` for each line (a child's first line also gets
``STARTUP_SECS`` for the interpreter to start): a file that takes longer, or a child
that dies (memory, CPU, a crash), gets an error entry for the file it was on, and a fresh
child carries on with the next file; after ``max_failures`` such files the index is refused.
Every file is opened without following links and parsed only up to ``MAX_PARSE_BYTES``.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MAX_PARSE_BYTES = 1 << 20
FILE_SECS = 10.0
MAX_FAILURES = 8
STARTUP_SECS = 5.0  # a child's start, on top of its first file's time
MAX_LINE_BYTES = 64 << 20
_REQ_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


class ParseLimitError(Exception):
    """Too many files exhausted the parser's limits; the message is for users."""


# --- the parsers (run in the child) ----------------------------------------------------------


def _read_small(root: str, rel: str) -> bytes | None:
    """The file's bytes, or ``None`` when it is not a regular file or is too big to parse."""
    try:
        fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > MAX_PARSE_BYTES:
            return None
        return fh.read(MAX_PARSE_BYTES + 1)[:MAX_PARSE_BYTES]


def python_symbols(source: bytes) -> list[dict[str, Any]]:
    """Top-level functions, classes, their methods and module-level names, with lines."""
    tree = ast.parse(source)
    out: list[dict[str, Any]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "async_function" if isinstance(node, ast.AsyncFunctionDef) else "function"
            out.append({"name": node.name, "kind": kind, "line": node.lineno})
        elif isinstance(node, ast.ClassDef):
            out.append({"name": node.name, "kind": "class", "line": node.lineno})
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.append({"name": f"{node.name}.{sub.name}", "kind": "method",
                                "line": sub.lineno})
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    out.append({"name": t.id, "kind": "variable", "line": node.lineno})
    return out


def symbols_entry(root: str, path: str) -> dict[str, Any]:
    data = _read_small(root, path)
    if data is None:
        return {"path": path, "error": "not parsed (larger than 1 MiB)"}
    try:
        return {"path": path, "symbols": python_symbols(data)}
    except SyntaxError as exc:
        return {"path": path, "error": f"syntax error at line {exc.lineno}"}
    except (RecursionError, MemoryError, ValueError) as exc:
        return {"path": path, "error": f"not parsed: {type(exc).__name__}"}


def _pep508(spec: str) -> tuple[str, str]:
    m = _REQ_LINE.match(spec)
    if not m:
        return spec.strip(), ""
    return m.group(1).lower().replace("_", "-"), (m.group(2) or "") + m.group(3).strip()


def is_dependency_file(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base in ("pyproject.toml", "package.json") or (
        base.startswith("requirements") and base.endswith(".txt"))


def dependency_entries(root: str, path: str) -> list[dict[str, Any]]:
    """Declared dependencies of one pyproject.toml, requirements*.txt or package.json."""
    base = path.rsplit("/", 1)[-1]
    deps: list[dict[str, Any]] = []

    def add(ecosystem: str, scope: str, name: str, spec: str) -> None:
        deps.append({"file": path, "ecosystem": ecosystem, "scope": scope, "name": name,
                     "spec": spec})

    data = _read_small(root, path)
    if data is None:
        return []
    try:
        text = data.decode("utf-8")
        if base == "pyproject.toml":
            doc = tomllib.loads(text)
            project = doc.get("project", {})
            for spec in project.get("dependencies", []) or []:
                add("pypi", "runtime", *_pep508(str(spec)))
            for extra, specs in (project.get("optional-dependencies") or {}).items():
                for spec in specs or []:
                    add("pypi", f"extra:{extra}", *_pep508(str(spec)))
            poetry = doc.get("tool", {}).get("poetry", {})
            for name, spec in (poetry.get("dependencies") or {}).items():
                if name.lower() != "python":
                    add("pypi", "runtime", name.lower(), json.dumps(spec)
                        if not isinstance(spec, str) else spec)
        elif base == "package.json":
            doc = json.loads(text)
            for scope in ("dependencies", "devDependencies", "peerDependencies",
                          "optionalDependencies"):
                for name, spec in (doc.get(scope) or {}).items():
                    add("npm", scope, str(name), str(spec))
        else:
            for line in text.splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line or line.startswith(("#", "-")):
                    continue
                add("pypi", "runtime", *_pep508(line))
    except (ValueError, TypeError, AttributeError, tomllib.TOMLDecodeError,
            RecursionError, MemoryError) as exc:
        return [{"file": path, "error": f"not parsed: {type(exc).__name__}: {exc}"[:300]}]
    return deps


def failed_entry(kind: str, path: str, reason: str) -> Any:
    """What a file gets when the parser could not finish it."""
    if kind == "symbols":
        return {"path": path, "error": reason}
    return [{"file": path, "error": reason}]


def _worker(cpu_secs: int, memory_bytes: int) -> None:
    """The child: limit itself, then one JSON line per task read from stdin."""
    for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NOFILE, 16)):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_secs, cpu_secs + 1))
    job = json.loads(sys.stdin.read())
    root, tasks = job["root"], job["tasks"]
    for i in range(job["start"], len(tasks)):
        kind, path = tasks[i]
        try:
            out = symbols_entry(root, path) if kind == "symbols" else dependency_entries(
                root, path)
            line = json.dumps({"i": i, "out": out}, separators=(",", ":"))
        except (MemoryError, RecursionError) as exc:
            line = json.dumps({"i": i, "out": failed_entry(
                kind, path, f"not parsed: {type(exc).__name__}")})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --- the parent ------------------------------------------------------------------------------


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _one_child(root: Path, tasks: Sequence[tuple[str, str]], start: int, results: list[Any],
               deadline: float, memory_mb: int, file_secs: float,
               check: Callable[[], None] | None) -> tuple[int, str]:
    """Run one child from ``start``; returns (the index it stopped on, why) or
    (len(tasks), "") when it finished."""
    cpu = max(1, math.ceil(deadline - time.monotonic()))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, str(cpu), str(memory_mb << 20)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=root, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    i = start
    try:
        try:
            proc.stdin.write(json.dumps({"root": str(root), "tasks": list(tasks),
                                         "start": start}).encode())
            proc.stdin.close()
        except BrokenPipeError:
            return i, "not parsed: the parser could not start"
        fd = proc.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while i < len(tasks):
                if check is not None:
                    check()
                # the first file also waits for the child to start
                grace = STARTUP_SECS if i == start else 0.0
                wait = min(file_secs + grace, deadline - time.monotonic())
                if wait <= 0 or not sel.select(wait):
                    if time.monotonic() >= deadline:
                        return i, "not parsed: the job's time limit was reached"
                    return i, f"not parsed: took longer than {file_secs:g}s"
                data = os.read(fd, 1 << 16)
                if not data:
                    return i, ("not parsed: the parser stopped (memory or CPU limit, or a "
                               "crash)")
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg.get("i") != i:
                        return i, "not parsed: the parser answered out of order"
                    results[i] = msg["out"]
                    i += 1
                if len(buf) > MAX_LINE_BYTES:
                    return i, "not parsed: its index is too large"
        return i, ""
    finally:
        _kill(proc)
        proc.stdout.close()


def parse_files(root: Path, tasks: Sequence[tuple[str, str]], *, deadline: float,
                memory_mb: int = 512, file_secs: float = FILE_SECS,
                max_failures: int = MAX_FAILURES,
                check: Callable[[], None] | None = None) -> list[Any]:
    """One result per task (``("symbols"|"dependencies", path)``), in order; parsed in
    child processes with limits (see the module docstring). Raises
    :class:`ParseLimitError` past ``max_failures`` files the parser could not finish, and
    whatever ``check`` raises (cancel, deadline) with the child killed."""
    results: list[Any] = [None] * len(tasks)
    start, failures = 0, 0
    while start < len(tasks):
        stopped, why = _one_child(root, tasks, start, results, deadline, memory_mb, file_secs,
                                  check)
        if stopped >= len(tasks):
            break
        if time.monotonic() >= deadline and check is not None:
            check()  # the caller turns the deadline into its own status
        failures += 1
        if failures > max_failures:
            raise ParseLimitError(f"more than {max_failures} files exhausted the parser's "
                                  f"limits ({memory_mb} MiB, {file_secs:g}s per file); "
                                  "the repository was not indexed")
        kind, path = tasks[stopped]
        results[stopped] = failed_entry(kind, path, why)
        start = stopped + 1
    return results


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]))
