"""Files the node keeps private: the data dir (0700), its databases and secrets (0600).

Modes are set when a file is created, never fixed up afterwards, so there is no moment at
which a secret is readable by others. Every database goes through :func:`connect_sqlite`,
which creates the file 0600 before SQLite opens it: SQLite gives the ``-wal``, ``-shm``
and ``-journal`` files the mode of the main file. Secrets (keys, FROST shares, wallet URIs)
are written with :func:`write_private` and read with :func:`read_private`, which refuses a
file others may read or write, as ssh does for keys. Databases and the data dir found more
open than that (an older install, a manual copy) are reported by :func:`loose_modes`,
which ``Node.run`` logs as warnings with the ``chmod`` that fixes each.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from oa_node.errors import UserError

#: What a private folder or file may grant: nothing to group or others.
DIR_MODE = 0o700
FILE_MODE = 0o600
_OPEN_BITS = 0o077

#: Suffixes SQLite adds beside a database file.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class UnsafeFileError(UserError):
    """A secret file that group or others may read or write; the message says the fix."""


def private_dir(path: str | Path) -> Path:
    """``path`` as a folder, creating it and any missing parents 0700 (an existing folder
    keeps its mode: :func:`loose_modes` reports it when too open)."""
    p = Path(path).expanduser()
    missing: list[Path] = []
    at = p
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:  # made meanwhile by another process or thread
            continue
        os.chmod(d, DIR_MODE)  # a umask that removes owner bits must not leave it unusable
    if not p.is_dir():
        raise NotADirectoryError(f"{p}: not a folder")
    return p


def private_file(path: str | Path) -> Path:
    """Make sure ``path`` exists, creating it empty with mode 0600 (an existing file is
    left as it is); its folder is created with :func:`private_dir`."""
    p = Path(path).expanduser()
    private_dir(p.parent)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if os.fstat(fd).st_size == 0 and stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # just created under an unusual umask
    finally:
        os.close(fd)
    return p


def connect_sqlite(path: str | Path, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` for a database that is created 0600 (with its WAL and SHM) in a
    0700 folder; ``":memory:"`` and ``file:`` URIs are passed through untouched."""
    target = str(path)
    if target != ":memory:" and not kwargs.get("uri") and not target.startswith("file:"):
        private_file(target)
    return sqlite3.connect(target, **kwargs)


def write_private(path: str | Path, text: str, *, force: bool = False) -> Path:
    """Write ``text`` readable by the owner only (0600, also while being written).

    Refuses to replace an existing file unless ``force``: raises ``FileExistsError`` whose
    message tells the user about ``--force``.
    """
    p = Path(path)
    private_dir(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(p, flags, FILE_MODE)
    except FileExistsError:
        raise FileExistsError(f"{p}: already exists (use --force to overwrite)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(p, FILE_MODE)  # an existing file overwritten with --force keeps no wider mode
    return p


def read_private(path: str | Path, what: str = "secret file") -> str:
    """The text of a secret file, refused (:class:`UnsafeFileError`) when group or others
    may read or write it: a secret others could read is no longer one, and a file others
    could write may have been replaced. ``OSError``/``UnicodeDecodeError`` pass through."""
    p = Path(path)
    with open(p, encoding="utf-8") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & _OPEN_BITS:
            raise UnsafeFileError(
                f"{p}: {what} has mode {mode:04o}, open to other users; refusing to use it"
                f" (run: chmod 600 {p})")
        return fh.read()


def loose_modes(data_dir: str | Path, extra: tuple[str | Path, ...] = ()) -> list[str]:
    """One warning per item more open than it should be: the data dir (beyond 0700) and
    each regular file directly in it (beyond 0600), plus the files in ``extra`` (databases
    kept elsewhere, the config); missing paths are skipped."""
    root = Path(data_dir).expanduser().resolve()
    out: list[str] = []
    try:
        mode = stat.S_IMODE(root.stat().st_mode)
    except OSError:
        return out
    if mode & _OPEN_BITS:
        out.append(f"data dir {root} has mode {mode:04o}, open to other users"
                   f" (run: chmod 700 {root})")
    files: list[Path] = []
    try:
        files = sorted(e for e in root.iterdir() if e.is_file() and not e.is_symlink())
    except OSError:
        pass
    seen = set(files)
    for item in extra:
        base = Path(item).expanduser().resolve()
        for p in (base, *(Path(f"{base}{s}") for s in SQLITE_SIDE_FILES)):
            if p not in seen and p.is_file():
                seen.add(p)
                files.append(p)
    for p in files:
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError:
            continue
        if mode & _OPEN_BITS:
            out.append(f"{p} has mode {mode:04o}, open to other users (run: chmod 600 {p})")
    return out
