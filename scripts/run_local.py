"""``make run``: the whole marketplace on one local node, set up once, then started.

The first time, in DATA_DIR (default ``~/.oa-node``): ``oa-node init`` (relay on PORT), two
connections of the node's own ledger wallet made with ``oa-node wallet create --uri-file``
(``provider``, what the provider earns into, as the node's ``[wallet]``; ``buyer``, what
the buyer pays from, as ``[wallet.accounts] buyer``: a ledger connection cannot pay
itself), a faucet deposit into ``buyer`` (``oa-node wallet deposit``, this ledger only),
the provider and buyer roles enabled, ``file://`` repositories allowed for this node's
sandbox (a local node running local code; a public provider keeps the default), and an
example git repository to run a job on. Then it prints the commands to try and starts
``oa-node start``. When Docker is not reachable it says so in one line and runs the relay
(and wallet) only: ``OA_NODE_DISABLE_PLUGINS=provider,buyer`` for that start.

Every step is an ordinary ``oa-node`` command; the config edits set keys ``oa-node init``
wrote (commented or not), so the file stays the documented starter config.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DEPOSIT_MSAT = 1_000_000
EXAMPLE_FILES = {
    "README.md": "An example repository for `make run`: one passing test.\n",
    "test_math.py": "def test_add():\n    assert 1 + 1 == 2\n",
}
TEST_CMD = "python3 -m pytest -q -p no:cacheprovider"
GIT_ENV = {"GIT_AUTHOR_NAME": "oa-node", "GIT_AUTHOR_EMAIL": "oa-node@localhost",
           "GIT_COMMITTER_NAME": "oa-node", "GIT_COMMITTER_EMAIL": "oa-node@localhost",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def oa_node() -> str:
    """The ``oa-node`` beside this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).with_name("oa-node")
    return str(here) if here.exists() else "oa-node"


def oa(*args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([oa_node(), *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"run_local: `oa-node {' '.join(args)}` failed")
    if not quiet:
        sys.stdout.write(res.stdout)
    return res


def docker_ready() -> str | None:
    """None when jobs can run here (building the base image once if needed), else why not."""
    res = subprocess.run([oa_node(), "sandbox", "doctor", "--json"], capture_output=True,
                         text=True)
    try:
        checks = {c["check"]: c for c in json.loads(res.stdout)["checks"]}
    except (ValueError, KeyError, TypeError):
        return "oa-node sandbox doctor gave no answer: " + res.stderr.strip()[:200]
    daemon = checks.get("docker daemon", {})
    if not daemon.get("ok"):
        return f"Docker is not reachable ({daemon.get('detail') or daemon.get('fix')})"
    if not checks.get("image", {}).get("ok"):
        print("building the sandbox base image once (oa-node sandbox build-image)...",
              flush=True)
        built = subprocess.run([oa_node(), "sandbox", "build-image"])
        if built.returncode != 0:
            return "the sandbox base image could not be built (oa-node sandbox build-image)"
    return None


def set_keys(text: str, section: str, values: dict[str, str]) -> str:
    """``text`` with ``key = value`` (TOML) for each key of ``[section]``, replacing the
    line ``init`` wrote for it (``key = ...`` or ``# key = ...``)."""
    head = re.search(rf"(?m)^\[{re.escape(section)}\]\n", text)
    if head is None:
        raise SystemExit(f"run_local: no [{section}] in the config written by oa-node init")
    nxt = re.search(r"(?m)^\[", text[head.end():])
    end = head.end() + nxt.start() if nxt else len(text)
    body = text[head.end():end]
    for key, value in values.items():
        body, n = re.subn(rf"(?m)^(# )?{re.escape(key)} = .*$", f"{key} = {value}", body,
                          count=1)
        if n == 0:
            body = f"{key} = {value}\n" + body
    return text[:head.end()] + body + text[end:]


def make_example_repo(path: Path) -> None:
    path.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}
    git = ["git", "-C", str(path)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, env=env)
    for name, text in EXAMPLE_FILES.items():
        (path / name).write_text(text)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "An example repository for make run"], check=True,
                   env=env)


def setup(data: Path, port: int) -> None:
    cfg = data / "node.toml"
    oa("init", str(data), "--relay-port", str(port), quiet=False)
    text = cfg.read_text()
    text = set_keys(text, "ledger_wallet", {"enabled": "true"})
    text = set_keys(text, "wallet", {
        "backend": '"nwc"', "uri_file": '"provider.uri"',
        "accounts": '{ buyer = { uri_file = "buyer.uri" } }'})
    text = set_keys(text, "provider", {"enabled": "true"})
    text = set_keys(text, "buyer", {"enabled": "true", "wallet_account": '"buyer"'})
    text = set_keys(text, "sandbox", {"allowed_url_schemes": '["https", "git", "file"]'})
    cfg.write_text(text)  # keeps init's 0600
    for name in ("provider", "buyer"):
        oa("wallet", "create", name, "--uri-file", str(data / f"{name}.uri"), "-c", str(cfg))
    oa("wallet", "deposit", "buyer", str(DEPOSIT_MSAT), "-c", str(cfg))
    make_example_repo(data / "example-repo")
    print(f"set up {data}: relay ws://127.0.0.1:{port}, ledger wallet (buyer funded with "
          f"{DEPOSIT_MSAT} msat), provider and buyer, example repository")


def next_commands(data: Path) -> list[str]:
    """What to try in a second terminal (the README's tour)."""
    cfg = shlex.quote(str(data / "node.toml"))
    repo = shlex.quote(f"file://{data / 'example-repo'}")
    return [
        f"export OA_NODE_CONFIG={cfg}",
        f"oa-node job submit sandbox_run --repo {repo} --ref main --cmd '{TEST_CMD}' --wait",
        "oa-node job result ID    # ID: the job id printed above (a prefix will do)",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", nargs="?", default="~/.oa-node")
    ap.add_argument("--port", type=int, default=7447, help="the relay's port (first run)")
    ap.add_argument("--setup-only", action="store_true", help="set up, print, do not start")
    args = ap.parse_args(argv)
    data = Path(args.data_dir).expanduser().resolve()
    cfg = data / "node.toml"
    why_not = docker_ready()
    if not cfg.exists():
        setup(data, args.port)
    env = dict(os.environ)
    if why_not is None:
        print("\nIn a second terminal (from this folder, `. .venv/bin/activate` first), try:")
        for line in next_commands(data):
            print("  " + line)
        print()
    else:
        print(f"{why_not}: running the relay and wallet only (no provider, no buyer); "
              "`oa-node sandbox doctor` says what to fix.")
        env["OA_NODE_DISABLE_PLUGINS"] = ",".join(
            x for x in (env.get("OA_NODE_DISABLE_PLUGINS", ""), "provider,buyer") if x)
    sys.stdout.flush()
    if args.setup_only:
        return 0
    os.execve(oa_node(), [oa_node(), "start", "--config", str(cfg)], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
