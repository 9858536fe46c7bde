"""Host-side repository fetch, the most exposed code on a provider.

The rules: clone only, into a fresh folder we create (git never runs in a directory the
request controls: ``GIT_DIR``/``GIT_WORK_TREE`` are always explicit); hooks off
(``core.hooksPath`` is an empty folder, ``--template=`` empty too); ``core.fsmonitor`` off;
``protocol.ext.allow=never``; only the URL schemes the provider allows, enforced twice (our
parser and git's own ``GIT_ALLOW_PROTOCOL``); no system/global config, credential helpers,
prompts or ssh keys; the request's ``env`` never reaches git.

Bounded work (:class:`FetchLimits`), because a stranger chooses the repository:

- **bytes received**: every git process runs with ``RLIMIT_FSIZE`` at the cap (set by a
  tiny exec shim, so it holds from git's first write; received objects always go into one
  pack file, ``fetch.unpackLimit=1``), and a watcher thread sums the object directory every
  20 ms and kills git's whole process group past the cap: a fetch stops while receiving,
  not after;
- **history**: branches and tags are fetched with ``--depth=1``; an abbreviated commit id
  (at least 7 hex digits) is looked for in the last ``short_id_depth`` commits of every
  branch and tag, never in the whole history;
- **checkout**: the commit's tree is listed (``ls-tree -r -l``) before anything is written
  to the work tree, and refused past ``max_files`` entries or ``max_checkout_bytes``;
- **time**: one deadline for the whole fetch, checkout included; a cancel token stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from oa_node import gitsafe

DEFAULT_ALLOWED_SCHEMES = ("https", "git")
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
MIN_SHORT_ID = 7
POLL_SECS = 0.02
#: Runs git with RLIMIT_FSIZE set before exec: no file git writes can outgrow the cap.
_SHIM = ("import os,resource,sys\n"
         "n=int(sys.argv[1])\n"
         "resource.setrlimit(resource.RLIMIT_FSIZE,(n,n))\n"
         "resource.setrlimit(resource.RLIMIT_CORE,(0,0))\n"
         "os.execvp(sys.argv[2],sys.argv[2:])\n")


class FetchError(Exception):
    """The repository could not be fetched, or the URL is not allowed; message is for users."""


class TooLarge(FetchError):
    """The repository is over one of the provider's caps (bytes, files)."""


class _Cancel(Protocol):
    @property
    def cancelled(self) -> bool: ...


@dataclass(frozen=True)
class FetchLimits:
    """What one fetch may cost the provider's host."""

    max_fetch_bytes: int = 200 << 20  # bytes git may write while receiving
    max_checkout_bytes: int = 1 << 30  # sum of the checked-out files' sizes
    max_files: int = 20_000  # entries in the commit's tree
    short_id_depth: int = 50  # commits per branch/tag searched for an abbreviated id


def check_url(url: str, allowed: tuple[str, ...] | list[str]) -> str:
    """Raise :class:`FetchError` unless ``url`` passes the project's one URL rule
    (:func:`oa_node.gitsafe.check_url`); returns the scheme."""
    try:
        return gitsafe.check_url(url, allowed)
    except gitsafe.UnsafeURL as exc:
        raise FetchError(str(exc)) from None


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit: str
    files: int = 0
    bytes: int = 0


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _config_args(hooks_dir: Path, allowed: tuple[str, ...]) -> list[str]:
    ssh = ("ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=none "
           "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new")
    pairs = {
        "core.hooksPath": str(hooks_dir),
        "core.fsmonitor": "false",
        "core.sshCommand": ssh,
        "advice.detachedHead": "false",
        "init.defaultBranch": "main",
        "gc.auto": "0",
        # received objects stay in one pack (one file, bounded by RLIMIT_FSIZE)
        "fetch.unpackLimit": "1",
        "transfer.unpackLimit": "1",
    }
    args = gitsafe.protocol_config(allowed)
    for key, value in pairs.items():
        args += ["-c", f"{key}={value}"]
    return args


