"""Locate the shared official test vectors (``../shared/vectors`` beside the repository).

``OA_SHARED_DIR`` overrides the location. A missing directory is an error, never a skip:
the vector tests are the proof that the protocol code is right.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OA_SHARED_DIR") or REPO_ROOT.parent / "shared")
VECTORS = SHARED / "vectors"


def vector_path(relpath: str) -> Path:
    path = VECTORS / relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"official test vector {path} is missing: put the shared/ directory beside the "
            "repository or set OA_SHARED_DIR"
        )
    return path


def load_json(relpath: str) -> Any:
    return json.loads(vector_path(relpath).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    assert VECTORS.is_dir(), f"vectors directory {VECTORS} is missing"
    return VECTORS
