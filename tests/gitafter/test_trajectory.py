"""Trajectories as review artifacts: `send --trajectory` tags the proposal, `show` displays
and checks it against the session rebuilt from the relay."""

from __future__ import annotations

from pathlib import Path

import anyio

from oa_node.node import build_node
from oa_node.trajectory import Trajectories
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file
from tests.gitafter.test_flow import announce


def record_session(cfg: Path) -> tuple[str, str]:
    """An agent's work session recorded on the relay through the node's "trajectory"
    capability (the NIP-SA plugin), as a provider or agent would."""
    node = build_node(cfg)
    traj = node.capability(Trajectories)
    assert traj is not None, "the NIP-SA plugin provides the trajectory capability"

    async def main() -> tuple[str, str]:
        try:
            rec = await traj.start(repo="demo", sha="0" * 40)
            await rec.record("user", {"text": "fix the README"})
            await rec.record("tool_start", {"tool": "editor", "path": "README.md"})
            await rec.record("agent", {"text": "done"})
            ref = await rec.end()
            return ref.session_id, ref.trajectory_hash
        finally:
            await node.pool.close()

    return anyio.run(main)


def node_config(tmp_path: Path, person: Person, relay: ThreadRelay) -> Path:
    data = tmp_path / f"node-{person.name}"
    data.mkdir()
    (data / "node.key").write_text(person.key_file.read_text())
    (data / "node.key").chmod(0o600)  # a key is refused when not 0600
    cfg = data / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{data}"\nrelays = ["{relay.url}"]\n')
    return cfg


def test_trajectory_hash_from_relays(cli: Cli, project: Project, relay: ThreadRelay,
                                     people: dict[str, Person], tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    cfg = node_config(tmp_path, c, relay)
    session, digest = record_session(cfg)
    commit_file(project.contributor, "README.md", "# demo\n\nbetter\n", "README: rewrite")
    sent = cli.ok("git", "send", "HEAD~1", "--trajectory", session, "-C",
                  str(project.contributor), "--config", str(cfg), "--json")

    mdir = ["-C", str(project.maintainer)]
    shown = cli.ok("git", "show", sent["root"][:8], "--check-trajectory", *mdir, "--json")
    assert shown["trajectory"] == {"session": session, "relay": relay.url, "hash": digest}
    assert shown["trajectory_check"]["ok"] is True
    assert shown["trajectory_check"]["computed_hash"] == digest
    text = cli.ok("git", "show", sent["root"][:8], *mdir)
    assert f"trajectory {session}" in text and digest in text


def test_trajectory_hash_given_and_checked(cli: Cli, project: Project, relay: ThreadRelay,
                                           people: dict[str, Person], tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    session, digest = record_session(node_config(tmp_path, c, relay))
    commit_file(project.contributor, "a.txt", "a\n", "add a")
    cargs = ["-C", str(project.contributor), "--key-file", str(c.key_file), "--relay",
             relay.url]
    assert "64 hex" in cli.fails("git", "send", "HEAD~1", "--trajectory", session,
                                 "--trajectory-hash", "nothex", *cargs)
    wrong = "f" * 64
    sent = cli.ok("git", "send", "HEAD~1", "--trajectory", session, "--trajectory-relay",
                  relay.url, "--trajectory-hash", wrong, *cargs, "--json")
    shown = cli.ok("git", "show", sent["root"], "--check-trajectory", "-C",
                   str(project.maintainer), "--json")
    assert shown["trajectory"]["hash"] == wrong
    check = shown["trajectory_check"]
    assert check["ok"] is False and check["computed_hash"] == digest and check["problems"]


def test_check_trajectory_reads_the_repository_relays_not_the_hint(
        cli: Cli, project: Project, relay: ThreadRelay, people: dict[str, Person],
        tmp_path: Path) -> None:
    """The relay a proposal names for its trajectory is its author's choice: `show
    --check-trajectory` reads from the repository's relays and contacts that one only with
    --allow-hinted-relays."""
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    connections: list[str] = []
    other = ThreadRelay(tmp_path / "other.db",
                        policies={"connect": [lambda conn: connections.append(conn.ip)]})
    other.start()
    try:
        session, digest = record_session(node_config(tmp_path, c, other))
        commit_file(project.contributor, "b.txt", "b\n", "add b")
        sent = cli.ok("git", "send", "HEAD~1", "--trajectory", session, "--trajectory-relay",
                      other.url, "--trajectory-hash", digest, "-C", str(project.contributor),
                      "--key-file", str(c.key_file), "--relay", relay.url, "--json")
        before = len(connections)
        assert before >= 1  # the counter counts: the recording node's connection
        mdir = ["-C", str(project.maintainer)]
        msg = cli.fails("git", "show", sent["root"], "--check-trajectory", *mdir)
        assert "--allow-hinted-relays" in msg and "no session" in msg, msg
        assert len(connections) == before, "the hinted relay was contacted"
        shown = cli.ok("git", "show", sent["root"], "--check-trajectory",
                       "--allow-hinted-relays", *mdir, "--json")
        assert shown["trajectory_check"]["ok"] is True
        assert len(connections) > before
    finally:
        other.stop()