def _env(dest: Path, home: Path, allowed: tuple[str, ...]) -> dict[str, str]:
    gitdir = dest / ".git"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_DIR": str(gitdir),
        "GIT_WORK_TREE": str(dest),
        "GIT_INDEX_FILE": str(gitdir / "index"),
        "GIT_OBJECT_DIRECTORY": str(gitdir / "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": "",
        "GIT_CEILING_DIRECTORIES": str(dest.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_COUNT": "0",
        "GIT_CONFIG_PARAMETERS": "",
        **gitsafe.protocol_env(allowed),
        "GIT_SSH_COMMAND": "",
        "GIT_SSH": "",
        "GIT_TRACE": "0",
    }


def dir_bytes(root: Path) -> int:
    """Apparent size of every file under ``root`` (files vanishing meanwhile are skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _kill(proc: subprocess.Popen[Any]) -> None:
    """Kill git and every helper it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(fh: IO[bytes], n: int = 2000) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - n))
    return fh.read().decode("utf-8", "replace").strip()


class _Git:
    """Runs git for one fetch: shared config, environment, deadline, cancel token."""

    def __init__(self, url: str, dest: Path, home: Path, allowed: tuple[str, ...],
                 deadline: float, timeout_secs: float, limits: FetchLimits,
                 cancel: _Cancel | None) -> None:
        self.url, self.dest, self.limits, self.cancel = url, dest, limits, cancel
        self.deadline, self.timeout_secs = deadline, timeout_secs
        self.env = _env(dest, home, allowed)
        self.cfg = _config_args(home / "hooks", allowed)

    def _start(self, args: tuple[str, ...], fsize: int, stdout: Any, stderr: IO[bytes]
               ) -> subprocess.Popen[bytes]:
        """git in its own process group; with ``fsize``, under that RLIMIT_FSIZE."""
        shim = [sys.executable, "-I", "-S", "-c", _SHIM, str(max(fsize, 1 << 20))]
        argv = [*(shim if fsize else []), "git", *self.cfg, *args]
        return subprocess.Popen(argv, env=self.env, cwd=self.dest, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True)

    def _stop_reason(self) -> str | None:
        if self.cancel is not None and self.cancel.cancelled:
            return "cancelled"
        if time.monotonic() > self.deadline:
            return f"fetching {self.url} took longer than {self.timeout_secs:g}s"
        return None

    def run(self, *args: str, watch_bytes: int = 0, fsize: int = 0) -> str:
        """Run ``git args``; with ``watch_bytes`` the git folder may not grow past it (and
        no file git writes past it), with ``fsize`` no file past that."""
        fsize = fsize or watch_bytes
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = self._start(args, fsize, out, err)
            peak = 0
            try:
                while True:
                    try:
                        proc.wait(POLL_SECS)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if watch_bytes:
                        peak = max(peak, dir_bytes(self.dest / ".git"))
                        if peak > watch_bytes:
                            _kill(proc)
                            raise TooLarge(f"repository {self.url} is larger than the "
                                           f"{_mib(watch_bytes)} this provider fetches "
                                           f"(stopped after {_mib(peak)})")
                    reason = self._stop_reason()
                    if reason:
                        _kill(proc)
                        raise FetchError(reason)
            finally:
                if proc.returncode is None:
                    _kill(proc)
            if proc.returncode != 0:
                detail = _tail(err)
                if watch_bytes and (proc.returncode == -signal.SIGXFSZ
                                    or "signal 25" in detail or "File too large" in detail):
                    raise TooLarge(f"repository {self.url} is larger than the "
                                   f"{_mib(watch_bytes)} this provider fetches")
                raise FetchError(f"git {args[0]} failed for {self.url}: {detail}")
            out.seek(0)
            return out.read(1 << 16).decode("utf-8", "replace").strip()

    def measure_tree(self, commit: str) -> tuple[int, int]:
        """(files, bytes) of ``commit``'s tree, refused past the caps before checkout;
        the listing is read as it comes and git stopped at the first cap crossed."""
        lim = self.limits
        files = total = 0
        with tempfile.TemporaryFile() as err:
            proc = self._start(("ls-tree", "-r", "-l", "-z", "--full-tree", commit),
                               0, subprocess.PIPE, err)
            assert proc.stdout is not None
            rest = b""
            try:
                while chunk := proc.stdout.read(1 << 16):
                    *entries, rest = (rest + chunk).split(b"\0")
                    for entry in entries:
                        meta = entry.split(b"\t", 1)[0].split()
                        files += 1
                        if len(meta) == 4 and meta[1] == b"blob" and meta[3].isdigit():
                            total += int(meta[3])
                    if files > lim.max_files:
                        raise TooLarge(f"repository {self.url} has more than {lim.max_files} "
                                       "files, more than this provider checks out")
                    if total > lim.max_checkout_bytes:
                        raise TooLarge(f"repository {self.url} at {commit[:12]} is more than "
                                       f"{_mib(lim.max_checkout_bytes)} of files, more than "
                                       "this provider checks out")
                    reason = self._stop_reason()
                    if reason:
                        raise FetchError(reason)
            finally:
                proc.stdout.close()
                if proc.poll() is None:
                    _kill(proc)
            if proc.returncode != 0:
                raise FetchError(f"git ls-tree failed for {self.url}: {_tail(err)}")
        return files, total


