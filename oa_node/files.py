"""Writing secrets to disk: keys, shares and wallet URIs are created with mode 0600."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | Path, text: str, *, force: bool = False) -> Path:
    """Write ``text`` readable by the owner only (0600, also while being written).

    Refuses to replace an existing file unless ``force``: raises ``FileExistsError`` whose
    message tells the user about ``--force``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{p}: already exists (use --force to overwrite)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(p, 0o600)  # an existing file overwritten with --force keeps no wider mode
    return p
