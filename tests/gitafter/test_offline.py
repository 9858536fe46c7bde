"""`apply --from-file`: review offline from events saved to a file (a JSON array or JSON
lines), with no relay; ids and signatures are checked as if from a relay."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from oa_node.client import RelayPool
from oa_node.nostr.event import Event
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay, commit_file, git_run
from tests.gitafter.test_flow import announce


def dump(url: str) -> list[Event]:
    async def main() -> list[Event]:
        async with RelayPool([url]) as pool:
            return await pool.query({"kinds": [30617, 1617, 1630, 1631, 1632, 1633]}, 5)

    return anyio.run(main)


def test_apply_from_file(cli: Cli, project: Project, relay: ThreadRelay,
                         people: dict[str, Person], tmp_path: Path) -> None:
    m, c, s = people["maintainer"], people["contributor"], people["stranger"]
    announce(cli, project, relay, m)
    cdir = project.contributor
    cargs = ["-C", str(cdir), "--relay", relay.url, "--json"]
    commit_file(cdir, "a.txt", "a\n", "add a")
    commit_file(cdir, "win.txt", "w\r\n", "add a CRLF file")
    want = git_run(cdir, "rev-list", "--reverse", "HEAD~2..HEAD").split()
    sent = cli.ok("git", "send", "HEAD~2", "--key-file", str(c.key_file), *cargs)
    # A stranger's "revision" is in the dump too: it does not count.
    commit_file(cdir, "evil.txt", "evil\n", "a stranger's revision")
    cli.ok("git", "send", "HEAD~1", "--in-reply-to", sent["root"], "--key-file",
           str(s.key_file), *cargs)
    one = [e.to_dict() for e in dump(relay.url)]
    git_run(cdir, "checkout", "-q", "-b", "other", "main")
    commit_file(cdir, "b.txt", "b\n", "another proposal")
    cli.ok("git", "send", "HEAD~1", "--key-file", str(c.key_file), *cargs)
    events = dump(relay.url)
    relay.stop()  # offline from here on

    as_array = tmp_path / "events.json"
    as_array.write_text(json.dumps([e.to_dict() for e in events]))
    as_lines = tmp_path / "events.jsonl"
    as_lines.write_text("".join(e.to_json() + "\n" for e in events))
    mdir = ["-C", str(project.maintainer)]
    for i, (path, ident) in enumerate([(as_array, [sent["root"]]),
                                       (as_lines, [sent["events"][1][:10]])]):
        out = cli.ok("git", "apply", *ident, "--from-file", str(path), "--branch", f"off-{i}",
                     *mdir, "--json")
        assert out["commits"] == want and out["verified"] is True
        git_run(project.maintainer, "checkout", "-q", "main")

    # Two proposals in the file: one must be named; with one, none need be.
    assert "name one" in cli.fails("git", "apply", "--from-file", str(as_array), *mdir)
    single = tmp_path / "one.json"
    single.write_text(json.dumps(one))
    out = cli.ok("git", "apply", "--from-file", str(single), "--branch", "off-one", *mdir,
                 "--json")
    assert out["commits"] == want
    git_run(project.maintainer, "checkout", "-q", "main")
    # A tampered event is refused, naming its place in the file.
    bad = [e.to_dict() for e in events]
    first = next(d for d in bad if d["id"] == sent["events"][1])
    first["content"] = first["content"].replace("+w", "+x")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bad))
    msg = cli.fails("git", "apply", sent["root"], "--from-file", str(tampered), *mdir)
    assert "wrong id or signature" in msg and "event " in msg
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "not a JSON array or JSON lines" in cli.fails(
        "git", "apply", "--from-file", str(garbage), *mdir)
    assert "cannot read" in cli.fails("git", "apply", "--from-file",
                                      str(tmp_path / "missing.json"), *mdir)