def fetch_repo(
    url: str,
    ref: str,
    dest: Path,
    *,
    allowed_schemes: tuple[str, ...] | list[str] = DEFAULT_ALLOWED_SCHEMES,
    timeout_secs: float = 120.0,
    limits: FetchLimits | None = None,
    cancel: _Cancel | None = None,
) -> Checkout:
    """Fetch ``url`` at ``ref`` into the new folder ``dest`` (must not exist yet)."""
    allowed = tuple(allowed_schemes)
    limits = limits or FetchLimits()
    check_url(url, allowed)
    if ref.startswith("-"):
        raise FetchError(f"git ref {ref!r} is not acceptable")
    dest.mkdir(parents=True, exist_ok=False)
    deadline = time.monotonic() + timeout_secs
    home = Path(tempfile.mkdtemp(prefix="oa-git-home-"))
    template = home / "template"
    (home / "hooks").mkdir()
    template.mkdir()
    git = _Git(url, dest, home, allowed, deadline, timeout_secs, limits, cancel)
    cap = limits.max_fetch_bytes
    try:
        git.run("init", "-q", f"--template={template}", str(dest))
        try:
            git.run("fetch", "-q", "--no-tags", "--depth=1", "--no-recurse-submodules",
                    "--", url, ref, watch_bytes=cap)
            target = "FETCH_HEAD"
        except TooLarge:
            raise
        except FetchError:
            if not _HEX.match(ref) or (cancel is not None and cancel.cancelled):
                raise
            if len(ref) < MIN_SHORT_ID:
                raise FetchError(f"commit id {ref!r} is too short to look up: give at least "
                                 f"{MIN_SHORT_ID} hex digits (or the full id)") from None
            # an abbreviated (or unadvertised) commit id: search the recent history only
            git.run("fetch", "-q", "--no-tags", f"--depth={limits.short_id_depth}",
                    "--no-recurse-submodules", "--", url,
                    "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
                    watch_bytes=cap)
            target = ref
        try:
            commit = git.run("rev-parse", "--verify", "-q", f"{target}^{{commit}}")
        except FetchError:
            if target == "FETCH_HEAD":
                raise
            raise FetchError(f"commit {ref} is not among the last {limits.short_id_depth} "
                             f"commits of any branch or tag of {url}; give a branch, a tag "
                             "or the full commit id") from None
        files, size = git.measure_tree(commit)
        git.run("checkout", "-q", "--detach", commit,
                fsize=max(limits.max_checkout_bytes, 1 << 20))
        return Checkout(path=dest, commit=commit, files=files, bytes=size)
    except FetchError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(home, ignore_errors=True)

