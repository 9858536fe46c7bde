"""Host-side repository fetch, the most exposed code on a provider (DESIGN.md §4).

The rules: clone only, into a fresh folder we create (git never runs in a directory the
request controls: ``GIT_DIR``/``GIT_WORK_TREE`` are always explicit); hooks off
(``core.hooksPath`` is an empty folder, ``--template=`` empty too); ``core.fsmonitor`` off;
``protocol.ext.allow=never``; only the URL schemes the provider allows, enforced twice (our
parser and git's own ``GIT_ALLOW_PROTOCOL``); no system/global config, credential helpers,
prompts or ssh keys; shallow where possible; the request's ``env`` never reaches git.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import git
import git.exc

from oa_node import gitsafe

DEFAULT_ALLOWED_SCHEMES = ("https", "git")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


class FetchError(Exception):
    """The repository could not be fetched, or the URL is not allowed; message is for users."""


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
    }
    args = gitsafe.protocol_config(allowed)
    for key, value in pairs.items():
        args += ["-c", f"{key}={value}"]
    return args


def _env(dest: Path, home: Path, allowed: tuple[str, ...]) -> dict[str, str]:
    gitdir = dest / ".git"
    return {
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


def fetch_repo(
    url: str,
    ref: str,
    dest: Path,
    *,
    allowed_schemes: tuple[str, ...] | list[str] = DEFAULT_ALLOWED_SCHEMES,
    timeout_secs: float = 120.0,
) -> Checkout:
    """Fetch ``url`` at ``ref`` into the new folder ``dest`` (must not exist yet)."""
    allowed = tuple(allowed_schemes)
    check_url(url, allowed)
    if ref.startswith("-"):
        raise FetchError(f"git ref {ref!r} is not acceptable")
    dest.mkdir(parents=True, exist_ok=False)
    deadline = time.monotonic() + timeout_secs
    home = Path(tempfile.mkdtemp(prefix="oa-git-home-"))
    hooks = home / "hooks"
    template = home / "template"
    hooks.mkdir()
    template.mkdir()
    env = _env(dest, home, allowed)
    cfg = _config_args(hooks, allowed)
    runner = git.Git(str(dest))

    def run(*args: str) -> str:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"fetching {url} took longer than {timeout_secs:g}s")
        try:
            out = runner.execute(["git", *cfg, *args], env=env, kill_after_timeout=left,
                                 stdout_as_string=True, with_extended_output=False)
        except git.exc.GitCommandError as exc:
            detail = (exc.stderr or "").strip().replace("stderr: ", "")[-2000:]
            raise FetchError(f"git {args[0]} failed for {url} at {ref}: {detail}") from None
        return str(out).strip()

    try:
        run("init", "-q", f"--template={template}", str(dest))
        try:
            run("fetch", "-q", "--no-tags", "--depth=1", "--no-recurse-submodules", "--", url, ref)
            target = "FETCH_HEAD"
        except FetchError:
            if not _HEX.match(ref):
                raise
            # An abbreviated (or unadvertised) commit id: fetch everything, resolve locally.
            run("fetch", "-q", "--no-recurse-submodules", "--", url,
                "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
            target = ref
        commit = run("rev-parse", "--verify", "-q", f"{target}^{{commit}}")
        run("checkout", "-q", "--detach", commit)
        return Checkout(path=dest, commit=commit)
    except FetchError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(home, ignore_errors=True)
