"""What `oa-node git` prints is usable as it is: `show --raw | git am` reproduces the
commits, `show --patches` never wraps a line, ids and naddrs are printed whole."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from oa_node.nostr import nip19
from tests.gitafter.conftest import (
    GIT_ENV,
    Cli,
    Person,
    Project,
    ThreadRelay,
    commit_file,
    git_run,
)
from tests.gitafter.test_flow import announce


def test_show_raw_feeds_git_am(cli: Cli, project: Project, relay: ThreadRelay,
                               people: dict[str, Person], tmp_path: Path) -> None:
    c = people["contributor"]
    announce(cli, project, relay, people["maintainer"])
    cdir = project.contributor
    long_line = "x" * 300 + "\n"
    shas = [commit_file(cdir, "long.txt", long_line * 3 + "\tindented by a tab  \n",
                        "add a file with long lines"),
            commit_file(cdir, "win.txt", "dos\r\nline\r\n", "add a CRLF file"),
            commit_file(cdir, "b.bin", bytes(range(256)), "add binary")]
    git_run(cdir, "mv", "long.txt", "renamed.txt")
    git_run(cdir, "commit", "-q", "-m", "rename, with a body\n\nthat says why")
    shas.append(git_run(cdir, "rev-parse", "HEAD"))
    sent = cli.ok("git", "send", "HEAD~4", "-C", str(cdir), "--key-file", str(c.key_file),
                  "--relay", relay.url, "--json")
    mdir = ["-C", str(project.maintainer)]
    res = cli("git", "show", sent["root"], "--raw", *mdir)
    assert res.exit_code == 0, res.output
    mbox = res.stdout_bytes
    assert b"dos\r\nline\r\n" not in mbox  # (the patch holds +dos\r\n lines, CR kept)
    assert b"+dos\r\n" in mbox and (long_line.encode() in mbox or b"x" * 300 in mbox)

    # The maintainer pipes it to git am on the patches' parent: the same commit ids.
    git_run(project.maintainer, "checkout", "-q", "-b", "am-test", "main")
    env = {**os.environ, **GIT_ENV, "GIT_COMMITTER_NAME": "Contributor",
           "GIT_COMMITTER_EMAIL": "contributor@example.org"}
    subprocess.run(["git", "am", "--keep-cr", "--committer-date-is-author-date"],
                   cwd=project.maintainer, input=mbox, env=env, check=True,
                   capture_output=True)
    assert git_run(project.maintainer, "rev-list", "--reverse", "main..HEAD"
                   ).split() == shas

    # --patches prints each 300-character line whole, on one line, tabs and trailing
    # spaces kept (Rich made the tab spaces); terminal controls shown, not obeyed.
    out = cli.ok("git", "show", sent["root"], "--patches", *mdir)
    assert "+" + "x" * 300 + "\n" in out and "+\tindented by a tab  \n" in out


def test_ids_and_naddr_are_printed_whole(cli: Cli, project: Project, relay: ThreadRelay,
                                         people: dict[str, Person]) -> None:
    m = people["maintainer"]
    long_relay = relay.url + "/" + "p" * 150
    out = cli.ok("git", "init", "-C", str(project.maintainer), "--key-file", str(m.key_file),
                 "--relay", long_relay, "-d", "demo")
    line = next(ln for ln in out.splitlines() if "naddr" in ln)
    naddr = line.split()[-1]
    assert len(naddr) > 200 and nip19.decode(naddr).data["relays"] == [long_relay]
    commit_file(project.contributor, "y.txt", "y\n", "add y")
    out = cli.ok("git", "send", "HEAD~1", "-C", str(project.contributor), "--key-file",
                 str(people["contributor"].key_file), "--relay", relay.url)
    nevent = next(ln for ln in out.splitlines() if "nevent" in ln).split()[-1]
    assert nip19.decode(nevent).prefix == "nevent"
