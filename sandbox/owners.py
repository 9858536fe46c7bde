"""Who owns a sandbox container, and whether that owner still lives.

Every container carries labels naming its owner: ``oa-node.sandbox=1``, the owner's data
dir identity (``oa-node.data-dir``, a random id kept in the data dir), and the owner
process (host, PID and start time). A node removes only containers labelled with its own
data dir whose owner is gone: the PID is not alive on this host, or it is alive but started
at another time (a reused PID, or the machine rebooted since). A container without our
labels, of another data dir, or of a live owner is never touched.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_SANDBOX = "oa-node.sandbox"  # "1"; before data-dir labels: the data dir id itself
LABEL_DATA_DIR = "oa-node.data-dir"
LABEL_JOB = "oa-node.job"
LABEL_OWNER = "oa-node.owner"  # "host:pid", for people reading `docker ps`
LABEL_OWNER_PID = "oa-node.owner-pid"
LABEL_OWNER_START = "oa-node.owner-start"  # "<boot id>:<start time in clock ticks>"
ID_FILE = "sandbox-id"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """``"<boot id>:<start ticks>"`` of process ``pid``; ``""`` when this system does not
    say (no /proc); ``None`` when no such process runs."""
    if not 0 < pid <= MAX_PID:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "" if pid_alive(pid) else None
    fields = stat[stat.rfind(")") + 2:].split()  # the name may hold spaces and parentheses
    if len(fields) < 20:
        return ""
    return f"{_boot_id()}:{fields[19]}"


MAX_PID = 1 << 22  # Linux's ceiling (pid_max); a label past it names no process


def pid_alive(pid: int) -> bool:
    if not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    """A process that owns sandbox containers."""

    host: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid) or "")

    def labels(self, data_dir_id: str) -> dict[str, str]:
        return {LABEL_SANDBOX: "1", LABEL_DATA_DIR: data_dir_id,
                LABEL_OWNER: f"{self.host}:{self.pid}", LABEL_OWNER_PID: str(self.pid),
                LABEL_OWNER_START: self.start}


def data_dir_of(labels: dict[str, str]) -> str:
    """The data dir id a container's labels name ("" if none: not a sandbox container)."""
    value = labels.get(LABEL_DATA_DIR)
    if value is not None:
        return value
    legacy = labels.get(LABEL_SANDBOX, "")
    return "" if legacy == "1" else legacy


def owner_gone(labels: dict[str, str], me: Owner) -> str | None:
    """Why the owner of a container is gone (a short reason), or ``None`` while it lives.

    An owner on another host of the same data dir is an earlier run of this node (a
    container restarted under a new hostname, say): gone, as its PID cannot be checked."""
    host, _, pid_text = labels.get(LABEL_OWNER, "").rpartition(":")
    pid_text = labels.get(LABEL_OWNER_PID, pid_text)
    if not (pid_text.isascii() and pid_text.isdigit()):
        return "no owner process label"
    pid = int(pid_text[:12])
    if host != me.host:
        return f"owner on another host ({host or '?'})"
    started = labels.get(LABEL_OWNER_START, "")
    now = process_start(pid)
    if now is None or not pid_alive(pid):
        return f"owner process {pid} is gone"
    if started and now and started != now:
        return f"PID {pid} now belongs to another process"
    return None


def data_dir_id(data_dir: Path) -> str:
    """The data dir's sandbox identity: a random id kept in ``<data_dir>/sandbox-id``
    (created 0600 on first use, atomically: a racing process reads the same id), so two
    nodes never share one unless they share the data dir; a hash of the absolute path if
    the folder cannot be written."""
    from oa_node.files import FILE_MODE, private_dir

    path = data_dir / ID_FILE
    for _ in range(2):
        try:
            text = path.read_text().strip()
            if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
                return text
            break  # damaged: fall back to the path hash rather than guess
        except FileNotFoundError:
            pass
        except OSError:
            break
        try:
            private_dir(data_dir)
            tmp = data_dir / f".{ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(16) + "\n")
            try:
                os.link(tmp, path)  # fails if another process made it first: read theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        except OSError:
            break
    return legacy_id(data_dir)


def legacy_id(data_dir: Path) -> str:
    """The id earlier versions labelled containers with: a hash of the data dir's path."""
    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]


def describe(c: dict[str, Any]) -> dict[str, Any]:
    """The fields of a container (as the containers API lists it) people want to see."""
    labels = c.get("Labels") or {}
    return {"id": str(c["Id"])[:12], "name": ((c.get("Names") or ["?"])[0]).lstrip("/"),
            "state": c.get("State", ""), "job": labels.get(LABEL_JOB, ""),
            "owner": labels.get(LABEL_OWNER, "")}
